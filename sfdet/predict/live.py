"""Online prediction: `sfdet predict SOURCE` on a camera, a network stream or a pipe, with bounded latency.

Sources (`source_kind`): a camera device (`/dev/video0`, FFmpeg's v4l2 input), a network stream
(`rtsp://`, `rtmp://`, `srt://`, `udp://`, `tcp://`, `http(s)://` including HLS), `-` (standard input, e.g.
MPEG-TS from `ffmpeg ... -f mpegts -`), or, with `--live`, a file paced at its frame rate (a rehearsal).
Every source is opened by `sfdet.data.timing.VideoFile` (`LiveInput`: format options, timeouts, no
seeking, no header duration; frame times from the first decoded frame).

Threads and queues (all bounded):
- reader (`stream.FrameStream`'s decoder thread; frames from `LiveSource.frames`): decodes, stamps each
  frame's arrival, places keyframes on the source's clock (`timing.CentreMatcher`, `--keyframe-rate`)
  and prepares every frame for the action model; hands them over through a queue of
  `LIVE_QUEUED_FRAMES` frames;
- assembler (`_LiveRun._assemble`): drains that queue at once (it only keeps one clip window of prepared
  frames, `FrameRing`), so the reader never waits and the socket is always read; as soon as the last
  frame of a keyframe's window has arrived, the keyframe (centre frame + window) is offered to
  `KeyframeQueue`, which holds at most `max_queued_keyframes`: when full, its oldest keyframe is
  dropped and counted (whole keyframes, never frames of a window);
- scorer (the main thread): takes what is queued (up to `--batch-size`, without waiting for a full
  batch), detects persons, tracks, scores, and writes each keyframe at once (CSV, tracks CSV, JSONL,
  `--stdout jsonl`) with `source_time`, `written_at` (Unix time) and `latency_s` (written minus the
  arrival of its centre frame), and feeds the preview (`sfdet.predict.preview`).

Latency is at least the part of the clip window after the centre (`max(offsets) / fps`: 1.0 s for the
SlowFast R50 detection model's 64-raw-frame window at 30 fps, 0.93 s for the toy model at 15 fps),
plus decoding, detection and scoring. A network source that drops (read error, timeout, end of the
stream) is reopened up to `--reconnect` times with growing waits (one line each); the clock goes on
across the gap (by the wall-clock time it lasted) and a `gap` record says so in the JSONL. The end of
the stream, Ctrl-C or giving up on a source close every file with its `end` record.
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from sfdet.data.timing import DecodeReport, LiveInput, SourceLost, VideoFile, VideoInfo
from sfdet.errors import DataError, SfdetError
from sfdet.persons import PersonDetector
from sfdet.predict.actions import ActionPredictor
from sfdet.predict.pipeline import PredictOptions, VideoResult, _Keyframe, _VideoRun, failure_line
from sfdet.predict.stream import DecodedFrame, FrameImage, FrameRing, FrameStream
from sfdet.predict.writers import OutputPaths

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp", "rtp", "http", "https", "hls")
# Frames the reader may be ahead of the assembler (which drains at once): a bound, rarely reached.
LIVE_QUEUED_FRAMES = 64
# Seconds to wait before reconnect attempt k (1-based): 0.5, 1, 2, 4, ... at most 8.
RECONNECT_BASE_S = 0.5
RECONNECT_MAX_S = 8.0
# Latencies kept for the percentiles (the most recent ones).
LATENCY_WINDOW = 10_000

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def source_kind(spec: str) -> str | None:
    """'stdin', 'device', 'network' for a live source; None for a file or directory."""
    if spec == "-":
        return "stdin"
    match = _SCHEME.match(spec)
    if match:
        return "network" if match.group(1).lower() in NETWORK_SCHEMES else None
    if spec.startswith("/dev/video") or (spec.startswith("/dev/") and Path(spec).is_char_device()):
        return "device"
    return None


def is_live_source(spec: str) -> bool:
    return source_kind(str(spec)) is not None


def redact(spec: str) -> str:
    """A source as written in outputs and messages: no password (`rtsp://user:***@host/...`)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", spec)


