"""Frame timing for clips: which frame is shown when, which one is a keyframe's centre, and opening a video.

Every reader of clips or keyframe frames goes through this module (the Dataset's `video.VideoReader` and
`video.DecodedVideo`, `frames.FrameFolder`, `sfdet proposals` / `train-detector` through
`video.open_clip_source`, and `sfdet predict`'s streaming decoder), so they all pick the same frames.

Frame times. A video's frame times are its decoded frames' presentation timestamps from the stream's
start time (`VideoFile.frame_time`, exact fractions); the header's rate and frame count are only hints
(seeking, the duration of the last frame). Extracted frames are shown at `i / fps`.

Centre frame. A keyframe at video time `t` (`timestamp - data.time_offset`) has as centre the frame whose
time is nearest to `t`; ties go to the earlier frame, within `TIE_TOLERANCE_S` (decimal keyframe times
such as 0.1 s fall half-way between 15 or 25 fps frames, and float rounding must not decide those):
- `later_is_nearer(t, earlier, later)`: the rule between the two frames around `t`;
- `nearest_frame(times, t)`: over a sorted array of frame times (a whole decoded video);
- `CentreMatcher`: incrementally, while frames are decoded in order (a seek-and-decode window, the stream);
- `grid_centre(t, fps)`: in closed form when frame `k` is shown at `k / fps` (extracted frames, the
  resampling grid), the same rule with the tie tolerance counted in frames (1e-9), as the Dataset always had.

Resampling (`data.video_resample_fps`, AVA: 30). AVA's frames were extracted with
`ffmpeg -ss 900 -t 901 -i in.mp4 -r 30 out_%06d.jpg` from movies of 23.976, 25, 29.97, 30 ...
fps, so frame `j` (0-based) is what ffmpeg put at grid point `900 + j / 30` s: some frames
repeat (25 fps) or drop out (60 fps). A resampling reader counts frames on the same grid,
`t_k = k / fps` from the stream's start, and grid point `k` shows the source frame ffmpeg's fps
filter picks for it (`fps=FPS:round=near`, libavfilter/vf_fps.c): each frame's time is mapped
to `round(time * fps)` (`grid_index`), halves away from zero, in exact arithmetic, and grid point `k`
takes the *latest* frame mapped to `<= k` (earlier points repeat the first frame; `resample_to_grid`).
The grid ends at `round((last time + one frame period of the header rate) * fps)`, as the filter's end
of stream. Because 900 s is a whole number of grid steps, starting the grid at the movie's start or at
`-ss 900` gives the same points, so AVA second `t` is grid point `(t - 900) * 30` of the trimmed
video (PySlowFast's frame index) or `t * 30` of the full movie; clip offsets then count grid
points, exactly as they count extracted frames. (The ffmpeg command line's own `-r` sync, a
float drop/duplicate rule, matches this for AVA's 23.976-30 fps sources except at rare
near-ties in a simulation of it; from faster sources it may pick a frame one source frame later.)

Inside the video. A keyframe more than half a frame period before the first frame, or more than
`END_TOLERANCE_FRAMES` periods after the last readable one, is outside its video (`check_keyframe_time`).

Opening. `VideoFile(path)` is the one place a video is opened for reading: one `DataError` naming the
file when it is missing, unreadable or has no video stream; header values (`VideoInfo`); frames in
presentation order, a damaged tail ending the stream (the Dataset's policy) or damaged packets skipped
and counted in a `DecodeReport` (the stream's).

Live sources. `VideoFile(name, live=LiveInput(url, ...))` opens what is not a file (a camera through
FFmpeg's v4l2 input, a network stream, `pipe:0`): the FFmpeg input format and options, open / read
timeouts, no seeking, no header duration or frame count, frame times from the first decoded frame, and
`live_frames` reads them as they arrive (a read error raises `SourceLost`). It is the same one place.

Damage. A `DecodeReport` also counts frames the decoder flagged as decoded from damaged data and
compares the frames decoded with the header's frame count: more than `SHORTFALL_FRAMES` frames or
`SHORTFALL_FRACTION` of them missing is a warning (a cut or damaged file, e.g. an AVI cut in half
decodes without any error).

Orientation. A stream's display matrix (a phone video's rotation) is applied as ffmpeg applies it by
default (`-autorotate`): `VideoFile.orientation` (`Orientation`, read from the display matrix of the
first decoded frame, which carries the stream's) turns every decoded frame upright when it becomes
RGB (`sfdet.data.video.frame_to_rgb`), and `VideoInfo` reports the upright width and height. So
clips, keyframe images, person boxes and rendered videos are all upright. Multiples of 90 degrees and
mirrorings are applied; other angles (ffmpeg fills the corners of a tilted frame) are left as coded.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import av
import numpy as np

from sfdet.errors import DataError

# Times closer than this count as a tie between two frames (float rounding of timestamps).
TIE_TOLERANCE_S = 1e-9
# `grid_centre`'s tie tolerance, in frames.
GRID_TIE_TOLERANCE_FRAMES = 1e-9
# A keyframe may lie this many frame periods past the last frame (the last frame is still shown).
END_TOLERANCE_FRAMES = 1.0
# Rate assumed when the header has none.
FALLBACK_FPS = 30.0
# Give up on a file after this many damaged packets in a row (skipping policy): it is not a video any more.
MAX_CONSECUTIVE_BAD_PACKETS = 100
# Fewer decoded frames than the header lists by more than both of these: the file is cut or damaged (a warning).
SHORTFALL_FRAMES = 2
SHORTFALL_FRACTION = 0.01
# Packets read, at most, to find the first frame's display matrix.
ORIENTATION_PROBE_PACKETS = 64


# -- the centre frame -------------------------------------------------------------------------


def later_is_nearer(t: float, earlier: float, later: float) -> bool:
    """Of the frames shown at `earlier <= t < later`, is the later one the centre of keyframe `t`? Ties: no."""
    return later - t < t - earlier - TIE_TOLERANCE_S


def nearest_frame(times: Sequence[float], t: float) -> int:
    """Index of the centre frame of keyframe `t` among frames shown at the increasing `times` (seconds)."""
    after = bisect.bisect_right(times, t)  # the first frame shown after t
    if after == 0:
        return 0
    if after == len(times):
        return after - 1
    return after if later_is_nearer(t, times[after - 1], times[after]) else after - 1


def grid_centre(t: float, fps: float | Fraction) -> int:
    """Index of the centre frame of keyframe `t` when frame `k` is shown at `k / fps` (not clamped to the video)."""
    return math.ceil(t * float(fps) - 0.5 - GRID_TIE_TOLERANCE_FRAMES)


class CentreMatcher:
    """Centres of increasing keyframe times, decided while frames arrive in order (one frame of lookahead).

    `add_frame(index, time)` returns the `(keyframe_time, centre_index)` pairs that frame decides; the centre is
    that frame or the one before it. Decoded frames (`grid_fps` None): a keyframe is decided by the first frame
    shown after it (`later_is_nearer`). On the grid of `grid_fps` (`index` = grid point): by its `grid_centre`.
    """

    def __init__(self, keyframe_times: Iterable[float], grid_fps: float | Fraction | None = None):
        self._pending = iter(keyframe_times)
        self._upcoming = next(self._pending, None)
        self._grid_fps = grid_fps
        self._previous: tuple[int, float] | None = None  # (index, time) of the last frame

    def add_frame(self, index: int, time: float) -> list[tuple[float, int]]:
        decided = []
        while self._upcoming is not None:
            t = self._upcoming
            if self._grid_fps is not None:
                if grid_centre(t, self._grid_fps) > index:
                    break
                centre = index  # before the first grid point: the first one
            else:
                if not t < time:
                    break
                previous = self._previous
                centre = index if previous is None or later_is_nearer(t, previous[1], time) else previous[0]
            decided.append((t, centre))
            self._upcoming = next(self._pending, None)
        self._previous = (index, time)
        return decided

    def remaining(self) -> Iterator[float]:
        """Keyframes not decided yet: at the end of the stream, their nearest frame is the last one."""
        if self._upcoming is not None:
            yield self._upcoming
            yield from self._pending


# -- inside the video --------------------------------------------------------------------------


def frame_period_s(header_fps: float, grid_fps: Fraction | None = None) -> float:
    """The frame period (seconds) keyframes are checked against: one step of the resampling grid, else the header's."""
    return 1.0 / header_fps if grid_fps is None else float(1 / grid_fps)


