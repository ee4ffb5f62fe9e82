"""Clips decoded from videos: equal to extracted frames, robust to lying headers, VFR, short and broken files."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from sfdet.data.clip_sampling import clip_offsets
from sfdet.data.frames import FrameFolder, frame_path
from sfdet.data.video import VideoReader, frame_to_rgb, write_video
from sfdet.errors import DataError

OFFSETS = clip_offsets(num_frames=8, sampling_rate=2)  # -8, -6, ..., 6


def pattern_frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frames that differ from each other everywhere (so a wrong pick cannot pass)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) // 2 + (i * 37) % 128 for i in range(n)]


def decode_all(path) -> tuple[list[float], list[torch.Tensor]]:
    """Reference: every frame of the file, in order, with its time from the stream start."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        times, images = [], []
        for frame in container.decode(stream):
            times.append(float((frame.pts - start) * stream.time_base))
            images.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
    return times, images


def expected_clip(times: list[float], images: list[torch.Tensor], t: float) -> torch.Tensor:
    """The clip by the rule, written out: nearest frame to t (ties: earlier), offsets, edges repeated."""
    centre = min(range(len(times)), key=lambda i: (abs(times[i] - t), i))
    return torch.stack([images[min(max(centre + o, 0), len(images) - 1)] for o in OFFSETS])


