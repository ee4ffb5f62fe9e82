"""Streaming decode: keyframe centres and clip windows equal the Dataset's `VideoReader` clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfdet.data.clip_sampling import clip_offsets
from sfdet.data.video import VideoReader, write_video
from sfdet.errors import DataError
from sfdet.data.timing import DecodeReport
from sfdet.predict.stream import FrameRing, FrameStream, decode_frames, every


def _frames(n: int, height: int = 48, width: int = 64):
    """Frames whose content says their index (a bright bar that moves), so mix-ups show."""
    for i in range(n):
        frame = np.full((height, width, 3), 40, np.uint8)
        frame[:, (i * 3) % width : (i * 3) % width + 3] = 230
        frame[: 4 + i % 40, :4] = 200
        yield frame


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "clip.mp4"
    write_video(path, _frames(38), fps=15, keyframe_interval=10)  # 2.53 s
    return path


@pytest.fixture(scope="module")
def video_25fps(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream25") / "clip25.mp4"
    write_video(path, _frames(63), fps=25, keyframe_interval=10)  # 2.52 s
    return path


@pytest.mark.parametrize("only_sampled", [False, True], ids=["every-frame", "only-sampled-frames"])
@pytest.mark.parametrize("source, resample_fps", [("video", None), ("video_25fps", 30.0)],
                         ids=["decoded-frames", "25fps-on-a-30fps-grid"])
def test_streamed_clips_equal_the_dataset_reader(request, source, resample_fps, only_sampled):
    video = request.getfixturevalue(source)
    offsets = clip_offsets(num_frames=8, sampling_rate=2)  # 16 raw frames, like a small Fast pathway
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0]  # 3.0 and 9.0 are after the last frame (~2.5 s)
    prepared_frames = []

    def prepare(rgb):
        prepared_frames.append(rgb)
        return rgb.copy()

    stream = FrameStream(video, times, prepare_frame=prepare, max_queued=2, resample_fps=resample_fps,
                         window_offsets=offsets if only_sampled else None)
    ring = FrameRing(capacity=max(offsets) - min(offsets) + 1)
    pending: list[tuple[float, int]] = []
    clips: dict[float, np.ndarray] = {}
    detector_frames: dict[float, np.ndarray] = {}
    source_of: list[int] = []
    centres: list[int] = []
    for item in stream:
        source_of.append(item.source_index)
        ring.append(item.index, item.prepared)
        for t in item.keyframes:
            detector_frames[t] = item.rgb
            pending.append((t, item.index))
            centres.append(item.index)
        while pending and pending[0][1] + max(offsets) <= item.index:
            t, centre = pending.pop(0)
            clips[t] = np.stack(ring.window(centre, offsets, num_frames=item.index + 1))
    for t, centre in pending:  # the end of the video: windows clamp to the last frame
        clips[t] = np.stack(ring.window(centre, offsets, num_frames=ring.last_index + 1))
    decoded = 38 if resample_fps is None else 63
    assert stream.report.frames == decoded and stream.report.bad_packets == 0
    assert len(prepared_frames) == stream.prepared_frames
    if only_sampled:  # keyframes every 15 frames, windows of 8 frames at stride 2: even frames only
        sampled = {max(0, min(c + o, len(source_of) - 1)) for c in centres for o in offsets}
        assert stream.prepared_frames == len({source_of[i] for i in sampled}) < decoded
    else:
        assert len(prepared_frames) == decoded  # a frame repeated on the grid is prepared once
    if resample_fps is None:
        assert source_of == list(range(38))
    else:  # 6 grid points per 5 frames; the grid ends with the last frame: round(63 / 25 * 30) = 76 points
        assert source_of[:7] == [0, 1, 2, 2, 3, 4, 5] and len(source_of) == 76 and source_of[-1] == 62
    assert stream.dropped_keyframes == [3.0, 9.0]
    assert sorted(clips) == times[:6]
    with VideoReader(video, resample_fps=resample_fps) as reader:
        for t, clip in clips.items():
            expected = reader.read_clip(t, offsets).numpy()
            np.testing.assert_array_equal(clip, expected, err_msg=f"keyframe {t}")
            np.testing.assert_array_equal(detector_frames[t], expected[len(offsets) // 2])


def test_endless_keyframe_iterator_stops_at_the_end(video):
    stream = FrameStream(video, every(1.0), prepare_frame=lambda rgb: None)
    keyframes = [t for item in stream for t in item.keyframes]
    assert keyframes == [0.0, 1.0, 2.0]
    assert stream.dropped_keyframes == [3.0]


def test_ring_never_holds_more_than_its_capacity():
    ring = FrameRing(capacity=4)
    for i in range(10):
        ring.append(i, torch.full((1,), i))
    assert len(ring._frames) == 4
    assert [int(f) for f in ring.window(8, [-2, -1, 0, 1, 2], num_frames=10)] == [6, 7, 8, 9, 9]
    with pytest.raises(RuntimeError, match="not all in the ring"):
        ring.window(5, [-2, 0], num_frames=10)


def test_bad_files_are_one_clear_data_error(tmp_path, video):
    with pytest.raises(DataError, match="no such video file"):
        list(FrameStream(tmp_path / "missing.mp4", [0.0], prepare_frame=lambda rgb: rgb))
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(DataError, match="notes.mp4"):
        list(FrameStream(text, [0.0], prepare_frame=lambda rgb: rgb))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4"):
        list(FrameStream(empty, [0.0], prepare_frame=lambda rgb: rgb))


@pytest.fixture(scope="module")
def noisy_video(tmp_path_factory):
    """Noise frames (big packets), the index at the front of the file: cut or damaged, it still opens."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40)]
    path = tmp_path_factory.mktemp("noisy") / "noisy.mp4"
    write_video(path, frames, fps=15, keyframe_interval=10, options={"movflags": "faststart"})
    return path


def test_truncated_video_keeps_what_was_decoded(tmp_path, noisy_video):
    data = noisy_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    frames = list(decode_frames(cut))
    full = list(decode_frames(noisy_video))
    assert 0 < len(frames) < len(full) == 40
    for a, b in zip(frames, full):
        np.testing.assert_array_equal(a.rgb, b.rgb)


def test_damaged_packet_midway_is_skipped_and_decoding_goes_on(tmp_path, noisy_video):
    data = bytearray(noisy_video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(1).integers(0, 255, 2000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    report = DecodeReport()
    frames = list(decode_frames(damaged, report))
    full = {round(f.time, 6): f for f in decode_frames(noisy_video)}
    assert report.bad_packets == 1 and len(frames) == 39  # one frame lost, not the rest of the video
    assert frames[-1].time == pytest.approx(39 / 15)
    assert "skipped 1 damaged packet(s)" in report.warnings(damaged)[0]
    first_bad = next(i for i, f in enumerate(frames) if not np.array_equal(f.rgb, full[round(f.time, 6)].rgb))
    assert first_bad > 10  # everything before the damage is intact
