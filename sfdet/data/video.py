"""Clips straight from video files with PyAV: seek, decode forward, pick frames by presentation time.

The timing rules (frame times, the centre frame, the resampling grid, opening a file) are
`sfdet.data.timing`'s; this module reads pixels by them. A clip is made of *decoded frames*: the
centre is the frame whose timestamp is nearest to the keyframe time and the others are counted from
it (`clip_sampling.clip_offsets`), exactly as for frames extracted from the same video. So a header
that lies about the frame count or rate, a variable-frame-rate stream and a video shorter than the
clip all give the right frames. `VideoReader` only ever holds the clip's window in memory;
`DecodedVideo` holds a whole (small) video decoded once. With `resample_fps`
(`data.video_resample_fps`) frames are counted on that rate's grid, as `ffmpeg -r` extracts them.

Frames come out upright: a stream's display rotation (a phone video) is applied as ffmpeg applies it
(`timing.Orientation`, in `frame_to_rgb`), and `info` gives the upright size.

A file that cannot be opened, or holds no decodable frame, raises one `DataError`. When
decoding fails part way (a truncated file), the frames before the damage are still used and
a keyframe past them raises `DataError`.

`open_clip_source(cfg, video_id, location)` is the one way to open a video (or frame folder) for the
clips or keyframe frames of a dataset: the Dataset and `sfdet proposals` / `train-detector` use it.
"""

from __future__ import annotations

import collections
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from sfdet.data.clip_sampling import clamped_indices
from sfdet.data.config import DataConfig
from sfdet.data.frames import FrameFolder
from sfdet.data.timing import (
    CentreMatcher,
    Orientation,
    VideoFile,
    VideoInfo,
    check_keyframe_time,
    frame_period_s,
    grid_centre,
    nearest_frame,
    rate_fraction,
    resample_to_grid,
)
from sfdet.errors import DataError

# How far before the clip's first frame the first seek goes (seconds); doubled while not enough.
# Seeking lands on the keyframe before its target anyway, so a small margin suffices.
SEEK_MARGIN_S = 0.1


_reformatters = threading.local()
_inherited: list = []  # the parent's reformatters in a forked child: kept, never freed (see below)


def _forget_reformatters() -> None:
    # A forked loader worker gets reformatters of its own. The parent's are kept alive, not freed:
    # freeing a multi-threaded swscale context joins threads that do not exist in the child.
    global _reformatters
    _inherited.append(_reformatters)
    _reformatters = threading.local()


os.register_at_fork(after_in_child=_forget_reformatters)