def past_the_end(t: float, last_frame_time: float, frame_period: float) -> bool:
    """Is keyframe `t` after the last frame (shown at `last_frame_time`) by more than the end tolerance?"""
    return t > last_frame_time + END_TOLERANCE_FRAMES * frame_period


def check_keyframe_time(t: float, last_frame_time: float, frame_period: float, where: str) -> None:
    """A keyframe must fall inside the video; anything else means a wrong `data.time_offset` or a cut video."""
    if t < -0.5 * frame_period:
        raise DataError(
            f"{where}: keyframe at video time {t:.3f} s is before the first frame; check data.time_offset"
        )
    if past_the_end(t, last_frame_time, frame_period):
        raise DataError(
            f"{where}: keyframe at video time {t:.3f} s is after the last readable frame ({last_frame_time:.3f} s): "
            "the video is shorter than its annotations (truncated file, or wrong data.time_offset)"
        )


# -- the resampling grid -----------------------------------------------------------------------


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


# -- opening a video ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says. `fps` and `num_frames` are hints and may be wrong."""

    width: int  # upright: after the display rotation (`VideoFile.orientation`)
    height: int
    fps: float
    duration: float  # seconds; 0.0 when the header does not say
    num_frames: int  # 0 when the header does not say
    rotation: int = 0  # degrees counter-clockwise the display matrix turns the coded frames (0, 90, 180, 270)

    @property
    def frame_period(self) -> Fraction:
        """One frame period of the header's rate, exact: how long the last frame lasts on the resampling grid."""
        return 1 / rate_fraction(self.fps)

    @property
    def header_end(self) -> float:
        """Where the header says the video ends (seconds): its duration or its frame count at its rate."""
        return max(self.duration, self.num_frames / self.fps if self.num_frames else 0.0)

    def missing_tail(self, readable_end: float) -> float:
        """Seconds the header promises past `readable_end` beyond the damage margin (`SHORTFALL_*`); else 0."""
        missing = self.header_end - readable_end
        margin = max(SHORTFALL_FRAMES / self.fps, SHORTFALL_FRACTION * self.header_end)
        return missing if missing > margin + TIE_TOLERANCE_S else 0.0


