"""Clips straight from video files with PyAV: seek, decode forward, pick frames by presentation time.

Nothing about timing is assumed. The time origin is the stream's start time, frame times are
the decoded frames' presentation timestamps, and the header's frame rate is only a hint for
how far before a keyframe to seek. A clip is made of *decoded frames*: the centre is the frame
whose timestamp is nearest to the keyframe time and the others are counted from it
(`clip_sampling.clip_offsets`), exactly as for frames extracted from the same video. So a
header that lies about the frame count or rate, a variable-frame-rate stream and a video
shorter than the clip all give the right frames. Only the clip's window is ever held in
memory, never the stream.

A file that cannot be opened, or holds no decodable frame, raises one `DataError`. When
decoding fails part way (a truncated file), the frames before the damage are still used and
a keyframe past them raises `DataError`.

Resampling (`data.video_resample_fps`, AVA: 30). AVA's frames were extracted with
`ffmpeg -ss 900 -t 901 -i in.mp4 -r 30 out_%06d.jpg` from movies of 23.976, 25, 29.97, 30 ...
fps, so frame `j` (0-based) is what ffmpeg put at grid point `900 + j / 30` s: some frames
repeat (25 fps) or drop out (60 fps). A resampling reader counts frames on the same grid,
`t_k = k / fps` from the stream's start, and grid point `k` shows the source frame ffmpeg's fps
filter picks for it (`fps=FPS:round=near`, libavfilter/vf_fps.c): each frame's time is mapped
to `round(time * fps)`, halves away from zero, in exact arithmetic, and grid point `k` takes the
*latest* frame mapped to `<= k` (earlier points repeat the first frame). The grid ends at
`round((last time + one frame period of the header rate) * fps)`, as the filter's end of stream.
Because 900 s is a whole number of grid steps, starting the grid at the movie's start or at
`-ss 900` gives the same points, so AVA second `t` is grid point `(t - 900) * 30` of the trimmed
video (PySlowFast's frame index) or `t * 30` of the full movie; clip offsets then count grid
points, exactly as they count extracted frames. (The ffmpeg command line's own `-r` sync, a
float drop/duplicate rule, matches this for AVA's 23.976-30 fps sources except at rare
near-ties in a simulation of it; from faster sources it may pick a frame one source frame later.)
"""

from __future__ import annotations

import collections
import math
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from sfdet.data.clip_sampling import centre_index, check_keyframe_time, clamped_indices
from sfdet.errors import DataError

# How far before the clip's first frame the first seek goes (seconds); doubled while not enough.
# Seeking lands on the keyframe before its target anyway, so a small margin suffices.
SEEK_MARGIN_S = 0.1
# Times closer than this count as a tie between two frames (float rounding of timestamps).
TIE_TOLERANCE_S = 1e-9
# Rate assumed for seeking when the header has none.
FALLBACK_FPS = 30.0


_reformatters = threading.local()
_inherited: list = []  # the parent's reformatters in a forked child: kept, never freed (see below)


def _forget_reformatters() -> None:
    # A forked loader worker gets reformatters of its own. The parent's are kept alive, not freed:
    # freeing a multi-threaded swscale context joins threads that do not exist in the child.
    global _reformatters
    _inherited.append(_reformatters)
    _reformatters = threading.local()


os.register_at_fork(after_in_child=_forget_reformatters)


