"""One timing rule everywhere: `predict`'s streamed centre frames and clips, the Dataset's clips and the
keyframe frames `proposals` / `train-detector` read are the same frames, at 15, 25, 29.97 fps and on a
variable-frame-rate video, with keyframes every 0.1 s and at fractional times, with and without
`data.video_resample_fps`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from sfdet.data.clip_sampling import clip_offsets
from sfdet.data.config import DataConfig
from sfdet.data.timing import (
    CentreMatcher,
    check_keyframe_time,
    grid_centre,
    later_is_nearer,
    nearest_frame,
    past_the_end,
)
from sfdet.data.video import DecodedVideo, VideoReader, write_video
from sfdet.detection.keyframes import iter_keyframes
from sfdet.errors import DataError
from sfdet.predict.stream import FrameRing, FrameStream
from test_video import pattern_frames, write_with_pts  # frames that differ everywhere from each other

OFFSETS = clip_offsets(num_frames=4, sampling_rate=2)  # -4, -2, 0, 2
DURATION_S = 3.0
# Keyframes every 0.1 s, as decimals (annotation files) and as `k * 0.1` (`predict`'s `every`): at 15
# and 25 fps a third or a half of them fall half-way between two frames, a float near-tie. Fractional
# ones: half-way on the 30 fps grid, between 25 fps frames, arbitrary.
KEYFRAMES = sorted({round(0.1 * k, 10) for k in range(30)} | {0.1 * k for k in range(30)}
                   | {0.02, 0.05, 0.11, 1 / 30, 0.7654, 1.23456, 1.5 + 1 / 60, 2.013, 2.47, 0.13, 0.17})


# -- the rules -----------------------------------------------------------------------------------


def test_grid_centre_is_the_nearest_frame_with_ties_to_the_earlier():
    assert grid_centre(902 - 900, 30) == 60  # AVA: (sec - 900) * 30
    assert grid_centre(1.0, Fraction(30000, 1001)) == 30  # 1.0 s is 29.97 frames -> frame 30
    assert grid_centre(0.1, 15) == 1  # 1.5 frames: a tie, the earlier frame
    assert grid_centre(0.11, 15) == 2
    assert grid_centre(0.0, 15) == 0


def test_ties_go_to_the_earlier_frame_whatever_the_float_rounding():
    # 0.12 - 0.1 < 0.1 - 0.08 in floats: without the tolerance 0.1 s would go to the later 25 fps frame.
    assert 0.12 - 0.1 < 0.1 - 0.08
    assert not later_is_nearer(0.1, 0.08, 0.12)
    assert later_is_nearer(0.101, 0.08, 0.12) and not later_is_nearer(0.099, 0.08, 0.12)
    times = [k / 25 for k in range(75)]
    assert nearest_frame(times, 0.1) == 2 and nearest_frame(times, 0.3) == 7  # ties: 0.08, 0.28
    assert nearest_frame(times, -0.01) == 0 and nearest_frame(times, 9.0) == 74
    assert nearest_frame(times, 0.04) == 1  # a frame exactly at t


@pytest.mark.parametrize("fps", [15, 25, Fraction(30000, 1001), 30])
def test_closed_form_grid_centre_equals_the_nearest_frame_rule(fps):
    times = [float(Fraction(k) / Fraction(fps)) for k in range(100)]
    for t in KEYFRAMES:
        assert grid_centre(t, fps) == nearest_frame(times, t), t


def test_matcher_decides_keyframes_as_frames_arrive():
    matcher = CentreMatcher([0.0, 0.05, 0.1, 0.26, 0.5])
    times = [0.0, 0.1, 0.2, 0.3]
    decided = [pair for i, t in enumerate(times) for pair in matcher.add_frame(i, t)]
    # 0.05 is a tie between frames 0 and 1: the earlier; 0.26 is nearer to 0.3 than to 0.2.
    assert decided == [(0.0, 0), (0.05, 0), (0.1, 1), (0.26, 3)]
    assert list(matcher.remaining()) == [0.5]
    # 25 fps, keyframes every 0.1 s: the float near-ties go to the earlier frame, as `nearest_frame`
    keyframes = [round(0.1 * k, 10) for k in range(25)]
    frame_times = [k / 25 for k in range(75)]
    matcher = CentreMatcher(keyframes)
    decided = dict(pair for i, t in enumerate(frame_times) for pair in matcher.add_frame(i, t))
    assert decided == {t: nearest_frame(frame_times, t) for t in keyframes}


def test_matcher_on_a_grid_uses_the_closed_form():
    matcher = CentreMatcher([-0.01, 1 / 60, 0.05, 0.1, 0.5, 2.0], grid_fps=Fraction(30))
    decided = [pair for k in range(10) for pair in matcher.add_frame(k, k / 30)]
    # before the first point: point 0; 1/60 s and 0.05 s are ties (0.5, 1.5 points): the earlier point
    assert decided == [(-0.01, 0), (1 / 60, 0), (0.05, 1), (0.1, 3)]
    assert list(matcher.remaining()) == [0.5, 2.0]


def test_keyframe_outside_the_video_is_an_error():
    check_keyframe_time(10.03, 10.0, 1 / 30, "v.mp4")  # within one frame of the end: fine
    assert not past_the_end(10.03, 10.0, 1 / 30) and past_the_end(10.04, 10.0, 1 / 30)
    with pytest.raises(DataError, match="v.mp4: keyframe at video time 11.000 s is after the last readable frame"):
        check_keyframe_time(11.0, 10.0, 1 / 30, "v.mp4")
    with pytest.raises(DataError, match="before the first frame; check data.time_offset"):
        check_keyframe_time(-900.0, 10.0, 1 / 30, "v.mp4")


# -- predict, the Dataset and proposals read the same frames ----------------------------------------


def write_vfr(path, durations_ms: list[int]) -> None:
    """An H.264 mp4 whose frames are the given milliseconds apart."""
    pts = np.concatenate([[0], np.cumsum(durations_ms)]).astype(int).tolist()
    write_with_pts(path, pattern_frames(len(pts)), pts, Fraction(1, 1000), rate=25)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("timing")
    out = {}
    for name, rate in [("fps15", Fraction(15)), ("fps25", Fraction(25)), ("fps2997", Fraction(30000, 1001))]:
        path = root / "videos" / f"{name}.mp4"
        write_video(path, pattern_frames(round(DURATION_S * rate)), rate, keyframe_interval=8)
        out[name] = path
    # Variable rate: 40, 80, 20 and 60 ms between frames (half-way points at 0.13 s, 0.17 s ...).
    vfr = root / "videos" / "vfr.mp4"
    write_vfr(vfr, [40, 80, 20, 60] * 15)
    out["vfr"] = vfr
    return out


def streamed(video, times, resample_fps):
    """What `sfdet predict` computes per keyframe: {t: (decoded frame index of the centre, detector frame
    (H, W, 3), clip (T, H, W, 3))}."""
    stream = FrameStream(video, times, prepare_frame=lambda rgb: rgb.copy(), max_queued=4,
                         resample_fps=resample_fps, window_offsets=OFFSETS)
    ring = FrameRing(capacity=max(OFFSETS) - min(OFFSETS) + 1)
    pending, centres, detector, clips = [], {}, {}, {}
    for item in stream:
        ring.append(item.index, item.prepared)
        for t in item.keyframes:
            centres[t], detector[t] = item.source_index, item.rgb
            pending.append((t, item.index))
        while pending and pending[0][1] + max(OFFSETS) <= item.index:
            t, centre = pending.pop(0)
            clips[t] = np.stack(ring.window(centre, OFFSETS, num_frames=item.index + 1))
    for t, centre in pending:  # the end of the video: windows clamp to the last frame
        clips[t] = np.stack(ring.window(centre, OFFSETS, num_frames=ring.last_index + 1))
    assert not stream.dropped_keyframes
    return {t: (centres[t], detector[t], clips[t]) for t in times}


@pytest.mark.parametrize("resample_fps", [None, 30.0], ids=["decoded-frames", "30fps-grid"])
@pytest.mark.parametrize("name", ["fps15", "fps25", "fps2997", "vfr"])
def test_predict_dataset_and_proposals_read_the_same_frames(videos, name, resample_fps):
    video = videos[name]
    times = [t for t in KEYFRAMES if t < 2.9]
    from_stream = streamed(video, times, resample_fps)
    decoded = DecodedVideo(video, resample_fps=resample_fps)
    cfg = DataConfig(root=str(video.parent.parent), video_dir="videos", video_resample_fps=resample_fps,
                     time_offset=900.0)
    skipped = []
    keyframes = {k.timestamp: k.image.numpy()  # read at timestamp - time_offset, as the Dataset does
                 for k in iter_keyframes(cfg, [(name, 900.0 + t) for t in times], skipped, progress=False)}
    assert not skipped
    mismatches = []
    with VideoReader(video, resample_fps=resample_fps) as reader:
        for t in times:
            clip = reader.read_clip(t, OFFSETS).numpy()
            np.testing.assert_array_equal(decoded.read_clip(t, OFFSETS).numpy(), clip, err_msg=f"t={t}")
            centre = clip[OFFSETS.index(0)]
            centre_index, detector_frame, streamed_clip = from_stream[t]
            if decoded.grid_frames is None:  # the Dataset's centre frame, as DecodedVideo picks it
                dataset_centre = nearest_frame(decoded.times, t)
            else:
                dataset_centre = decoded.grid_frames[min(grid_centre(t, 30), len(decoded.grid_frames) - 1)]
            if not (centre_index == dataset_centre and np.array_equal(streamed_clip, clip)
                    and np.array_equal(detector_frame, centre)):
                mismatches.append(f"predict t={t}")
            if not np.array_equal(keyframes[900.0 + t], centre):
                mismatches.append(f"proposals t={t}")
    assert not mismatches, f"{len(mismatches)} keyframes read other frames than the Dataset's: {mismatches}"