@dataclass
class DecodeReport:
    """What went wrong while decoding with damaged packets skipped (warnings, the predict JSON `end` record)."""

    frames: int = 0
    bad_packets: int = 0
    stopped_early: bool = False  # gave up after too many damaged packets in a row
    corrupt_frames: int = 0  # frames the decoder flagged as decoded from damaged data (errors concealed)
    header_frames: int = 0  # the frame count the header lists (0: it does not say)
    last_time: float | None = None  # presentation time (s) of the last frame decoded

    def shortfall(self) -> int:
        """Frames the header lists that were not decoded, when more than the margin is missing; else 0."""
        missing = self.header_frames - self.frames
        return missing if missing > max(SHORTFALL_FRAMES, SHORTFALL_FRACTION * self.header_frames) else 0

    def warnings(self, path: Path) -> list[str]:
        out = []
        if self.bad_packets:
            out.append(f"{path}: skipped {self.bad_packets} damaged packet(s); kept the {self.frames} frames decoded")
        if self.stopped_early:
            out.append(f"{path}: too many damaged packets in a row; stopped decoding after {self.frames} frames")
        if self.corrupt_frames:
            out.append(f"{path}: {self.corrupt_frames} frame(s) decoded from damaged data (the decoder concealed "
                       "errors); they are used as decoded")
        if self.shortfall():
            end = "" if self.last_time is None else f", the last at {self.last_time:.3f} s"
            out.append(f"{path}: decoded {self.frames} of the {self.header_frames} frames its header lists{end}: "
                       "the file is cut short or damaged; nothing after that is predicted")
        return out


@dataclass(frozen=True)
class Orientation:
    """How a decoded frame is turned to be shown upright: the stream's display matrix, as ffmpeg's autorotate.

    `apply(image)`: transpose (swap rows and columns) first, then flip rows / columns.
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False
    rotation: int = 0  # degrees counter-clockwise (0, 90, 180, 270): what `VideoInfo.rotation` reports

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """Upright `(width, height)` of a coded frame size."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W, ...) coded -> upright, contiguous; the same array when there is nothing to turn."""
        if self.is_identity:
            return image
        if self.transpose:
            image = image.swapaxes(0, 1)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_cols:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)

    @classmethod
    def from_display_matrix(cls, matrix: Sequence[int]) -> Orientation:
        """FFmpeg's 3x3 display matrix (`AV_FRAME_DATA_DISPLAYMATRIX`, row-major, 16.16 fixed point).

        The matrix maps a coded pixel `(x, y)` to `(a x + c y, b x + d y)` (plus a translation) for
        `a, b, c, d = m[0], m[1], m[3], m[4]`. Within a degree of a multiple of 90 degrees, this is the
        rotation and flips ffmpeg's `-autorotate` inserts (transpose=clock/cclock/..., hflip, vflip);
        other angles are left as coded.
        """
        a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
        ccw = round(-math.degrees(math.atan2(b / (math.hypot(b, d) or 1), a / (math.hypot(a, c) or 1)))) % 360
        tilt = math.sin(math.radians(1))
        if abs(b) <= tilt * max(abs(a), abs(d)) and abs(c) <= tilt * max(abs(a), abs(d)):
            orientation = cls(False, flip_rows=d < 0, flip_cols=a < 0)
        elif abs(a) <= tilt * max(abs(b), abs(c)) and abs(d) <= tilt * max(abs(b), abs(c)):
            orientation = cls(True, flip_rows=b < 0, flip_cols=c < 0)
        else:
            return cls()  # a tilted frame: not applied
        return cls(orientation.transpose, orientation.flip_rows, orientation.flip_cols,
                   0 if orientation.is_identity else ccw)

    @classmethod
    def of_frame(cls, frame: av.VideoFrame) -> Orientation:
        """The orientation a decoded frame's display-matrix side data asks for (none: as coded)."""
        try:
            side_data = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
        except (AttributeError, KeyError, ValueError):
            side_data = None
        if side_data is None:
            return cls()
        matrix = np.frombuffer(bytes(side_data), dtype=np.int32)
        return cls.from_display_matrix(matrix) if len(matrix) >= 9 else cls()