def default_name(spec: str) -> str:
    """The video id and output file stem of a source: `stdin`, `video0`, `host_port_path`, a file's stem."""
    kind = source_kind(spec)
    if kind is None:
        return Path(spec).stem
    if kind == "stdin":
        return "stdin"
    if kind == "device":
        text = Path(spec).name
    else:
        text = _SCHEME.sub("", spec).split("?", 1)[0]
        text = text.rsplit("@", 1)[-1]  # never credentials in a file name
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "live"


@dataclass
class LiveOptions:
    """What online mode adds to `PredictOptions`."""

    paced: bool = False  # a file read at its frame rate (`--live` on a file)
    name: str | None = None  # video id / output stem (default: `default_name`)
    open_timeout: float = 10.0  # seconds an open, or waiting for the first frame, may take
    reconnect: int = 3  # reopenings of a network source that dropped
    input_format: str | None = None  # FFmpeg input format (`v4l2`, `mpegts`, ...); default: probed (v4l2 for devices)
    input_options: dict[str, str] = field(default_factory=dict)  # FFmpeg input options (video_size: 640x360 ...)
    max_queued_keyframes: int | None = None  # scored-keyframe queue bound (default: `default_queue_bound`)
    preview_port: int | None = None  # `--preview PORT`
    preview_host: str = "127.0.0.1"

    def __post_init__(self):
        if not self.open_timeout > 0:
            raise SfdetError(f"--open-timeout must be > 0, got {self.open_timeout}")
        if self.reconnect < 0:
            raise SfdetError(f"--reconnect must be >= 0, got {self.reconnect}")
        if self.max_queued_keyframes is not None and self.max_queued_keyframes < 1:
            raise SfdetError(f"--max-queued-keyframes must be >= 1, got {self.max_queued_keyframes}")


def _say(line: str) -> None:
    print(f"sfdet predict: {line}", file=sys.stderr, flush=True)