def extract_png_frames(video, frames_dir, video_id) -> None:
    for i, image in enumerate(decode_all(video)[1]):
        path = frame_path(frames_dir, video_id, i, ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(path)


def write_with_pts(path, images, pts, time_base, rate, fmt=None, options=None) -> None:
    """A video whose frames carry the given timestamps (VFR, or a rate the header misstates)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = {"crf": "17", "g": "6"}
        for image, p in zip(images, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_frame_to_rgb_equals_pyav_to_ndarray_across_sizes_and_formats():
    """The cached reformatter gives PyAV's pixels, also when size or pixel format change between frames."""
    rng = np.random.default_rng(1)
    for height, width, pix_fmt in [(48, 64, "yuv420p"), (36, 50, "yuv444p"), (48, 64, "yuvj420p"),
                                   (48, 64, "yuv420p"), (20, 30, "gray"), (48, 64, "rgb24")]:
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
        expected = frame.to_ndarray(format="rgb24")
        got = frame_to_rgb(frame)
        assert got.shape == (height, width, 3) and got.dtype == np.uint8, pix_fmt
        assert np.array_equal(got, expected), (height, width, pix_fmt)


def _convert_in_child(frame_rgb: np.ndarray, threads: int) -> None:
    frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24").reformat(format="yuv420p")
    assert frame_to_rgb(frame, threads).shape == frame_rgb.shape


@pytest.mark.parametrize("threads", [1, 0])
def test_frame_to_rgb_in_a_forked_worker_after_the_parent_used_it(threads):
    # Loader workers fork from a process that already converted frames: a multi-threaded swscale
    # context inherited from the parent would wait forever for threads the child does not have.
    import multiprocessing

    image = np.random.default_rng(2).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame_to_rgb(frame, threads)
    child = multiprocessing.get_context("fork").Process(target=_convert_in_child, args=(image, threads))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("frame_to_rgb hung in a forked child")
    assert child.exitcode == 0


@pytest.mark.parametrize("fps", [Fraction(15), Fraction(30000, 1001)])
def test_video_clip_equals_png_frames_bit_exact(tmp_path, fps):
    video = tmp_path / "v.mp4"
    n = round(3 * fps)  # 3 s
    write_video(video, pattern_frames(n), fps, keyframe_interval=6)
    extract_png_frames(video, tmp_path / "frames", "v")
    times, images = decode_all(video)
    assert len(images) == n
    folder = FrameFolder(tmp_path / "frames", "v", fps=float(fps))
    with VideoReader(video) as reader:
        assert reader.info.fps == pytest.approx(float(fps))
        # start, near start (clamped), seek targets at and between keyframes, fractional times, end
        for t in [0.0, 0.2, 1.0, 1.23, 1.5, 2.0, 2.41, n / float(fps) - 0.01]:
            from_video = reader.read_clip(t, OFFSETS)
            assert from_video.shape == (8, 48, 64, 3) and from_video.dtype == torch.uint8
            assert torch.equal(from_video, folder.read_clip(t, OFFSETS)), t
            assert torch.equal(from_video, expected_clip(times, images, t)), t
        # reading backwards after forwards (re-seek) gives the same as a fresh reader
        assert torch.equal(reader.read_clip(1.0, OFFSETS), expected_clip(times, images, 1.0))


def test_video_shorter_than_window_repeats_edge_frames(tmp_path):
    video = tmp_path / "short.mp4"
    write_video(video, pattern_frames(5), 15)
    extract_png_frames(video, tmp_path / "frames", "short")
    times, images = decode_all(video)
    with VideoReader(video) as reader:
        clip = reader.read_clip(0.12, OFFSETS)  # centre = frame 2 (0.133 s)
    assert torch.equal(clip, FrameFolder(tmp_path / "frames", "short", 15).read_clip(0.12, OFFSETS))
    picked = [min(max(2 + o, 0), 4) for o in OFFSETS]
    assert picked == [0, 0, 0, 0, 2, 4, 4, 4]
    assert torch.equal(clip, torch.stack([images[i] for i in picked]))


def test_variable_frame_rate_picks_frames_by_timestamp(tmp_path):
    video = tmp_path / "vfr.mp4"
    tb = Fraction(1, 90000)
    durations = [3000 if i % 3 else 9000 for i in range(39)]  # 30 fps with every third frame held 0.1 s
    pts = np.concatenate([[0], np.cumsum(durations)]).tolist()
    write_with_pts(video, pattern_frames(40), pts, tb, rate=30)
    times, images = decode_all(video)
    assert np.allclose(times, [p / 90000 for p in pts])
    with VideoReader(video) as reader:
        for t in [0.3, 0.62, 1.0, 1.31]:
            assert torch.equal(reader.read_clip(t, OFFSETS), expected_clip(times, images, t)), t


def test_header_that_misstates_the_frame_rate(tmp_path):
    # Matroska keeps the declared 30 fps in its header while the frames are 1/15 s apart.
    video = tmp_path / "lie.mkv"
    tb = Fraction(1, 1000)
    write_with_pts(video, pattern_frames(45), [round(i * 1000 / 15) for i in range(45)], tb, rate=30)
    times, images = decode_all(video)
    with VideoReader(video) as reader:
        assert reader.info.fps == 30  # the lie
        for t in [1.0, 2.0, 2.5]:
            clip = reader.read_clip(t, OFFSETS)
            assert torch.equal(clip, expected_clip(times, images, t)), t
            assert len({c.sum().item() for c in clip}) == 8  # 8 distinct frames, none doubled


def test_container_that_claims_more_frames_than_it_holds(tmp_path):
    # moov at the front (faststart) then the tail cut off: the header still lists all 45 frames.
    intact = tmp_path / "intact.mp4"
    write_video(intact, pattern_frames(45), 15, keyframe_interval=6, options={"movflags": "faststart"})
    data = intact.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.75)])
    times, images = decode_all(intact)
    with VideoReader(cut) as reader:
        assert reader.info.num_frames == 45
        assert torch.equal(reader.read_clip(1.0, OFFSETS), expected_clip(times, images, 1.0))
        with pytest.raises(DataError, match=r"cut\.mp4: keyframe at video time 2\.900 s is after the last readable frame"):
            reader.read_clip(2.9, OFFSETS)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_video_is_one_data_error(tmp_path, damage):
    video = tmp_path / "bad.mp4"
    write_video(video, pattern_frames(30), 15)  # moov at the end: cutting the file loses the index
    data = video.read_bytes()
    video.write_bytes({"truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 20, "empty": b""}[damage])
    with pytest.raises(DataError, match=r"bad\.mp4: cannot open video .*re-encode or remove it"):
        VideoReader(video).read_clip(1.0, OFFSETS)


def test_missing_video_and_keyframe_before_start(tmp_path):
    with pytest.raises(DataError, match="nope.mp4: no such video file"):
        VideoReader(tmp_path / "nope.mp4").read_clip(1.0, OFFSETS)
    video = tmp_path / "v.mp4"
    write_video(video, pattern_frames(15), 15)
    with pytest.raises(DataError, match="before the first frame; check data.time_offset"):
        VideoReader(video).read_clip(-3.0, OFFSETS)


# ---------------------------------------------------------------------------------------------
# Resampling to a fixed frame-rate grid (data.video_resample_fps): AVA's `ffmpeg -r 30` frames


def source_of_grid_point_25_to_30(k: int) -> int:
    """25 -> 30 fps, written out: the latest frame i with round(1.2 i) <= k, i.e. 1.2 i < k + 0.5 (never a tie)."""
    return math.ceil((10 * k + 5) / 12) - 1


def test_25fps_video_read_on_a_30fps_grid(tmp_path):
    video = tmp_path / "v25.mp4"
    write_video(video, pattern_frames(50), 25, keyframe_interval=6)  # 2 s
    _, images = decode_all(video)
    num_points = 60  # round((49 / 25 + 1 / 25) * 30): the grid ends where the last frame does
    grid = [images[source_of_grid_point_25_to_30(k)] for k in range(num_points)]
    assert [source_of_grid_point_25_to_30(k) for k in range(7)] == [0, 1, 2, 2, 3, 4, 5]  # 6 points per 5 frames

    def expected(t):
        centre = min(range(num_points), key=lambda k: (abs(k / 30 - t), k))
        return torch.stack([grid[min(max(centre + o, 0), num_points - 1)] for o in OFFSETS])

    with VideoReader(video, resample_fps=30) as reader:
        for t in [0.0, 0.06, 0.5, 0.95, 1.0, 1.2345, 1.9, 1.99, 0.5]:  # start, seeks, end (clamped), back again
            assert torch.equal(reader.read_clip(t, OFFSETS), expected(t)), t
        with pytest.raises(DataError, match=r"v25\.mp4: keyframe at video time 2\.100 s is after the last readable"):
            reader.read_clip(2.1, OFFSETS)


def test_resampling_a_30fps_video_changes_nothing(tmp_path):
    video = tmp_path / "v30.mp4"
    write_video(video, pattern_frames(60), 30, keyframe_interval=6)
    with VideoReader(video) as plain, VideoReader(video, resample_fps=30) as resampled:
        for t in [0.0, 0.4, 1.0, 1.37, 1.95]:
            assert torch.equal(resampled.read_clip(t, OFFSETS), plain.read_clip(t, OFFSETS)), t


def fps_filter_frames(path, fps: str) -> list[np.ndarray]:
    """Reference: libavfilter's own `fps=FPS:round=near` (what `ffmpeg -r` extraction is built on), via PyAV."""
    outputs = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        source, fps_filter, sink = graph.add_buffer(template=stream), graph.add("fps", f"fps={fps}:round=near"), \
            graph.add("buffersink")
        source.link_to(fps_filter)
        fps_filter.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    frame = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return
                assert frame.pts == len(outputs)  # consecutive grid points from 0
                outputs.append(frame.to_ndarray(format="rgb24"))

        for frame in container.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return outputs


@pytest.mark.parametrize("rate, count", [(Fraction(24000, 1001), 40), (Fraction(30000, 1001), 505), (Fraction(60), 40)],
                         ids=["23.976", "29.97", "60"])
def test_resampled_frames_equal_the_ffmpeg_fps_filter(tmp_path, rate, count):
    # 29.97 -> 30: frame 500 lands exactly half-way (500.5 grid steps) and rounds up; 60 -> 30 drops frames.
    rng = np.random.default_rng(1)
    video = tmp_path / "v.mp4"
    write_video(video, [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(count)], rate,
                keyframe_interval=12)
    reference = fps_filter_frames(video, "30")
    points = sorted({*range(0, len(reference), 7), *range(496, min(505, len(reference))), len(reference) - 1})
    with VideoReader(video, resample_fps=30) as reader:
        for k in points:
            np.testing.assert_array_equal(reader.read_clip(k / 30, [0])[0].numpy(), reference[k], err_msg=f"point {k}")
        last = (len(reference) - 1) / 30
        np.testing.assert_array_equal(reader.read_clip(last, [1])[0].numpy(), reference[-1])  # the grid ends there
