"""Video -> person boxes -> tracks -> actions -> outputs, streaming, one keyframe batch at a time.

Per video (`predict_video`):
1. a background thread decodes the video once and prepares the frames the
   clip windows sample for the action model (`stream.FrameStream`); the last clip-window of prepared
   frames lives in a ring buffer (`stream.FrameRing`);
2. at each keyframe's centre frame the person detector reads the full-resolution
   frame, and the tracker gives the boxes their ids;
3. once a keyframe's last window frame has arrived (or the video ended:
   edge frames repeat, as in training) its clip joins the batch; a full
   batch is scored by the action model;
4. each scored keyframe is written at once (CSV, tracks CSV, JSON Lines) and,
   with rendering, the frames up to it are drawn and encoded; its tracks' scores
   feed the video's `timelines.ActionTimeline`, whose segments go into the JSONL
   as they close and into `<stem>.segments.csv` at the end (before the `end` record).
With `track_every` N > 0 (`--track-every`) the detector also runs on every Nth
decoded frame and a `tracking.ByteTracker` (Kalman motion, two-stage
association) gives the ids, written per frame to `<stem>.frames.csv`; N = 0
(the default) is the keyframe-only `tracking.IouTracker`.
Memory is bounded by the window, the decode queue and one batch: it does not
grow with the video's length.

Many videos (`predict_videos`): each failure, whatever its cause, is one line
(`failure_line`) and the other videos go on; a video that failed midway keeps
its finished keyframes (JSONL without `end`); `--resume` skips videos whose
outputs are complete; under torchrun the ranks take disjoint shares of the
(sorted) videos. With `--boxes`, a video the file has no boxes for (id absent,
or none of its keyframes' timestamps) is an error, never a silent empty result.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sfdet.data.config import DataConfig
from sfdet.errors import DataError, SfdetError
from sfdet.persons import PersonDetector
from sfdet.persons.precomputed import PrecomputedDetector, timestamp_key, timestamp_range
from sfdet.predict.actions import ActionPredictor
from sfdet.predict.render import Overlay, VideoRenderer
from sfdet.predict.stream import FrameRing, FrameStream, every
from sfdet.predict.timelines import ActionTimeline, TimelineSettings, write_segments_csv
from sfdet.predict.tracking import ByteTracker, IouTracker
from sfdet.predict.writers import KeyframePrediction, OutputPaths, PersonPrediction, PredictionWriter

VIDEO_EXTENSIONS = tuple(DataConfig().video_extensions)


@dataclass
class PredictOptions:
    """Everything `sfdet predict` lets the user choose, besides the models."""

    keyframe_rate: float = 1.0  # keyframes per second (ignored when `timestamps` is given)
    timestamps: list[float] | None = None  # keyframe timestamps (in the CSV's time: video time + time_offset)
    time_offset: float | None = None  # None: the model's data config's
    batch_size: int = 8
    min_score: float = 0.0  # CSV rows / JSON actions below this are left out
    render: bool = False
    render_threshold: float = 0.5  # labels drawn (and tracks-CSV rows) at or above this
    track_min_iou: float = 0.3
    track_max_age: int = 1
    # > 0: the person detector also runs on every Nth decoded frame, tracked by `ByteTracker` (`--track-every`)
    track_every: int = 0
    timeline: TimelineSettings = field(default_factory=TimelineSettings)  # action segments
    # Decoded frames the decoder thread may run ahead: about one batch of 8 keyframes of a 30 fps video, so it
    # decodes the next batch's frames while this one is scored (with 8, decoding and scoring took turns).
    max_queued_frames: int = 256
    progress: bool = True
    stdout_jsonl: bool = False  # also write every JSONL record to standard output (`--stdout jsonl`)

    def __post_init__(self):
        if not self.keyframe_rate > 0:
            raise SfdetError(f"--keyframe-rate must be > 0, got {self.keyframe_rate}")
        if self.batch_size < 1:
            raise SfdetError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.track_every < 0:
            raise SfdetError(f"--track-every must be >= 0 (0: keyframes only), got {self.track_every}")


@dataclass
class StageTimes:
    """Seconds spent per stage (decode runs in its own thread, in parallel with the rest)."""

    decode: float = 0.0
    detect: float = 0.0  # person detection and tracking (keyframes, and every Nth frame with --track-every)
    action: float = 0.0
    write: float = 0.0  # outputs and rendering
    total: float = 0.0


@dataclass
class VideoResult:
    video: Path
    keyframes: int = 0
    frames: int = 0
    skipped: bool = False  # --resume found complete outputs
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)


@dataclass
class _Keyframe:
    """A keyframe between detection and scoring."""

    time: float  # video time (s)
    timestamp: float  # as written in the outputs (video time + time offset, or the given timestamp)
    centre: int  # index of its centre frame in the stream clips are cut from (the grid point when resampling)
    source_centre: int  # that frame's index among the decoded frames (written out, drawn on)
    boxes_norm: np.ndarray  # (N, 4) float32
    detector_scores: np.ndarray  # (N,)
    track_ids: np.ndarray  # (N,)
    model_boxes: torch.Tensor  # (N, 4) boxes_xyxy_abs in the model's input pixels
    clip: torch.Tensor | None = None  # (3, T, H', W') once its window is complete


class _NoBoxesMatched(DataError):
    """`--boxes` listed none of a video's keyframes: its (empty) outputs are removed."""