class LiveSource:
    """A source read front to back as it arrives: opened (with `open_timeout`), paced (a file), reopened.

    `frames(report, threaded)` yields `DecodedFrame`s on one continuous clock: the source's own frame
    times, and after a reconnect the time the gap lasted. `events` collects `gap` records for the JSONL
    (written by the main thread). `stop()` ends waits (pacing, backoff) at once.
    """

    def __init__(self, spec: str, options: LiveOptions):
        self.spec = str(spec)
        self.kind = source_kind(self.spec) or "file"
        self.options = options
        self.name = options.name or default_name(self.spec)
        self.path = Path(self.spec) if self.kind == "file" else Path(self.name)
        self.display = redact(self.spec)
        self.events: collections.deque[dict] = collections.deque()
        self.reconnects = 0
        self.ended: str | None = None  # why the frames ended (None: still running)
        self._stop = threading.Event()
        self._file: VideoFile | None = None
        self.info: VideoInfo | None = None

    # -- opening ----------------------------------------------------------------------------

    def _live_input(self) -> LiveInput:
        options = self.options
        url = {"stdin": "pipe:0"}.get(self.kind, self.spec)
        fmt = options.input_format or ("v4l2" if self.kind == "device" else None)
        return LiveInput(url, fmt, tuple(sorted(options.input_options.items())), options.open_timeout,
                         options.open_timeout)

    def _open_once(self) -> VideoFile:
        if self.kind == "file":
            return VideoFile(self.path)
        live = self._live_input()
        try:
            return VideoFile(self.path, live=live)
        except DataError as exc:  # name the source as the user wrote it
            text = str(exc).replace(f"{self.path}: ", "", 1).replace("pipe:0", "standard input")
            raise DataError(f"{self.display}: {text}") from None

    def _open_with_timeout(self) -> VideoFile:
        """Open in a helper thread: a pipe or device that never delivers cannot block the run past the timeout."""
        box: dict = {}

        def target():
            try:
                box["file"] = self._open_once()
            except BaseException as exc:  # handed to the caller
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"open:{self.name}", daemon=True)
        thread.start()
        thread.join(self.options.open_timeout + (1.0 if self.kind == "network" else 0.0))
        if thread.is_alive():
            raise DataError(f"{self.display}: nothing could be read within {self.options.open_timeout:g} s "
                            "(--open-timeout); is the source sending?")
        if "error" in box:
            raise box["error"]
        return box["file"]

    def open(self) -> VideoInfo:
        """Open the source (raises one `DataError` line after `open_timeout`); its header values."""
        self._file = self._open_with_timeout()
        self.info = self._file.info
        return self.info

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()

    # -- frames -----------------------------------------------------------------------------

    def frames(self, report: DecodeReport, threaded: bool = False) -> Iterator[DecodedFrame]:
        file = self._file
        if file is None:
            raise RuntimeError("LiveSource.open() first")
        index = 0
        offset = Fraction(0)  # added to a segment's frame times (after a reconnect)
        last_time: Fraction | None = None
        last_wall = None
        pace_origin = None  # monotonic time of source time 0 (pacing a file)
        period = 1 / Fraction(self.info.fps).limit_denominator(1_001_000)
        while True:
            file.stream.thread_type = ("SLICE" if threaded else "NONE") if self.kind != "file" else \
                ("AUTO" if threaded else "NONE")
            frames = file.live_frames(report) if self.kind != "file" else file.frames(report)
            error = None
            try:
                for frame in frames:
                    if self._stop.is_set():
                        self.ended = self.ended or "stopped"
                        return
                    shown = offset + file.frame_time(frame)
                    if last_time is not None and shown <= last_time:  # a stream that went back in time
                        continue
                    if self.options.paced:
                        now = time.monotonic()
                        if pace_origin is None:
                            pace_origin = now - float(shown)
                        wait = pace_origin + float(shown) - now
                        if wait > 0 and self._stop.wait(wait):
                            self.ended = self.ended or "stopped"
                            return
                    image = FrameImage(frame, 0 if threaded else 1, file.orientation)
                    yield DecodedFrame(index, float(shown), image, index, shown)
                    index += 1
                    last_time, last_wall = shown, time.monotonic()
            except SourceLost as exc:
                error = str(exc)
            finally:
                file.close()
            reason = f"lost ({error.split(': ', 1)[-1]})" if error else "ended"
            if self.kind != "network" or self.options.reconnect == 0 or self._stop.is_set():
                self.ended = self.ended or (f"source {reason}" if error else "end of stream")
                return
            file = self._reconnect(reason)
            if file is None:
                return
            gap_s = time.monotonic() - last_wall if last_wall is not None else 0.0
            resumed = (last_time if last_time is not None else Fraction(0)) + \
                max(period, Fraction(gap_s).limit_denominator(1_000_000))
            self.events.append({"from_time": None if last_time is None else round(float(last_time), 6),
                                "to_time": round(float(resumed), 6), "seconds": round(gap_s, 3),
                                "reconnects": self.reconnects})
            offset = resumed  # the new segment's first frame is at time 0 of its own clock

    def _reconnect(self, reason: str) -> VideoFile | None:
        attempts = self.options.reconnect
        for attempt in range(1, attempts + 1):
            wait = min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2 ** (attempt - 1))
            _say(f"warning: {self.display}: stream {reason}; reconnecting in {wait:g} s ({attempt}/{attempts})")
            if self._stop.wait(wait):
                self.ended = "stopped"
                return None
            try:
                file = self._open_with_timeout()
            except DataError as exc:
                reason = f"not back ({str(exc).split(': ', 1)[-1]})"
                continue
            self.reconnects += 1
            _say(f"{self.display}: reconnected")
            return file
        _say(f"warning: {self.display}: gave up after {attempts} reconnect attempt(s); ending")
        self.ended = f"source {reason}; gave up after {attempts} reconnect attempt(s)"
        return None


@dataclass
class _Job:
    """A keyframe whose clip window is complete, waiting to be scored."""

    time: float
    centre: int
    source_centre: int
    rgb: np.ndarray
    arrival: float  # wall-clock arrival of its centre frame
    frames: list | None = None  # the window's prepared frames


