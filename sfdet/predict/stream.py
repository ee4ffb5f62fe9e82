"""Decode a video once, front to back, in a background thread, with bounded memory.

The decoder thread turns the frames the clip windows sample into what the
action model needs (`prepare_frame`, e.g. resized to the model's short side;
with a 30 fps video and a stride-2 clip, every other frame is decoded but never
converted) and hands every frame over through a small bounded queue; the
consumer keeps only the last few prepared frames in a ring buffer
(`FrameRing`), enough for one clip window. The full-resolution frame survives
only for keyframe centres (the person detector reads it; with `rgb_every`, every
Nth frame too), so memory does not grow with the video's length.

Frame timing is `sfdet.data.timing`'s, as for the Dataset: frame times are
presentation timestamps from the stream's start, and a keyframe's centre is
the decoded frame nearest to its time (ties: the earlier frame), decided
incrementally by `timing.CentreMatcher`, so a streamed clip is the clip the
Dataset reads. With `resample_fps` (`data.video_resample_fps`) the stream is
the Dataset's fixed-rate grid instead (`resample_frames`, built on
`timing.resample_to_grid`; centres by `timing.grid_centre`): a repeated frame
is prepared once. A keyframe is inside the video by `timing.past_the_end`.
Damaged packets are skipped with a warning and decoding goes on; what was
decoded is kept. Frames flagged as damaged, and a video that ends well before
the frame count its header lists (a cut AVI decodes without an error), are
warned about too (`timing.DecodeReport`). Frames are upright: the stream's
display rotation is applied on conversion (`timing.Orientation`).
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import av
import numpy as np

from sfdet.data.clip_sampling import clamped_indices
from sfdet.data.timing import (
    CentreMatcher,
    DecodeReport,
    Orientation,
    VideoFile,
    VideoInfo,
    frame_period_s,
    past_the_end,
    rate_fraction,
    resample_to_grid,
)
from sfdet.data.video import frame_to_rgb
from sfdet.errors import DataError


class FrameImage:
    """A decoded frame, converted to RGB on first use: frames no clip samples are never converted."""

    __slots__ = ("_frame", "_rgb", "_threads", "_orientation")

    def __init__(self, frame: av.VideoFrame | np.ndarray, threads: int = 1, orientation: Orientation | None = None):
        self._frame, self._rgb = (None, frame) if isinstance(frame, np.ndarray) else (frame, None)
        self._threads = threads  # swscale threads of the conversion
        self._orientation = orientation  # the video's display orientation, applied on conversion

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8, upright."""
        if self._rgb is None:
            self._rgb = frame_to_rgb(self._frame, self._threads, self._orientation)
            self._frame = None  # the decoder's buffer goes back to its pool
        return self._rgb