def frame_to_rgb(frame: av.VideoFrame, threads: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB, the pixels of `frame.to_ndarray(format="rgb24")` in half its time.

    PyAV's `to_ndarray` builds a new swscale context for every frame; one reformatter per thread keeps
    its context (rebuilt only when the frame size or format changes). `threads`: swscale slice threads
    (0: one per core). One by default: a process whose cores are busy anyway (loader workers, a CPU
    model) only loses to more.
    """
    reformatter = getattr(_reformatters, f"rgb{threads}", None)
    if reformatter is None:
        reformatter = VideoReformatter()
        setattr(_reformatters, f"rgb{threads}", reformatter)
    return reformatter.reformat(frame, format="rgb24", threads=threads).to_ndarray()


def rate_fraction(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction, the way ffmpeg reads `-r` (29.97 -> 2997/100, 30000/1001 stays)."""
    return Fraction(fps).limit_denominator(1_001_000)


def grid_index(time: Fraction, fps: Fraction) -> int:
    """Grid point of a frame shown at `time` s: `time * fps` rounded to nearest, halves away from zero.

    This is ffmpeg's `av_rescale_q_rnd(..., AV_ROUND_NEAR_INF)` of the fps filter's default `round=near`.
    """
    x = Fraction(time) * fps
    half = Fraction(1, 2)
    return math.floor(x + half) if x >= 0 else -math.floor(-x + half)


Frame = TypeVar("Frame")


def resample_to_grid(frames: Iterable[tuple[Fraction, Frame]], fps: Fraction, frame_period: Fraction,
                     first_index: int | None = 0) -> Iterator[tuple[int, Frame]]:
    """`(time, frame)` pairs in presentation order -> `(k, frame)` for consecutive grid points `k`.

    Grid point `k` (at `k / fps` s) takes the latest frame with `grid_index(time) <= k` (ffmpeg's fps
    filter); frames that no grid point takes are dropped, frames several take are repeated (the same
    object). `first_index`: the first grid point yielded; 0 at the stream's start (points before the
    first frame's repeat it), None after a seek (the first frame's own point). The last frame lasts
    `frame_period` (the header's frame period), so the grid ends at `grid_index(last time + frame_period)`.
    """
    k = first_index
    held, held_time = None, None
    yielded = False
    for time, frame in frames:
        position = grid_index(time, fps)
        if held is not None:
            while k < position:
                yield k, held
                yielded = True
                k += 1
        elif k is None:
            k = position
        held, held_time = frame, time
    if held is None:
        return
    end = grid_index(held_time + frame_period, fps)
    if not yielded:
        end = max(end, k + 1)  # a lone frame shorter than a grid step is still the video
    while k < end:
        yield k, held
        k += 1


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says. `fps` and `num_frames` are hints and may be wrong."""

    width: int
    height: int
    fps: float
    duration: float  # seconds; 0.0 when the header does not say
    num_frames: int  # 0 when the header does not say


class VideoReader:
    """One video file, opened on first use (so a Dataset can be pickled into workers) and closed by `close()`.

    `read_clip(t, offsets)` -> `(T, H, W, 3)` uint8 RGB tensor, `T = len(offsets)`.
    `resample_fps`: count frames on that rate's grid instead of the decoded frames (module docstring).
    """

    def __init__(self, path: str | Path, resample_fps: float | None = None):
        self.path = Path(path)
        self.resample_fps = rate_fraction(resample_fps) if resample_fps else None
        self._container: av.container.InputContainer | None = None
        self._stream = None
        self._start_pts = 0
        self._info: VideoInfo | None = None

    # -- opening -----------------------------------------------------------------------------

    def _open(self):
        if self._container is not None:
            return self._stream
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such video file")
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.path}: cannot open video ({_reason(exc)}); re-encode or remove it") from None
        if not container.streams.video:
            container.close()
            raise DataError(f"{self.path}: no video stream in this file")
        stream = container.streams.video[0]
        self._container, self._stream = container, stream
        self._start_pts = stream.start_time if stream.start_time is not None else 0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        self._info = VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else FALLBACK_FPS,
            duration=duration,
            num_frames=int(stream.frames or 0),
        )
        return stream

    @property
    def info(self) -> VideoInfo:
        self._open()
        return self._info

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def read_clip(self, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """Frames `centre + offsets` (clamped to the video's frames), centre = the frame nearest to `t` seconds.

        Returns `(T, H, W, 3)` uint8 RGB. With `resample_fps`, frames are grid points (module docstring).
        """
        self._open()
        if self.resample_fps is not None:
            return self._read_resampled_clip(t, offsets)
        period = 1.0 / self._info.fps
        check_keyframe_time(t, float("inf"), period, str(self.path))
        before = max(0, -min(offsets))
        after = max(0, max(offsets))
        back = (before + 2) * period + SEEK_MARGIN_S
        while True:
            seek_to = t - back
            window = self._decode_window(t, before, after, seek_to if seek_to > 0 else None)
            if window is not None:
                break
            back *= 2  # the seek landed too late for the frames before the centre: go further back
        frames, centre, reached_end = window
        if not frames:
            raise DataError(f"{self.path}: no decodable video frame; re-encode or remove it")
        if reached_end and centre == len(frames) - 1:
            check_keyframe_time(t, frames[-1][0], period, str(self.path))
        indices = clamped_indices(centre, offsets, len(frames))
        rgb = {i: frame_to_rgb(frames[i][1]) for i in set(indices)}
        return torch.from_numpy(np.stack([rgb[i] for i in indices]))  # numpy: no thread-pool overhead for a copy

    def _decode_window(self, t: float, before: int, after: int, seek_to: float | None):
        """Decode from the keyframe before `seek_to` (None: the stream start) up to `after` frames past the centre.

        Returns `(frames, centre, reached_end)` with `frames` a list of `(time, av.VideoFrame)`,
        or None when the frames before the centre are not all there and an earlier seek is needed.
        """
        stream, tb = self._stream, self._stream.time_base
        from_start = seek_to is None
        target = self._start_pts if from_start else self._start_pts + int(Fraction(seek_to) / tb)
        try:
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise DataError(f"{self.path}: cannot seek ({_reason(exc)}); re-encode or remove it") from None
        history: collections.deque = collections.deque(maxlen=before + 1)  # frames up to the centre
        following: list = []
        centre_found = reached_end = False
        for frame in self._decoded_frames():
            time = float(self._frame_time(frame))
            if not from_start and not history and not centre_found and time > t:
                return None
            if centre_found:
                following.append((time, frame))
            elif time <= t:
                history.append((time, frame))
            else:  # first frame after t: the centre if nearer than the last frame at or before t (ties: earlier)
                if not history or time - t < t - history[-1][0] - TIE_TOLERANCE_S:
                    history.append((time, frame))
                else:
                    following.append((time, frame))
                centre_found = True
            if centre_found and len(following) >= after:
                break
        else:
            reached_end = True
        if not from_start and len(history) < before + 1:
            return None
        return list(history) + following, len(history) - 1, reached_end

    def _read_resampled_clip(self, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """`read_clip` on the `resample_fps` grid: centre = the grid point nearest to `t` (ties: the earlier)."""
        fps = self.resample_fps
        period = float(1 / fps)
        check_keyframe_time(t, float("inf"), period, str(self.path))
        centre = centre_index(t, float(fps))
        # One point before the window: a keyframe just past the end moves the centre back by one.
        first = max(0, centre + min(offsets) - 1)
        last = max(first, centre + max(offsets))
        back = 2 / self._info.fps + SEEK_MARGIN_S
        while True:
            seek_to = first / float(fps) - back
            window = self._decode_grid(first, last, seek_to if seek_to > 0 else None)
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
        rgb = {k: frame_to_rgb(frames[k]) for k in set(indices)}
        return torch.from_numpy(np.stack([rgb[k] for k in indices]))

    def _decode_grid(self, first: int, last: int, seek_to: float | None):
        """Grid points `first..last` from a seek to `seek_to` s (None: the stream start).

        Returns `({k: av.VideoFrame}, number of grid points or None if the stream goes on past `last`)`,
        or None when the seek landed after grid point `first` and an earlier one is needed.
        """
        stream, fps = self._stream, self.resample_fps
        from_start = seek_to is None
        target = self._start_pts if from_start else self._start_pts + int(Fraction(seek_to) / stream.time_base)
        try:
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise DataError(f"{self.path}: cannot seek ({_reason(exc)}); re-encode or remove it") from None
        timed = ((self._frame_time(frame), frame) for frame in self._decoded_frames())
        frame_period = 1 / rate_fraction(self._info.fps)
        window: dict[int, av.VideoFrame] = {}
        num_points = 0
        for k, frame in resample_to_grid(timed, fps, frame_period, first_index=0 if from_start else None):
            if not from_start and num_points == 0 and k > first:
                return None
            num_points = k + 1
            if k >= first:
                window[k] = frame
            if k >= last:
                return window, None
        return window, num_points

    def _frame_time(self, frame: av.VideoFrame) -> Fraction:
        """Presentation time from the stream's start, exact (seconds)."""
        if frame.pts is None:
            raise DataError(f"{self.path}: decoded frames carry no timestamps; re-encode it (e.g. to mp4)")
        return (frame.pts - self._start_pts) * self._stream.time_base

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Frames in presentation order from the current position; a damaged tail ends the stream."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
                frames = packet.decode()
            except StopIteration:
                return
            except av.error.FFmpegError:
                # Truncated or damaged data: keep what the decoder already holds, then stop.
                try:
                    yield from self._stream.codec_context.decode(None)
                except av.error.FFmpegError:
                    pass
                return
            yield from frames


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
        reader = VideoReader(path, resample_fps=resample_fps)
        try:
            reader._open()
            timed = [(reader._frame_time(frame), frame_to_rgb(frame)) for frame in reader._decoded_frames()]
            header_fps = reader.info.fps
        finally:
            reader.close()
        if not timed:
            raise DataError(f"{self.path}: no decodable video frame; re-encode or remove it")
        self.frame_period = 1.0 / header_fps
        self.times = np.array([float(time) for time, _ in timed])
        self.frames_rgb = np.stack([image for _, image in timed])
        self.resample_fps = rate_fraction(resample_fps) if resample_fps else None
        self.grid_frames = None
        if self.resample_fps is not None:
            numbered = ((time, i) for i, (time, _) in enumerate(timed))
            self.grid_frames = np.array([i for _, i in resample_to_grid(numbered, self.resample_fps,
                                                                        1 / rate_fraction(header_fps))])

    @property
    def nbytes(self) -> int:
        return self.frames_rgb.nbytes

    def read_clip(self, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """Frames `centre + offsets` (clamped), as `VideoReader.read_clip`. `(T, H, W, 3)` uint8 RGB."""
        if self.grid_frames is not None:
            period = float(1 / self.resample_fps)
            check_keyframe_time(t, float("inf"), period, str(self.path))
            num_points = len(self.grid_frames)
            check_keyframe_time(t, (num_points - 1) * period, period, str(self.path))
            centre = min(centre_index(t, float(self.resample_fps)), num_points - 1)
            frames = self.grid_frames[clamped_indices(centre, offsets, num_points)]
        else:
            check_keyframe_time(t, float("inf"), self.frame_period, str(self.path))
            after = int(np.searchsorted(self.times, t, side="right"))  # first frame shown after t
            if after == 0:
                centre = 0
            elif after == len(self.times):
                centre = after - 1
                check_keyframe_time(t, self.times[-1], self.frame_period, str(self.path))
            else:  # the nearer of the frames around t; ties: the earlier (as VideoReader)
                nearer_after = self.times[after] - t < t - self.times[after - 1] - TIE_TOLERANCE_S
                centre = after if nearer_after else after - 1
            frames = clamped_indices(centre, offsets, len(self.times))
        return torch.from_numpy(self.frames_rgb[frames])

    def close(self) -> None:
        """Nothing is open; here so every pixel source can be used alike."""


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


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
