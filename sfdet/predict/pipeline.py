"""Video -> person boxes -> tracks -> actions -> outputs, streaming, one keyframe batch at a time.

Per video (`predict_video`):
1. a background thread decodes the video once and prepares each frame for
   the action model (`stream.FrameStream`); the last clip-window of prepared
   frames lives in a ring buffer (`stream.FrameRing`);
2. at each keyframe's centre frame the person detector reads the full-resolution
   frame, and the tracker gives the boxes their ids;
3. once a keyframe's last window frame has arrived (or the video ended:
   edge frames repeat, as in training) its clip joins the batch; a full
   batch is scored by the action model;
4. each scored keyframe is written at once (CSV, tracks CSV, JSON Lines) and,
   with rendering, the frames up to it are drawn and encoded.
Memory is bounded by the window, the decode queue and one batch: it does not
grow with the video's length.

Many videos (`predict_videos`): each failure is one line and the other videos
go on; `--resume` skips videos whose outputs are complete; under torchrun the
ranks take disjoint shares of the (sorted) videos.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sfdet.data.config import DataConfig
from sfdet.errors import SfdetError
from sfdet.predict.actions import ActionPredictor
from sfdet.predict.detectors import PersonDetector
from sfdet.predict.render import Overlay, VideoRenderer
from sfdet.predict.stream import FrameRing, FrameStream, every, open_video
from sfdet.predict.tracking import IouTracker
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
    max_queued_frames: int = 8
    progress: bool = True

    def __post_init__(self):
        if not self.keyframe_rate > 0:
            raise SfdetError(f"--keyframe-rate must be > 0, got {self.keyframe_rate}")
        if self.batch_size < 1:
            raise SfdetError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass
class StageTimes:
    """Seconds spent per stage (decode runs in its own thread, in parallel with the rest)."""

    decode: float = 0.0
    detect: float = 0.0
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

    timestamp: float
    centre: int
    boxes_xyxy_abs: np.ndarray  # (N, 4) in full-resolution pixels
    detector_scores: np.ndarray  # (N,)
    track_ids: np.ndarray  # (N,)
    model_boxes: torch.Tensor  # (N, 4) in the model's input pixels
    clip: torch.Tensor | None = None  # (3, T, H', W') once its window is complete


def _keyframe_times(options: PredictOptions, time_offset: float) -> tuple[list[float] | Iterable[float], dict]:
    """Video times of the keyframes, and video time -> the timestamp written in the outputs."""
    if options.timestamps is not None:
        timestamps = sorted(set(float(t) for t in options.timestamps))
        if timestamps and timestamps[0] - time_offset < 0:
            raise SfdetError(
                f"--timestamps: {timestamps[0]:g} is before the video's start (time offset {time_offset:g})"
            )
        return [t - time_offset for t in timestamps], {t - time_offset: t for t in timestamps}
    return every(1.0 / options.keyframe_rate), {}


def predict_video(
    video: Path,
    predictor: ActionPredictor,
    detector: PersonDetector,
    paths: OutputPaths,
    options: PredictOptions,
) -> VideoResult:
    """Predict one video into `paths`; raises SfdetError for a file that cannot be read at all."""
    started = time.perf_counter()
    result = VideoResult(video)
    video_id = video.stem
    info = open_video(video)  # missing, not a video, audio-only: DataError before any output exists
    time_offset = predictor.cfg.time_offset if options.time_offset is None else options.time_offset
    video_times, timestamp_of = _keyframe_times(options, time_offset)

    def timestamp(t: float) -> float:
        return timestamp_of.get(t, round(t + time_offset, 6))

    stream = FrameStream(video, video_times, predictor.prepare_frame, options.max_queued_frames)
    ring = FrameRing(predictor.window_span)
    tracker = IouTracker(options.track_min_iou, options.track_max_age)
    offsets, last_offset = predictor.offsets, max(predictor.offsets)
    times = result.times
    writer = PredictionWriter(paths, predictor.label_map, options.min_score, options.render_threshold)
    renderer = VideoRenderer(video, paths.video, info.fps) if paths.video is not None else None
    label_names = list(predictor.label_map.values())
    try:
        writer.write_header(
            {
                "video": str(video),
                "video_id": video_id,
                "fps": info.fps,
                "width": info.width,
                "height": info.height,
                "num_frames_header": info.num_frames,
                "time_offset": time_offset,
                "model": predictor.describe(),
                "detector": detector.describe(),
                "tracker": {"min_iou": options.track_min_iou, "max_age": options.track_max_age},
                "label_map": {str(k): v for k, v in predictor.label_map.items()},
            }
        )
        pending: deque[_Keyframe] = deque()  # detected, window not complete yet
        batch: list[_Keyframe] = []

        def flush() -> None:
            if not batch:
                return
            tick = time.perf_counter()
            with_boxes = [k for k in batch if len(k.model_boxes)]
            scores = predictor.score([k.clip for k in with_boxes], [k.model_boxes for k in with_boxes]) if with_boxes else []
            scores_of = {id(k): s for k, s in zip(with_boxes, scores)}
            times.action += time.perf_counter() - tick
            tick = time.perf_counter()
            for keyframe in batch:
                _write_keyframe(keyframe, scores_of.get(id(keyframe)), video_id, timestamp(keyframe.timestamp),
                                info, writer, renderer, label_names, options.render_threshold)
                result.keyframes += 1
            batch.clear()
            times.write += time.perf_counter() - tick

        def enqueue(keyframe: _Keyframe, num_frames: int) -> None:
            if len(keyframe.model_boxes):  # a keyframe without persons needs no clip
                keyframe.clip = predictor.clip(ring.window(keyframe.centre, offsets, num_frames))
            batch.append(keyframe)
            if len(batch) >= options.batch_size:
                flush()

        total = info.num_frames or None
        for item in tqdm(stream, total=total, unit="frame", desc=video.name, disable=not options.progress, leave=False):
            ring.append(item.index, item.prepared)
            for t in item.keyframes:
                tick = time.perf_counter()
                boxes, scores = detector(item.rgb, video_id, timestamp(t))
                track_ids = tracker.update(boxes)
                model_boxes = predictor.model_boxes(item.rgb, boxes)
                pending.append(_Keyframe(t, item.index, boxes, scores, track_ids, model_boxes))
                times.detect += time.perf_counter() - tick
            while pending and pending[0].centre + last_offset <= item.index:
                enqueue(pending.popleft(), num_frames=item.index + 1)
        while pending:  # the video ended: the windows repeat its last frame
            enqueue(pending.popleft(), num_frames=ring.last_index + 1)
        flush()
        result.frames = stream.report.frames
        times.decode = stream.decode_seconds
        result.warnings = stream.report.warnings(video)
        if stream.dropped_keyframes and options.timestamps is not None:
            dropped = ", ".join(f"{timestamp(t):g}" for t in stream.dropped_keyframes[:5])
            result.warnings.append(f"{video}: {len(stream.dropped_keyframes)} keyframe(s) after the end of the video skipped ({dropped})")
        if renderer is not None:
            tick = time.perf_counter()
            renderer.finish()
            times.write += time.perf_counter() - tick
        times.total = time.perf_counter() - started
        writer.write_end(
            {
                "frames_decoded": result.frames,
                "frames_rendered": renderer.frames_written if renderer is not None else None,
                "warnings": result.warnings,
                "seconds": {name: round(value, 3) for name, value in asdict(times).items()},
            }
        )
    except SfdetError:
        if writer.keyframes_written == 0:  # nothing predicted: leave no half-empty outputs behind
            writer.close()
            for path in paths.all():
                path.unlink(missing_ok=True)
        raise
    finally:
        stream.close()
        writer.close()
        if renderer is not None:
            renderer.close()
    return result


def _write_keyframe(keyframe, scores, video_id, timestamp, info, writer, renderer, label_names, render_threshold):
    scale = np.array([info.width, info.height, info.width, info.height], dtype=np.float32)
    boxes_norm = np.asarray(keyframe.boxes_xyxy_abs, dtype=np.float32) / scale
    persons = [
        PersonPrediction(boxes_norm[i], float(keyframe.detector_scores[i]), int(keyframe.track_ids[i]), scores[i])
        for i in range(len(boxes_norm))
    ]
    writer.write_keyframe(KeyframePrediction(video_id, timestamp, keyframe.centre, persons))
    if renderer is not None:
        labels = []
        for person in persons:
            order = np.argsort(-person.action_scores, kind="stable")[:3]
            labels.append([f"{label_names[i]} {person.action_scores[i]:.2f}" for i in order
                           if person.action_scores[i] >= render_threshold])
        renderer.show(keyframe.centre, Overlay(boxes_norm, keyframe.track_ids, labels))


# --------------------------------------------------------------------------
# Many videos
# --------------------------------------------------------------------------


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
        paths = OutputPaths.for_video(target, video.stem, options.render)
        if video.stem in stems and out_dir is not None:
            line = f"{video}: same name as {stems[video.stem]}; its outputs would overwrite those, rename one"
            print(f"sfdet predict: error: {line}", file=sys.stderr)
            results.append(VideoResult(video, error=line))
            continue
        stems[video.stem] = video
        if resume and paths.is_complete():
            results.append(VideoResult(video, skipped=True))
            continue
        try:
            result = predict_video(video, predictor, detector, paths, options)
        except SfdetError as exc:
            print(f"sfdet predict: error: {exc}", file=sys.stderr)
            results.append(VideoResult(video, error=str(exc)))
            continue
        for warning in result.warnings:
            print(f"sfdet predict: warning: {warning}", file=sys.stderr)
        results.append(result)
    return results