_orientations: dict[tuple, Orientation] = {}  # (path, size, mtime) -> its orientation, probed once per process


def probe_orientation(path: Path) -> Orientation:
    """The display orientation of a video's first frame: a separate, short-lived open (the caller's decoder
    position is untouched), cached per file. Anything unreadable: as coded (opening reports it)."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return Orientation()
    cached = _orientations.get(key)
    if cached is not None:
        return cached
    orientation = Orientation()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # the first frame comes out of the first packet(s)
            frame = None
            for i, packet in enumerate(container.demux(stream)):
                frames = packet.decode()
                if frames or i >= ORIENTATION_PROBE_PACKETS:
                    frame = frames[0] if frames else None
                    break
            else:
                frame = next(iter(stream.codec_context.decode(None)), None)
            if frame is not None:
                orientation = Orientation.of_frame(frame)
    except (av.error.FFmpegError, OSError, IndexError, UnicodeDecodeError):
        pass
    _orientations[key] = orientation
    return orientation


@dataclass(frozen=True)
class LiveInput:
    """How to open a source that is not a file: FFmpeg's URL (`pipe:0`, `/dev/video0`, `rtsp://...`), input
    format (`v4l2`, `mpegts`, None: probed), input options (`video_size`, `rtsp_transport`, ...) and the
    seconds an open, or a read, may block before it fails (network sources; FFmpeg's interrupt callback)."""

    url: str
    format: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    open_timeout: float = 10.0
    read_timeout: float = 10.0


class SourceLost(DataError):
    """A live source stopped delivering: a read error or timeout (the reader may reconnect)."""


class VideoFile:
    """An open video: its first video stream, header (`info`) and frames with their times.

    `threaded`: True lets the codec decode on several threads, False keeps it on one, None leaves PyAV's default.
    Raises one `DataError` naming the file when it is missing, cannot be opened or has no video stream.
    `live`: open a source that is not a file (`LiveInput`; `path` only names it in messages): no display
    rotation probe, no header duration or frame count, frame times from its first decoded frame, and only
    slice threads (frame threads hold frames back: latency).
    """

    def __init__(self, path: str | Path, threaded: bool | None = None, live: LiveInput | None = None):
        self.path = Path(path)
        self.live = live
        if live is None and not self.path.is_file():
            raise DataError(f"{self.path}: no such video file")
        try:
            if live is None:
                container = av.open(str(self.path))
            else:
                container = av.open(live.url, format=live.format, options=dict(live.options),
                                    timeout=(live.open_timeout, live.read_timeout))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            if live is not None:
                raise DataError(f"{self.path}: cannot open {live.url} ({_reason(exc)})") from None
            raise DataError(f"{self.path}: cannot open video ({_reason(exc)}); re-encode or remove it") from None
        if not container.streams.video:
            container.close()
            raise DataError(f"{self.path}: no video stream in this " + ("source" if live else "file"))
        stream = container.streams.video[0]
        if threaded is not None:
            stream.thread_type = ("SLICE" if live else "AUTO") if threaded else "NONE"
        self.container, self.stream = container, stream
        if live is None:
            self.start_pts = stream.start_time if stream.start_time is not None else 0
            self.orientation = probe_orientation(self.path)
        else:  # joined mid-stream: the clock starts at the first frame decoded (`frame_time`)
            self.start_pts = None
            self.orientation = Orientation()
        width, height = self.orientation.size(stream.codec_context.width, stream.codec_context.height)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = 0.0
        if live is not None:
            pass
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        self.info = VideoInfo(
            width=width,
            height=height,
            fps=float(rate) if rate else FALLBACK_FPS,
            duration=duration,
            num_frames=0 if live is not None else int(stream.frames or 0),
            rotation=self.orientation.rotation,
        )

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frame_time(self, frame: av.VideoFrame) -> Fraction:
        """Presentation time from the stream's start, exact (seconds)."""
        if frame.pts is None:
            raise DataError(f"{self.path}: decoded frames carry no timestamps; re-encode it (e.g. to mp4)")
        if self.start_pts is None:  # a live source: its first frame
            self.start_pts = frame.pts
        return (frame.pts - self.start_pts) * self.stream.time_base

    def seek(self, seconds: float | None) -> None:
        """Go to the keyframe at or before `seconds` from the stream's start (None: the start)."""
        target = self.start_pts if seconds is None else self.start_pts + int(Fraction(seconds) / self.stream.time_base)
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise DataError(f"{self.path}: cannot seek ({_reason(exc)}); re-encode or remove it") from None

    def readable_end(self, probe_s: float = 2.0) -> float | None:
        """Where the readable data ends (seconds): the last packet's time plus one frame period.

        Cheap: seeks to `probe_s` before the header's end and only demuxes (no decoding) to the end of the
        file, so a cut file shows up (`VideoInfo.missing_tail`). None when nothing could be read there.
        Leaves the position at the end: seek before reading frames.
        """
        try:
            self.seek(max(0.0, self.info.header_end - probe_s) or None)
        except DataError:
            return None
        last = None
        try:
            for packet in self.container.demux(self.stream):
                if packet.pts is not None and packet.size:
                    time = float((packet.pts - self.start_pts) * self.stream.time_base)
                    last = time if last is None else max(last, time)
        except av.error.FFmpegError:
            pass
        return None if last is None else last + 1.0 / self.info.fps

    def frames(self, report: DecodeReport | None = None) -> Iterator[av.VideoFrame]:
        """Frames in presentation order from the current position.

        `report` None: damaged data ends the stream, after the frames the decoder still holds. A `DecodeReport`:
        damaged packets are skipped and counted, and decoding goes on (up to `MAX_CONSECUTIVE_BAD_PACKETS`);
        frames flagged as damaged and the header's frame count are noted too (`DecodeReport.warnings`).
        Frames are as coded: `orientation.apply` (in `frame_to_rgb`) turns their pixels upright.
        """
        if report is not None:
            report.header_frames = self.info.num_frames
        packets = self.container.demux(self.stream)
        consecutive_bad = 0
        while True:
            try:
                packet = next(packets)
                frames = packet.decode()
                consecutive_bad = 0
            except StopIteration:
                return
            except av.error.FFmpegError:
                if report is None:
                    # Truncated or damaged data: keep what the decoder already holds, then stop.
                    try:
                        yield from self.stream.codec_context.decode(None)
                    except av.error.FFmpegError:
                        pass
                    return
                report.bad_packets += 1
                consecutive_bad += 1
                if consecutive_bad >= MAX_CONSECUTIVE_BAD_PACKETS:
                    report.stopped_early = True
                    return
                continue
            for frame in frames:
                yield frame
                if report is not None:
                    report.frames += 1
                    report.corrupt_frames += frame.is_corrupt
                    if frame.pts is not None:
                        report.last_time = float(self.frame_time(frame))

    def live_frames(self, report: DecodeReport) -> Iterator[av.VideoFrame]:
        """Frames of a live source as they arrive, in presentation order; the end of the stream returns.

        A packet that fails to decode is skipped and counted (`report.bad_packets`); a read that fails
        (connection lost, read timeout, a pipe closed mid-packet) raises `SourceLost` naming the reason.
        """
        packets = self.container.demux(self.stream)  # at the end: empty packets that drain the decoder
        while True:
            try:
                packet = next(packets)
            except (StopIteration, av.error.EOFError, EOFError):
                return
            except (av.error.FFmpegError, OSError) as exc:
                raise SourceLost(f"{self.path}: {_reason(exc)}") from None
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                report.bad_packets += 1
                continue
            for frame in frames:
                report.frames += 1
                report.corrupt_frames += frame.is_corrupt
                if frame.pts is not None:
                    report.last_time = float(self.frame_time(frame))
                yield frame

    def timed_frames(self, report: DecodeReport | None = None) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        """`(frame_time, frame)` of `frames(report)`."""
        for frame in self.frames(report):
            yield self.frame_time(frame), frame


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