@dataclass
class DecodedFrame:
    """One frame of the stream, in presentation order."""

    index: int  # 0-based position in the stream: decode order, or the grid point when resampling
    time: float  # seconds from the stream's start (presentation timestamp, or grid point / fps)
    image: FrameImage  # shared by the grid points a frame is repeated on
    source_index: int  # 0-based position among the decoded frames (= index without resampling)
    exact_time: Fraction  # `time`, exact (resampling rounds it as ffmpeg does)

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 (converted on first access)."""
        return self.image.rgb()


def open_video(path: str | Path) -> VideoInfo:
    """Header of a video, or one `DataError` for a missing, unreadable or audio-only file."""
    with VideoFile(path) as file:
        return file.info


def decode_frames(path: str | Path, report: DecodeReport | None = None, threaded: bool = True) -> Iterator[DecodedFrame]:
    """All frames of a video, front to back; damaged packets are skipped and counted in `report`.

    `threaded`: let the codec decode, and swscale convert to RGB, on several threads. Leave it off when
    the other work of the process already uses every core (a CPU model): extra threads only contend.
    """
    report = report if report is not None else DecodeReport()
    with VideoFile(path, threaded=threaded) as file:
        for index, (shown, frame) in enumerate(file.timed_frames(report)):
            image = FrameImage(frame, 0 if threaded else 1, file.orientation)
            yield DecodedFrame(index, float(shown), image, index, shown)


def resample_frames(frames: Iterable[DecodedFrame], fps: float, frame_period: Fraction) -> Iterator[DecodedFrame]:
    """Decoded frames -> the frames of the `fps` grid, as `VideoReader(path, resample_fps=fps)` counts them.

    `frame_period`: the header's frame period, the duration of the last frame. A frame repeated on
    several grid points is the same array each time.
    """
    rate = rate_fraction(fps)
    for k, frame in resample_to_grid(((f.exact_time, f) for f in frames), rate, frame_period):
        yield DecodedFrame(k, float(k / rate), frame.image, frame.source_index, Fraction(k) / rate)


@dataclass
class StreamItem:
    """A prepared frame, plus what the consumer needs when it is a keyframe centre."""

    index: int  # position in the stream clips are cut from (the grid point when resampling)
    time: float
    prepared: Any  # what `prepare_frame` returned for this frame
    source_index: int  # position among the decoded frames (what the renderer draws on)
    keyframes: list[float] = field(default_factory=list)  # keyframe times whose centre this frame is
    rgb: np.ndarray | None = None  # full-resolution (H, W, 3) uint8, only when `keyframes` is not empty (or keep_rgb,
    # or every `rgb_every`th decoded frame)
    arrival: float = 0.0  # wall-clock time (time.time()) the frame came out of the decoder: latency is counted from it


_END = object()


class FrameStream:
    """Iterate `StreamItem`s of a video decoded by a background thread.

    keyframe_times: increasing keyframe times in seconds (may be an endless
        iterator, e.g. every second: only the ones inside the video are used).
    prepare_frame: (H, W, 3) uint8 -> anything; runs in the decoder thread.
    max_queued: frames the decoder may run ahead of the consumer.
    resample_fps: stream the frames of this rate's grid (`data.video_resample_fps`), None: the decoded frames.
    window_offsets: the clip offsets around each keyframe centre (`clip_offsets`). Given, only the
        frames some window samples are converted and prepared (the others stream with `prepared`
        None): the decoder holds `-min(offsets) + 1` undecided frames, still in the codec's format,
        until the keyframes that could sample them are placed. None: every frame is prepared.
    threaded_decode: codec threading (see `decode_frames`).
    source: frames from this instead of decoding `path` (`sfdet.predict.live.LiveSource`: a camera,
        network stream or pipe, or a file paced at its frame rate): has `path`, `info` and
        `frames(report, threaded) -> Iterator[DecodedFrame]`.
    keep_rgb: every item carries its full-resolution `rgb` (the live preview), not only keyframe centres.
    rgb_every: N > 0: the items of every Nth decoded frame (`source_index % N == 0`) carry their `rgb` too
        (`predict --track-every N`: the person detector reads them); 0: only keyframe centres.

    Keyframes after the last frame (beyond the end tolerance of
    `sfdet.data.clip_sampling`) are listed in `dropped_keyframes`.
    """

    def __init__(
        self,
        path: str | Path,
        keyframe_times: Iterable[float],
        prepare_frame: Callable[[np.ndarray], Any],
        max_queued: int = 8,
        resample_fps: float | None = None,
        window_offsets: Sequence[int] | None = None,
        threaded_decode: bool = True,
        source: Any = None,
        keep_rgb: bool = False,
        rgb_every: int = 0,
    ):
        self.source = source
        self.path = Path(path) if source is None else source.path
        self.info = open_video(self.path) if source is None else source.info
        self.keep_rgb = keep_rgb
        if rgb_every < 0:
            raise ValueError(f"rgb_every must be >= 0, got {rgb_every}")
        self.rgb_every = int(rgb_every)
        self.resample_fps = resample_fps
        self.report = DecodeReport()
        self.dropped_keyframes: list[float] = []
        self.decode_seconds = 0.0  # decoder-thread time spent decoding and preparing frames
        self.prepared_frames = 0  # frames `prepare_frame` ran on
        self._keyframe_times = keyframe_times
        self._keyframes_finite = isinstance(keyframe_times, Sequence)
        self._prepare_frame = prepare_frame
        self._threaded_decode = threaded_decode
        self._offsets = None if window_offsets is None else sorted(set(int(o) for o in window_offsets))
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"decode:{self.path.name}", daemon=True)
        self._started = False

    # -- decoder thread -------------------------------------------------------------------

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._decode()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _decode(self) -> None:
        offsets = self._offsets
        # A keyframe's centre is known once the frame after it arrives, so frame i is known to be
        # sampled (or not) once frame i - min(offsets) + 1 has been decoded.
        lookahead = 0 if offsets is None else max(0, -offsets[0])
        needed: set[int] = set()  # frame indices some placed window samples
        reach = -1  # the furthest frame index a placed window samples (beyond the end: the last frame)
        waiting: collections.deque[tuple[StreamItem, DecodedFrame]] = collections.deque()
        prepared_source, prepared = -1, None  # a frame repeated on the grid is prepared once

        def release(item: StreamItem, frame: DecodedFrame) -> bool:
            nonlocal prepared_source, prepared
            tick = time.perf_counter()
            if offsets is None or item.index in needed:
                if frame.source_index != prepared_source:
                    prepared_source, prepared = frame.source_index, self._prepare_frame(frame.rgb)
                    self.prepared_frames += 1
                item.prepared = prepared
                needed.discard(item.index)
            if item.keyframes or self.keep_rgb or (self.rgb_every and frame.source_index % self.rgb_every == 0):
                item.rgb = frame.rgb
            self.decode_seconds += time.perf_counter() - tick
            return self._put(item)  # blocks while the consumer is behind: not decode time

        def place(t: float, centre: int, item: StreamItem) -> None:
            nonlocal reach
            item.keyframes.append(t)
            if offsets is not None:
                needed.update(max(0, centre + o) for o in offsets)
                reach = max(reach, centre + offsets[-1])

        grid = rate_fraction(self.resample_fps) if self.resample_fps else None
        matcher = CentreMatcher(self._keyframe_times, grid_fps=grid)
        frames = decode_frames(self.path, self.report, threaded=self._threaded_decode) if self.source is None \
            else self.source.frames(self.report, self._threaded_decode)
        if grid is not None:
            frames = resample_frames(frames, grid, self.info.frame_period)
        while True:
            tick = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            item = StreamItem(frame.index, frame.time, None, frame.source_index, arrival=time.time())
            for t, centre in matcher.add_frame(frame.index, frame.time):
                place(t, centre, item if centre == frame.index else waiting[-1][0])
            waiting.append((item, frame))
            self.decode_seconds += time.perf_counter() - tick
            while waiting[0][0].index < frame.index - lookahead:
                if not release(*waiting.popleft()):
                    return
        if not waiting:
            raise DataError(f"{self.path}: no decodable video frame (empty or damaged file); re-encode or remove it")
        last = waiting[-1][0]
        # The last frame's time and period as the Dataset's readers check a keyframe against them.
        period = frame_period_s(self.info.fps, grid)
        last_time = last.time if grid is None else last.index * period
        for t in matcher.remaining():
            if not past_the_end(t, last_time, period):
                place(t, last.index, last)
            else:  # after the end of the video
                self.dropped_keyframes.append(t)
                if not self._keyframes_finite:
                    break
        if reach >= last.index:  # windows past the end repeat the last frame
            needed.add(last.index)
        while waiting:
            if not release(*waiting.popleft()):
                return
        self._put(_END)

    # -- consumer -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[StreamItem]:
        if self._started:
            raise RuntimeError("a FrameStream can be iterated only once")
        self._started = True
        self._thread.start()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # closed from another thread (online mode's Ctrl-C)
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class FrameRing:
    """The last `capacity` prepared frames, by index: a clip window's worth, never more."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._frames: collections.deque = collections.deque(maxlen=capacity)  # (index, prepared)

    def append(self, index: int, prepared) -> None:
        if self._frames and index != self._frames[-1][0] + 1:
            raise ValueError(f"frames must arrive in order: got {index} after {self._frames[-1][0]}")
        self._frames.append((index, prepared))

    @property
    def last_index(self) -> int:
        return self._frames[-1][0] if self._frames else -1

    def window(self, centre: int, offsets: list[int], num_frames: int) -> list:
        """Prepared frames `centre + offsets`, clamped to `[0, num_frames)` as `clamped_indices` does."""
        first = self._frames[0][0]
        indices = clamped_indices(centre, offsets, num_frames)
        if min(indices) < first or max(indices) > self.last_index:
            raise RuntimeError(
                f"frames {min(indices)}..{max(indices)} are not all in the ring ({first}..{self.last_index})"
            )
        return [self._frames[i - first][1] for i in indices]


def every(period_s: float, start_s: float = 0.0) -> Iterator[float]:
    """Endless keyframe times `start, start + period, ...` (computed, not accumulated)."""
    return (start_s + k * period_s for k in itertools.count())