def _keyframe_times(options: PredictOptions, time_offset: float) -> tuple[Sequence[float] | Iterable[float], dict]:
    """Video times of the keyframes, and video time -> the timestamp written in the outputs."""
    if options.timestamps is not None:
        timestamps = sorted(set(float(t) for t in options.timestamps))
        if timestamps and timestamps[0] - time_offset < 0:
            raise SfdetError(
                f"--timestamps: {timestamps[0]:g} is before the video's start (time offset {time_offset:g})"
            )
        return [t - time_offset for t in timestamps], {t - time_offset: t for t in timestamps}
    return every(1.0 / options.keyframe_rate), {}


class _VideoRun:
    """The state of one video's prediction (see the module docstring for the steps)."""

    def __init__(self, video: Path, predictor: ActionPredictor, detector: PersonDetector, paths: OutputPaths,
                 options: PredictOptions):
        self.video, self.video_id = video, video.stem
        self.predictor, self.detector, self.options = predictor, detector, options
        self.time_offset = predictor.cfg.time_offset if options.time_offset is None else options.time_offset
        times, self._timestamp_of = _keyframe_times(options, self.time_offset)
        # Opening checks the file: missing, not a video, audio-only raise DataError before any output exists.
        self.stream = self._open_stream(video, times)
        self.info = self.stream.info
        self.ring = FrameRing(predictor.window_span)
        self.tracker = ByteTracker(fresh_ids=True) if options.track_every else \
            IouTracker(options.track_min_iou, options.track_max_age)
        self.timeline = ActionTimeline(predictor.label_map, options.timeline)
        self.frames_tracked = 0  # frames the detector ran on (keyframe centres included)
        self._last_tracked = -1  # source index of the last frame the ByteTracker saw
        self.pending: deque[_Keyframe] = deque()  # detected, window not complete yet
        self.batch: list[_Keyframe] = []
        self.result = VideoResult(video)
        self.paths = paths
        self.keyframe_timestamps: list[float] = []  # of the keyframes detected so far
        # Precomputed boxes that cannot match this video (id absent, timestamps off): an error before any output.
        problem = self._boxes_problem()
        if problem is not None:
            raise DataError(f"{video}: {problem}")
        self.writer = PredictionWriter(paths, predictor.label_map, options.min_score, options.render_threshold,
                                       echo=sys.stdout if options.stdout_jsonl else None)
        if paths.segments_csv is not None:  # a previous run's: written anew at the end
            paths.segments_csv.unlink(missing_ok=True)
        try:
            self.renderer = VideoRenderer(video, paths.video, self.info.fps) if paths.video is not None else None
        except BaseException:
            self.writer.close()
            for path in paths.all():
                path.unlink(missing_ok=True)
            raise

    def _open_stream(self, video: Path, times) -> FrameStream:
        """The decoder of the video (online mode, `sfdet.predict.live`, reads a live source instead)."""
        predictor = self.predictor
        return FrameStream(video, times, predictor.prepare_frame, self.options.max_queued_frames,
                           resample_fps=predictor.cfg.video_resample_fps, window_offsets=predictor.offsets,
                           # a CPU action model uses every core: one decoding (and RGB conversion) thread is
                           # faster (+4-7% keyframes/s on 2 cores); on a GPU the cores are free for them
                           threaded_decode=predictor.device.type != "cpu",
                           **({"rgb_every": self.options.track_every} if self.options.track_every else {}))

    def _record_extra(self, keyframe: _Keyframe) -> dict | None:
        """More fields of a keyframe's JSONL record (online mode: source time, latency)."""
        return None

    def _end_extra(self) -> dict:
        """More fields of the `end` record (online mode: dropped keyframes, latency percentiles)."""
        return {}

    def timestamp(self, time_s: float) -> float:
        return self._timestamp_of.get(time_s, round(time_s + self.time_offset, 6))

    def run(self) -> VideoResult:
        started = time.perf_counter()
        try:
            self._write_header()
            bar = tqdm(self.stream, total=self.info.num_frames or None, unit="frame", desc=self.video.name,
                       disable=not self.options.progress, leave=False)
            last_offset = max(self.predictor.offsets)
            track_every = self.options.track_every
            for item in bar:
                self.ring.append(item.index, item.prepared)
                for time_s in item.keyframes:
                    self._detect(time_s, item.index, item.source_index, item.rgb, frame_time=item.time)
                if (track_every and not item.keyframes and item.rgb is not None
                        and item.source_index % track_every == 0 and item.source_index != self._last_tracked):
                    self._track_frame(item.source_index, item.time, item.rgb)
                while self.pending and self.pending[0].centre + last_offset <= item.index:
                    self._enqueue(self.pending.popleft(), num_frames=item.index + 1)
            while self.pending:  # the video ended: the windows repeat its last frame
                self._enqueue(self.pending.popleft(), num_frames=self.ring.last_index + 1)
            self._flush()
            self._check_boxes_matched()
            self._finish(started)
        except Exception as exc:
            # Nothing predicted: leave no half-empty outputs behind. Midway: the finished keyframes stay
            # (the JSONL has no `end` record, so `--resume` redoes the video).
            if self.writer.keyframes_written == 0 or isinstance(exc, _NoBoxesMatched):
                self._close()
                for path in self.paths.all():
                    path.unlink(missing_ok=True)
                self.writer.keyframes_written = 0
            raise
        finally:
            self._close()
        return self.result

    # -- precomputed boxes that match nothing -----------------------------------------------------

    def _boxes_problem(self) -> str | None:
        """Why `--boxes` cannot give this video any box, judged before decoding (None: some may match).

        The video id must be in the file, and some of the file's timestamps for it must be keyframes of
        this run: on the `--keyframe-rate` grid (or among `--timestamps`) once the time offset is taken off,
        and not before the video's start. Timestamps past the video's end show only once it is decoded
        (`_check_boxes_matched`): headers may lie about the duration.
        """
        detector = self.detector
        if not isinstance(detector, PrecomputedDetector):
            return None
        problem = detector.missing_id_problem(self.video_id)
        if problem is not None:
            return problem
        listed = detector.timestamps(self.video_id)
        if self.options.timestamps is not None:
            wanted = {timestamp_key(t) for t in self.options.timestamps}
            matches = [t for t in listed if timestamp_key(t) in wanted]
        else:
            rate = self.options.keyframe_rate
            video_times = listed - self.time_offset
            steps = np.round(video_times * rate)
            on_grid = [timestamp_key(round(k * (1.0 / rate) + self.time_offset, 6)) == timestamp_key(t)
                       for k, t in zip(steps, listed)]
            possible = np.asarray(on_grid, bool) & (steps >= 0)
            duration = self._header_duration()
            if duration > 0:  # a header may be wrong: only far past its duration is surely past the end
                possible &= video_times <= 2 * duration + 10
            matches = listed[possible]
        if len(matches):
            return None
        return self._no_match_line(self._planned_keyframes())

    def _planned_keyframes(self) -> str:
        """The timestamps this run's keyframes will have, as far as known before decoding."""
        if self.options.timestamps is not None:
            return timestamp_range(self.options.timestamps)
        rate, duration = self.options.keyframe_rate, self._header_duration()
        every_s = f"every {1 / rate:g} s"
        if duration <= 0:
            return f"from {self.time_offset:g} s, {every_s}"
        last = np.floor(duration * rate + 1e-6) / rate + self.time_offset
        return f"{timestamp_range([self.time_offset, last])}, {every_s}"

    def _header_duration(self) -> float:
        """The video's duration as its header says (seconds; 0 when it does not)."""
        info = self.info
        return info.duration or (info.num_frames / info.fps if info.num_frames and info.fps else 0.0)

    def _no_match_line(self, keyframes: str) -> str:
        listed = self.detector.timestamps(self.video_id)
        return (f"none of its keyframes (timestamps {keyframes}; time offset {self.time_offset:g}) is in "
                f"{self.detector.path}, whose rows for {self.video_id!r} have timestamps {timestamp_range(listed)} "
                f"({len(listed)} keyframe(s)); set --time-offset to the timestamp of the video's first frame "
                "(AVA: 900), or --timestamps / --keyframe-rate to the file's keyframes")

    def _check_boxes_matched(self) -> None:
        """After the last keyframe: precomputed boxes listed none of them (e.g. all past the video's end)."""
        detector = self.detector
        if isinstance(detector, PrecomputedDetector) and not detector.has_boxes_for(self.video_id,
                                                                                    self.keyframe_timestamps):
            keyframes = timestamp_range(self.keyframe_timestamps) if self.keyframe_timestamps else "none"
            raise _NoBoxesMatched(f"{self.video}: {self._no_match_line(keyframes)}")

    def _write_header(self) -> None:
        info, options = self.info, self.options
        self.writer.write_header({
            "video": str(self.video),
            "video_id": self.video_id,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "rotation": info.rotation,  # display rotation applied: width, height and boxes are upright
            "num_frames_header": info.num_frames,
            "time_offset": self.time_offset,
            "model": self.predictor.describe(),
            "detector": self.detector.describe(),
            "tracker": self._tracker_description(),
            "timeline": asdict(options.timeline),
            "label_map": {str(k): v for k, v in self.predictor.label_map.items()},
        })

    def _tracker_description(self) -> dict:
        options = self.options
        if not options.track_every:
            return {"min_iou": options.track_min_iou, "max_age": options.track_max_age}
        t = self.tracker
        return {"kind": "bytetrack", "track_every": options.track_every, "high_score": t.high_score,
                "low_score": t.low_score, "new_track_score": t.new_track_score, "match_iou": t.match_iou,
                "low_match_iou": t.low_match_iou, "max_lost_frames": t.max_lost_frames}

    def _track(self, boxes_xyxy_abs: np.ndarray, scores: np.ndarray, boxes_norm: np.ndarray, source_index: int,
               frame_time: float) -> np.ndarray:
        """Track ids of a detected frame's boxes (the ByteTracker of `--track-every`), written to the frames CSV."""
        track_ids = self.tracker.update(boxes_xyxy_abs, scores, source_index)
        self._last_tracked = source_index
        self.frames_tracked += 1
        self.writer.write_frame(self.video_id, source_index, frame_time, track_ids, boxes_norm, scores)
        return track_ids

    def _track_frame(self, source_index: int, frame_time: float, frame_rgb: np.ndarray) -> None:
        """`--track-every`: persons of a frame that is not a keyframe centre, for the tracker only."""
        tick = time.perf_counter()
        boxes_xyxy_abs, scores = self.detector(frame_rgb, self.video_id, round(frame_time + self.time_offset, 6))
        height, width = frame_rgb.shape[:2]
        boxes_norm = boxes_xyxy_abs / np.array([width, height, width, height], dtype=np.float32)
        self._track(boxes_xyxy_abs, scores, boxes_norm, source_index, frame_time)
        self.result.times.detect += time.perf_counter() - tick

    def _detect(self, time_s: float, centre: int, source_centre: int, frame_rgb: np.ndarray,
                frame_time: float | None = None) -> None:
        """Persons of a keyframe, on its full-resolution centre frame (`frame_time`: that frame's time)."""
        tick = time.perf_counter()
        timestamp = self.timestamp(time_s)
        self.keyframe_timestamps.append(timestamp)
        boxes_xyxy_abs, scores = self.detector(frame_rgb, self.video_id, timestamp)
        height, width = frame_rgb.shape[:2]
        boxes_norm = boxes_xyxy_abs / np.array([width, height, width, height], dtype=np.float32)
        if self.options.track_every:
            track_ids = self._track(boxes_xyxy_abs, scores, boxes_norm, source_centre,
                                    time_s if frame_time is None else frame_time)
        else:
            track_ids = self.tracker.update(boxes_xyxy_abs)
        model_boxes = self.predictor.model_boxes(frame_rgb, boxes_xyxy_abs)
        self.pending.append(_Keyframe(time_s, timestamp, centre, source_centre, boxes_norm, scores, track_ids,
                                      model_boxes))
        self.result.times.detect += time.perf_counter() - tick

    def _enqueue(self, keyframe: _Keyframe, num_frames: int) -> None:
        """Its window is complete: cut the clip out of the ring (persons only) and batch it."""
        if len(keyframe.model_boxes):
            keyframe.clip = self.predictor.clip(self.ring.window(keyframe.centre, self.predictor.offsets, num_frames))
        self.batch.append(keyframe)
        if len(self.batch) >= self.options.batch_size:
            self._flush()

    def _flush(self) -> None:
        """Score the batch, then write (and render) its keyframes in order."""
        times = self.result.times
        tick = time.perf_counter()
        with_persons = [k for k in self.batch if len(k.model_boxes)]
        scores = self.predictor.score([k.clip for k in with_persons], [k.model_boxes for k in with_persons]) \
            if with_persons else []
        scores_of = {id(k): s for k, s in zip(with_persons, scores)}
        times.action += time.perf_counter() - tick
        tick = time.perf_counter()
        for keyframe in self.batch:
            self._write(keyframe, scores_of.get(id(keyframe)))
        self.batch.clear()
        times.write += time.perf_counter() - tick

    def _write(self, keyframe: _Keyframe, scores: np.ndarray | None) -> None:
        persons = [
            PersonPrediction(keyframe.boxes_norm[i], float(keyframe.detector_scores[i]), int(keyframe.track_ids[i]),
                             scores[i])
            for i in range(len(keyframe.boxes_norm))
        ]
        self.writer.write_keyframe(KeyframePrediction(self.video_id, keyframe.timestamp, keyframe.source_centre,
                                                      persons, extra=self._record_extra(keyframe)))
        self.result.keyframes += 1
        self._update_timeline(keyframe, persons)
        if self.renderer is not None:
            self.renderer.show(keyframe.source_centre, self._overlay(keyframe, persons))

    def _timeline_scores(self, person: PersonPrediction) -> np.ndarray:
        """A person's scores as its JSONL record has them (rounded to 6 digits, below --min-score 0), so the
        segments rebuilt from the JSONL (`timelines.segments_from_jsonl`) are the ones written."""
        min_score = self.options.min_score
        return np.array([round(float(v), 6) if v >= min_score else 0.0 for v in person.action_scores])

    def _update_timeline(self, keyframe: _Keyframe, persons: list[PersonPrediction]) -> None:
        num_classes = len(self.predictor.label_map)
        scores = np.array([self._timeline_scores(p) for p in persons]).reshape(len(persons), num_classes)
        closed = self.timeline.update(keyframe.timestamp, keyframe.source_centre,
                                      [p.track_id for p in persons], scores)
        self._write_segments(closed)

    def _write_segments(self, closed) -> None:
        """Segment records as segments close; a live source also rewrites its segments CSV then."""
        for segment in closed:
            self.writer.write_record("segment", segment.record())
        if closed and self.stream.source is not None and self.paths.segments_csv is not None:
            write_segments_csv(self.paths.segments_csv, self.video_id, self.timeline.segments)

    def _overlay(self, keyframe: _Keyframe, persons: list[PersonPrediction]) -> Overlay:
        """What the rendered frames show until the next keyframe: per person its top actions (>= the render
        threshold) and its current action segments."""
        names = list(self.predictor.label_map.values())
        threshold = self.options.render_threshold
        labels = []
        for person in persons:
            top = np.argsort(-person.action_scores, kind="stable")[:3]
            labels.append([f"{names[i]} {person.action_scores[i]:.2f}" for i in top
                           if person.action_scores[i] >= threshold])
        segments = [self.timeline.current_labels(p.track_id) for p in persons]
        return Overlay(keyframe.boxes_norm, keyframe.track_ids, labels, segments)

    def _finish(self, started: float) -> None:
        result, stream, times = self.result, self.stream, self.result.times
        result.frames = stream.report.frames
        times.decode = stream.decode_seconds
        result.warnings = stream.report.warnings(self.video)
        if stream.dropped_keyframes and self.options.timestamps is not None:
            dropped = ", ".join(f"{self.timestamp(t):g}" for t in stream.dropped_keyframes[:5])
            result.warnings.append(f"{self.video}: {len(stream.dropped_keyframes)} keyframe(s) after the end of "
                                   f"the video skipped ({dropped})")
        if self.renderer is not None:
            tick = time.perf_counter()
            self.renderer.finish()
            times.write += time.perf_counter() - tick
        self._write_segments(self.timeline.finish())
        if self.paths.segments_csv is not None:
            write_segments_csv(self.paths.segments_csv, self.video_id, self.timeline.segments)
        times.total = time.perf_counter() - started
        self.writer.write_end({
            "frames_decoded": result.frames,
            "frames_prepared": stream.prepared_frames,
            "frames_rendered": self.renderer.frames_written if self.renderer is not None else None,
            "warnings": result.warnings,
            "seconds": {name: round(value, 3) for name, value in asdict(times).items()},
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "segments": len(self.timeline.segments),
            **({"frames_tracked": self.frames_tracked} if self.options.track_every else {}),
            **self._end_extra(),
        })

    def _close(self) -> None:
        self.stream.close()
        self.writer.close()
        if self.renderer is not None:
            self.renderer.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    Linux: `VmHWM` of /proc/self/status. Not `getrusage` / `wait4`'s `ru_maxrss`: across `exec` Linux
    keeps the parent's high-water mark there, so a child of a large process reports the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def predict_video(video: Path, predictor: ActionPredictor, detector: PersonDetector, paths: OutputPaths,
                  options: PredictOptions) -> VideoResult:
    """Predict one video into `paths`.

    Raises what stopped it (`SfdetError` for a file that cannot be read, boxes that match none of its
    keyframes); a video that failed before its first keyframe leaves no output files behind.
    """
    return _VideoRun(Path(video), predictor, detector, paths, options).run()