def frame_to_rgb(frame: av.VideoFrame, threads: int = 1, orientation: Orientation | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB, the pixels of `frame.to_ndarray(format="rgb24")` in half its time.

    `orientation`: the video's display orientation (`VideoFile.orientation`), applied to the pixels, so a
    rotated phone video comes out upright (None: as coded).

    PyAV's `to_ndarray` builds a new swscale context for every frame; one reformatter per thread keeps
    its context (rebuilt only when the frame size or format changes). `threads`: swscale slice threads
    (0: one per core). One by default: a process whose cores are busy anyway (loader workers, a CPU
    model) only loses to more.
    """
    reformatter = getattr(_reformatters, f"rgb{threads}", None)
    if reformatter is None:
        reformatter = VideoReformatter()
        setattr(_reformatters, f"rgb{threads}", reformatter)
    rgb = reformatter.reformat(frame, format="rgb24", threads=threads).to_ndarray()
    return rgb if orientation is None else orientation.apply(rgb)


class VideoReader:
    """One video file, opened on first use (so a Dataset can be pickled into workers) and closed by `close()`.

    `read_clip(t, offsets)` -> `(T, H, W, 3)` uint8 RGB tensor, `T = len(offsets)`.
    `resample_fps`: count frames on that rate's grid instead of the decoded frames (`sfdet.data.timing`).
    """

    def __init__(self, path: str | Path, resample_fps: float | None = None):
        self.path = Path(path)
        self.resample_fps = rate_fraction(resample_fps) if resample_fps else None
        self._file: VideoFile | None = None

    # -- opening -----------------------------------------------------------------------------

    def _open(self) -> VideoFile:
        if self._file is None:
            self._file = VideoFile(self.path)
        return self._file

    @property
    def info(self) -> VideoInfo:
        return self._open().info

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def read_clip(self, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """Frames `centre + offsets` (clamped to the video's frames), centre = the frame nearest to `t` seconds.

        Returns `(T, H, W, 3)` uint8 RGB. With `resample_fps`, frames are grid points.
        """
        file = self._open()
        if self.resample_fps is not None:
            return self._read_resampled_clip(file, t, offsets)
        period = frame_period_s(file.info.fps)
        check_keyframe_time(t, float("inf"), period, str(self.path))
        before = max(0, -min(offsets))
        after = max(0, max(offsets))
        back = (before + 2) * period + SEEK_MARGIN_S
        while True:
            seek_to = t - back
            window = self._decode_window(file, t, before, after, seek_to if seek_to > 0 else None)
            if window is not None:
                break
            back *= 2  # the seek landed too late for the frames before the centre: go further back
        frames, centre, reached_end = window
        if not frames:
            raise DataError(f"{self.path}: no decodable video frame; re-encode or remove it")
        if reached_end and centre == len(frames) - 1:
            check_keyframe_time(t, frames[-1][0], period, str(self.path))
        indices = clamped_indices(centre, offsets, len(frames))
        rgb = {i: frame_to_rgb(frames[i][1], orientation=file.orientation) for i in set(indices)}
        return torch.from_numpy(np.stack([rgb[i] for i in indices]))  # numpy: no thread-pool overhead for a copy

    @staticmethod
    def _decode_window(file: VideoFile, t: float, before: int, after: int, seek_to: float | None):
        """Decode from the keyframe before `seek_to` (None: the stream start) up to `after` frames past the centre.

        Returns `(frames, centre, reached_end)` with `frames` a list of `(time, av.VideoFrame)`,
        or None when the frames before the centre are not all there and an earlier seek is needed.
        """
        from_start = seek_to is None
        file.seek(seek_to)
        matcher = CentreMatcher([t])
        history: collections.deque = collections.deque(maxlen=before + 1)  # frames up to the centre
        following: list = []
        centre_found = reached_end = False
        for i, frame in enumerate(file.frames()):
            time = float(file.frame_time(frame))
            if not from_start and not history and not centre_found and time > t:
                return None
            if centre_found:
                following.append((time, frame))
            else:
                decided = matcher.add_frame(i, time)  # decided by the first frame after t: it or the one before
                (following if decided and decided[0][1] != i else history).append((time, frame))
                centre_found = bool(decided)
            if centre_found and len(following) >= after:
                break
        else:
            reached_end = True
        if not from_start and len(history) < before + 1:
            return None
        return list(history) + following, len(history) - 1, reached_end

    def _read_resampled_clip(self, file: VideoFile, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """`read_clip` on the `resample_fps` grid: centre = the grid point nearest to `t` (ties: the earlier)."""
        fps = self.resample_fps
        period = frame_period_s(file.info.fps, fps)
        check_keyframe_time(t, float("inf"), period, str(self.path))
        centre = grid_centre(t, fps)
        # One point before the window: a keyframe just past the end moves the centre back by one.
        first = max(0, centre + min(offsets) - 1)
        last = max(first, centre + max(offsets))
        back = 2 / file.info.fps + SEEK_MARGIN_S
        while True:
            seek_to = first / float(fps) - back
            window = self._decode_grid(file, first, last, seek_to if seek_to > 0 else None)
            if window is not None:
                break
            back *= 2  # the seek landed after grid point `first`: go further back
        frames, num_points = window
        if num_points == 0:
            raise DataError(f"{self.path}: no decodable video frame; re-encode or remove it")
        if num_points is None:  # the stream goes on past the window
            num_points = last + 1
        else:
            check_keyframe_time(t, (num_points - 1) * period, period, str(self.path))
        indices = clamped_indices(min(centre, num_points - 1), offsets, num_points)
        rgb = {k: frame_to_rgb(frames[k], orientation=file.orientation) for k in set(indices)}
        return torch.from_numpy(np.stack([rgb[k] for k in indices]))

    def _decode_grid(self, file: VideoFile, first: int, last: int, seek_to: float | None):
        """Grid points `first..last` from a seek to `seek_to` s (None: the stream start).

        Returns `({k: av.VideoFrame}, number of grid points or None if the stream goes on past `last`)`,
        or None when the seek landed after grid point `first` and an earlier one is needed.
        """
        from_start = seek_to is None
        file.seek(seek_to)
        window: dict[int, av.VideoFrame] = {}
        num_points = 0
        for k, frame in resample_to_grid(file.timed_frames(), self.resample_fps, file.info.frame_period,
                                         first_index=0 if from_start else None):
            if not from_start and num_points == 0 and k > first:
                return None
            num_points = k + 1
            if k >= first:
                window[k] = frame
            if k >= last:
                return window, None
        return window, num_points


class DecodedVideo:
    """A whole video decoded once into memory (`data.cache: ram`); `read_clip` returns what `VideoReader`'s does.

    Why: a small dataset read for many epochs (the toy set: 30 s clips, 10 epochs) spends a third of a
    2-core machine's time seeking and decoding the same frames again; held as one uint8 array, a clip is
    an index. Made in the parent process, the array is shared with forked DataLoader workers.
    `frames_rgb`: (N, H, W, 3) uint8; `times`: (N,) presentation seconds; with `resample_fps`,
    `grid_frames` maps grid point k to its frame (repeats share one).
    """

    def __init__(self, path: str | Path, resample_fps: float | None = None):
        self.path = Path(path)
        with VideoFile(path) as file:
            timed = [(time, frame_to_rgb(frame, orientation=file.orientation)) for time, frame in file.timed_frames()]
            header_fps, header_period = file.info.fps, file.info.frame_period
        if not timed:
            raise DataError(f"{self.path}: no decodable video frame; re-encode or remove it")
        self.frame_period = frame_period_s(header_fps)
        self.times = np.array([float(time) for time, _ in timed])
        self.frames_rgb = np.stack([image for _, image in timed])
        self.resample_fps = rate_fraction(resample_fps) if resample_fps else None
        self.grid_frames = None
        if self.resample_fps is not None:
            self._grid_period = frame_period_s(header_fps, self.resample_fps)
            numbered = ((time, i) for i, (time, _) in enumerate(timed))
            self.grid_frames = np.array([i for _, i in resample_to_grid(numbered, self.resample_fps, header_period)])

    @property
    def nbytes(self) -> int:
        return self.frames_rgb.nbytes

    def read_clip(self, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """Frames `centre + offsets` (clamped), as `VideoReader.read_clip`. `(T, H, W, 3)` uint8 RGB."""
        if self.grid_frames is not None:
            period = self._grid_period
            check_keyframe_time(t, float("inf"), period, str(self.path))
            num_points = len(self.grid_frames)
            check_keyframe_time(t, (num_points - 1) * period, period, str(self.path))
            centre = min(grid_centre(t, self.resample_fps), num_points - 1)
            frames = self.grid_frames[clamped_indices(centre, offsets, num_points)]
        else:
            check_keyframe_time(t, float("inf"), self.frame_period, str(self.path))
            check_keyframe_time(t, self.times[-1], self.frame_period, str(self.path))
            frames = clamped_indices(nearest_frame(self.times, t), offsets, len(self.times))
        return torch.from_numpy(self.frames_rgb[frames])

    def close(self) -> None:
        """Nothing is open; here so every pixel source can be used alike."""


def open_clip_source(cfg: DataConfig, video_id: str, location: str | Path) -> VideoReader | FrameFolder:
    """Where the clips and keyframe frames of `video_id` are read, as `data.source` says (opened on first use).

    `location`: the video file (`source: video`, read on the `data.video_resample_fps` grid when set) or the
    video's frame folder `frames_dir/<video_id>` (`source: frames`, frames at `data.fps`). The Dataset,
    `sfdet proposals` and `train-detector` all open their sources here, so they read the same frames.
    """
    if cfg.source == "video":
        return VideoReader(location, resample_fps=cfg.video_resample_fps)
    return FrameFolder(Path(location).parent, video_id, cfg.fps)


def write_video(path: str | Path, frames: Iterable, fps: float | Fraction, crf: int = 17,
                keyframe_interval: int | None = None, options: dict | None = None) -> None:
    """Write `(H, W, 3)` uint8 RGB frames as an H.264 video (yuv420p); `options` go to the muxer.

    Used to render predictions and to build test fixtures.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = rate_fraction(fps)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), **({"g": str(keyframe_interval)} if keyframe_interval else {})}
        for i, image in enumerate(frames):
            image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
            if i == 0:
                stream.height, stream.width = image.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