class KeyframeQueue:
    """Keyframes waiting for the scorer, at most `bound`: a new one pushes the oldest out (dropped, counted)."""

    def __init__(self, bound: int):
        self.bound = bound
        self._items: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.dropped_times: list[float] = []  # the first `bound_listed` ones
        self.max_len = 0

    def put(self, job: _Job) -> _Job | None:
        with self._cond:
            dropped = None
            if len(self._items) >= self.bound:
                dropped = self._items.popleft()
                self.dropped += 1
                if len(self.dropped_times) < 1000:
                    self.dropped_times.append(dropped.time)
            self._items.append(job)
            self.max_len = max(self.max_len, len(self._items))
            self._cond.notify()
            return dropped

    def take(self, most: int, timeout: float) -> list[_Job] | None:
        """Up to `most` queued keyframes (what is there: no waiting for a full batch); [] after `timeout`
        with none; None once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None if self._closed else []
            return [self._items.popleft() for _ in range(min(most, len(self._items)))]

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LiveStats:
    """Counters for the status endpoint and the `end` record (updated by the threads, read by anyone)."""

    def __init__(self):
        self.started = time.time()
        self.frames_in = 0
        self.first_frame = threading.Event()
        self._arrivals: collections.deque[float] = collections.deque(maxlen=300)
        self._scored: collections.deque[float] = collections.deque(maxlen=200)
        self.keyframes_scored = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.latency_max = 0.0
        self.max_frames_queued = 0
        self.state = "opening"

    def frame_in(self, arrival: float) -> None:
        self.frames_in += 1
        self._arrivals.append(arrival)
        self.first_frame.set()

    def scored(self, written: float, latency: float) -> None:
        self.keyframes_scored += 1
        self._scored.append(written)
        self.latencies.append(latency)
        self.latency_max = max(self.latency_max, latency)

    @staticmethod
    def _rate(times, horizon: float = 10.0) -> float:
        times = list(times)
        if len(times) < 2:
            return 0.0
        now = time.time()
        recent = [t for t in times if t >= now - horizon] or times[-2:]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], recent[-1] - recent[0]) if now - recent[-1] < 2 else recent[-1] - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def latency_summary(self) -> dict:
        values = np.asarray(self.latencies, dtype=np.float64)
        if not len(values):
            return {"p50": None, "p95": None, "max": None, "last": None}
        return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3),
                "max": round(self.latency_max, 3), "last": round(float(values[-1]), 3)}

    def fps_in(self) -> float:
        return round(self._rate(self._arrivals, 5.0), 2)

    def keyframes_per_s(self) -> float:
        return round(self._rate(self._scored, 10.0), 3)


def default_queue_bound(device, batch_size: int) -> int:
    """Keyframes waiting to be scored before the oldest is dropped.

    A keyframe's latency grows with the keyframes ahead of it: on a GPU a full batch costs little more than
    one clip, so up to a batch may wait; on a CPU scoring time grows with the batch, so only 2 wait
    (measured: the published R50 on 2 CPU cores with 8 waiting had a p50 latency of 114 s).
    """
    return max(2, batch_size) if getattr(device, "type", str(device)) == "cuda" else 2


class _LiveRun(_VideoRun):
    """One live source, online: `_VideoRun`'s detection, writing and `end` record, with the threads above."""

    def __init__(self, source: LiveSource, predictor: ActionPredictor, detector: PersonDetector, paths: OutputPaths,
                 options: PredictOptions, live: LiveOptions, preview=None):
        self.source, self.live, self.preview = source, live, preview
        self.stats = LiveStats()
        self.jobs = KeyframeQueue(live.max_queued_keyframes or default_queue_bound(predictor.device, options.batch_size))
        self.assembler_error: BaseException | None = None
        super().__init__(source.path, predictor, detector, paths, options)
        self.video_id = source.name if source.kind != "file" else self.video_id
        self.result = VideoResult(Path(source.display) if source.kind == "file" else Path(source.name))

    def _open_stream(self, video: Path, times) -> FrameStream:
        predictor = self.predictor
        self.source.open()
        return FrameStream(video, times, predictor.prepare_frame, LIVE_QUEUED_FRAMES,
                           resample_fps=predictor.cfg.video_resample_fps,
                           window_offsets=None,  # prepare every frame at once: no look-ahead, no added latency
                           threaded_decode=False, source=self.source, keep_rgb=self.preview is not None)

    @property
    def window_after_centre_s(self) -> float:
        """The least latency: the clip window's frames after its centre, at the stream's rate."""
        fps = self.predictor.cfg.video_resample_fps or self.info.fps
        return max(self.predictor.offsets) / fps

    # -- the assembler thread -----------------------------------------------------------------

    def _assemble(self) -> None:
        offsets = self.predictor.offsets
        last_offset = max(offsets)
        waiting: collections.deque[_Job] = collections.deque()
        stream, stats = self.stream, self.stats
        try:
            for item in stream:
                stats.max_frames_queued = max(stats.max_frames_queued, stream._queue.qsize() + 1)
                stats.frame_in(item.arrival)
                self.ring.append(item.index, item.prepared)
                if self.preview is not None and item.rgb is not None:
                    self.preview.offer_frame(item.rgb)
                for t in item.keyframes:
                    waiting.append(_Job(t, item.index, item.source_index, item.rgb, item.arrival))
                while waiting and waiting[0].centre + last_offset <= item.index:
                    job = waiting.popleft()
                    job.frames = self.ring.window(job.centre, offsets, item.index + 1)
                    self.jobs.put(job)
            while waiting:  # the stream ended: windows repeat its last frame
                job = waiting.popleft()
                job.frames = self.ring.window(job.centre, offsets, self.ring.last_index + 1)
                self.jobs.put(job)
        except BaseException as exc:  # the main thread reports it
            self.assembler_error = exc
        finally:
            self.jobs.close()

    # -- the main thread ------------------------------------------------------------------------

    def _record_extra(self, keyframe: _Keyframe) -> dict:
        written = time.time()
        latency = written - keyframe.arrival
        self.stats.scored(written, latency)
        return {"source_time": round(keyframe.time, 6), "written_at": round(written, 3),
                "latency_s": round(latency, 3), "dropped_so_far": self.jobs.dropped}

    def _write(self, keyframe: _Keyframe, scores) -> None:
        super()._write(keyframe, scores)
        if self.preview is not None:
            self.preview.update_keyframe(keyframe, scores, self.predictor.label_map, self.options.render_threshold)

    def status(self) -> dict:
        """The preview's `/status.json`."""
        stats = self.stats
        return {
            "source": self.source.display,
            "name": self.source.name,
            "state": stats.state,
            "uptime_s": round(time.time() - stats.started, 1),
            "frames_in": stats.frames_in,
            "fps_in": stats.fps_in(),
            "keyframes_scored": stats.keyframes_scored,
            "keyframes_per_s": stats.keyframes_per_s(),
            "dropped": self.jobs.dropped,
            "latency_s": stats.latency_summary(),
            "min_latency_s": round(self.window_after_centre_s, 3),
            "reconnects": self.source.reconnects,
            "queues": {"frames": self.stream._queue.qsize(), "frames_bound": LIVE_QUEUED_FRAMES,
                       "keyframes": len(self.jobs), "keyframes_bound": self.jobs.bound},
        }

    def _end_extra(self) -> dict:
        stats = self.stats
        return {"online": {
            "source": self.source.display,
            "ended": self.source.ended or stats.state,
            "keyframes_scored": stats.keyframes_scored,
            "keyframes_dropped": self.jobs.dropped,
            "dropped_timestamps": [self.timestamp(t) for t in self.jobs.dropped_times],
            "latency_s": stats.latency_summary(),
            "min_latency_s": round(self.window_after_centre_s, 3),
            "reconnects": self.source.reconnects,
            "max_frames_queued": stats.max_frames_queued,
            "frames_queue_bound": LIVE_QUEUED_FRAMES,
            "max_keyframes_queued": self.jobs.max_len,
            "keyframes_queue_bound": self.jobs.bound,
        }}

    def _write_events(self) -> None:
        while self.source.events:
            self.writer.write_record("gap", self.source.events.popleft())

    def run(self) -> VideoResult:
        started = time.perf_counter()
        stats = self.stats
        assembler = threading.Thread(target=self._assemble, name=f"assemble:{self.source.name}", daemon=True)
        interrupted = False
        try:
            self._write_header()
            self.writer.write_record("source", {
                "source": self.source.display, "kind": self.source.kind, "online": True,
                "paced": self.live.paced, "keyframe_rate": self.options.keyframe_rate,
                "batch_size": self.options.batch_size, "max_queued_keyframes": self.jobs.bound,
                "min_latency_s": round(self.window_after_centre_s, 3)})
            stats.state = "running"
            assembler.start()
            if self.preview is not None:
                self.preview.status = self.status
            if not stats.first_frame.wait(self.live.open_timeout):
                if assembler.is_alive() and self.assembler_error is None:
                    raise DataError(f"{self.source.display}: no frame within {self.live.open_timeout:g} s "
                                    "(--open-timeout); is the source sending?")
            while True:
                batch = self.jobs.take(self.options.batch_size, timeout=0.25)
                self._write_events()
                if batch is None:
                    break
                for job in batch:
                    self._detect(job.time, job.centre, job.source_centre, job.rgb)
                    keyframe = self.pending.popleft()
                    keyframe.arrival = job.arrival
                    if len(keyframe.model_boxes):
                        keyframe.clip = self.predictor.clip(job.frames)
                    self.batch.append(keyframe)
                    job.frames = job.rgb = None
                self._flush()
        except KeyboardInterrupt:
            interrupted = True
            self.source.ended = "interrupted (Ctrl-C)"
            self.stream.report.header_frames = 0  # stopped on purpose: not a file cut short
        except Exception:
            self._stop_threads(assembler)
            self._close()
            if self.writer.keyframes_written == 0:
                for path in self.paths.all():
                    path.unlink(missing_ok=True)
            raise
        self._stop_threads(assembler)
        try:
            error, stopped = self.assembler_error, None
            if error is not None and not interrupted:
                if stats.frames_in == 0:
                    raise error
                stopped = f"{self.source.display}: stopped reading: {failure_line(Path(self.source.name), error)}"
                self.source.ended = f"error: {stopped}"
            stats.state = "ended"
            self._write_events()
            self._finish(started)
            if stopped:
                self.result.warnings.append(stopped)
        except Exception:
            if self.writer.keyframes_written == 0:
                self._close()
                for path in self.paths.all():
                    path.unlink(missing_ok=True)
            raise
        finally:
            self._close()
        return self.result

    def _stop_threads(self, assembler: threading.Thread) -> None:
        self.source.stop()
        self.stream.close()
        self.jobs.close()
        if assembler.is_alive():
            assembler.join(timeout=5)


def predict_live(spec: str, predictor: ActionPredictor, detector: PersonDetector, options: PredictOptions,
                 live: LiveOptions, out_dir: str | Path | None = None) -> VideoResult:
    """Predict one live source (or a paced file) online; see the module docstring.

    Raises `SfdetError` when the source cannot be opened or delivers no frame within `open_timeout`;
    anything after the first frame (end of stream, a lost source, Ctrl-C) ends the run with its `end` record.
    """
    kind = source_kind(str(spec)) or "file"
    name = live.name or default_name(str(spec))
    if kind == "file":
        target = Path(out_dir) if out_dir is not None else Path(spec).parent
    else:
        target = Path(out_dir) if out_dir is not None else Path.cwd()
    paths = OutputPaths.for_video(target, name, False)
    source = LiveSource(spec, replace(live, name=name))
    preview = None
    if live.preview_port is not None:
        from sfdet.predict.preview import PreviewServer

        preview = PreviewServer(live.preview_port, host=live.preview_host)
        _say(f"preview on http://{live.preview_host}:{preview.port}/")
    try:
        run = _LiveRun(source, predictor, detector, paths, options, live, preview=preview)
        return run.run()
    finally:
        source.close()
        if preview is not None:
            preview.close()