# --------------------------------------------------------------------------
# Many videos
# --------------------------------------------------------------------------


def failure_line(video: Path, exc: BaseException, keyframes_written: int = 0, paths: OutputPaths | None = None) -> str:
    """A failed video's one line: the file, what went wrong and, midway, what was kept.

    A user error (`SfdetError`) is its message; anything else is its type and message (no traceback:
    set SFDET_DEBUG=1 for one).
    """
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if not isinstance(exc, SfdetError):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if str(video) not in message:
        message = f"{video}: {message}"
    if keyframes_written and paths is not None:
        message += (f"; its {keyframes_written} finished keyframe(s) are kept in {paths.csv}, {paths.tracks_csv.name} "
                    f"and {paths.jsonl.name} (unfinished: --resume redoes this video)")
    return message


def find_videos(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files and directories (their videos, sorted) -> (videos, one error line per bad input)."""
    videos, errors = [], []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                errors.append(f"{path}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this directory")
            videos.extend(found)
        elif path.is_file():
            videos.append(path)
        else:
            errors.append(f"{path}: no such file or directory")
    return videos, errors


def shard_for_rank(videos: list[Path], rank: int, world_size: int) -> list[Path]:
    """Disjoint shares: rank r takes videos r, r + world, r + 2 * world, ... of the sorted list."""
    return sorted(videos)[rank::world_size]


def predict_videos(
    inputs: Sequence[str | Path],
    predictor: ActionPredictor,
    detector: PersonDetector,
    options: PredictOptions,
    out_dir: str | Path | None = None,
    resume: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
) -> list[VideoResult]:
    """Predict every video; a failing video is reported (one line on stderr) and the rest go on."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    videos, errors = find_videos(inputs)
    results = [VideoResult(Path(str(e).split(":", 1)[0]), error=e) for e in errors] if rank == 0 else []
    for line in (errors if rank == 0 else []):
        print(f"sfdet predict: error: {line}", file=sys.stderr)
    stems: dict[str, Path] = {}
    mine = shard_for_rank(videos, rank, world_size)
    for video in tqdm(mine, unit="video", desc="videos", disable=not options.progress or len(mine) < 2):
        target = Path(out_dir) if out_dir is not None else video.parent
        if video.stem in stems and out_dir is not None:
            line = f"{video}: same name as {stems[video.stem]}; its outputs would overwrite those, rename one"
            print(f"sfdet predict: error: {line}", file=sys.stderr)
            results.append(VideoResult(video, error=line))
            continue
        stems[video.stem] = video
        run = None
        try:
            paths = OutputPaths.for_video(target, video.stem, options.render, track_frames=options.track_every > 0)
            if resume and paths.is_complete():
                results.append(VideoResult(video, skipped=True))
                continue
            if paths.csv.stem != video.stem:
                print(f"sfdet predict: warning: {video}: name too long for its output files' names; they are named "
                      f"{paths.csv.stem}.* (the CSVs' video id stays the full name)", file=sys.stderr)
            run = _VideoRun(video, predictor, detector, paths, options)
            result = run.run()
        except Exception as exc:  # one line per failed video, whatever went wrong; the others go on
            written = run.writer.keyframes_written if run is not None else 0
            line = failure_line(video, exc, written, paths=run.paths if run is not None else None)
            print(f"sfdet predict: error: {line}", file=sys.stderr)
            if os.environ.get("SFDET_DEBUG", "") not in ("", "0"):
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            results.append(VideoResult(video, keyframes=written, error=line))
            continue
        for warning in result.warnings:
            print(f"sfdet predict: warning: {warning}", file=sys.stderr)
        results.append(result)
    return results
