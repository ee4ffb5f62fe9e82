"""Prediction outputs written incrementally: each keyframe is on disk as soon as it is done.

Per video:
- `<stem>.csv`: AVA predictions, `video_id,timestamp,x1,y1,x2,y2,action_id,score`
  (normalised boxes, no header), exactly what `sfdet eval` and the official
  evaluator read;
- `<stem>.tracks.csv`: the same boxes in AVA's ground-truth layout
  `video_id,timestamp,x1,y1,x2,y2,action_id,person_id`, one row per person and
  action whose score is >= the label threshold, the person id being the track id;
- `<stem>.jsonl`: JSON Lines, valid after every line: a `video` header (fps,
  size, model, detector, label map), one `keyframe` record per keyframe
  (persons with box, track id, detector score, actions sorted by score), and
  a closing `end` record. A file without the `end` record is an unfinished
  run (`--resume` redoes it). `segment` records (`sfdet.predict.timelines`) come as segments close;
- `<stem>.segments.csv`: the per-person action segments (`timelines.SEGMENT_COLUMNS`, header row), written
  (atomically) before the `end` record;
- `<stem>.frames.csv` (only with `--track-every N`): the tracked person boxes of every detected frame,
  `FRAME_COLUMNS` with a header row, written frame by frame.

Every write is flushed at once, so Ctrl-C or a crash loses no finished keyframe.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sfdet.data.ava import csv_field, format_timestamp


@dataclass
class PersonPrediction:
    """One person on one keyframe."""

    box_norm: np.ndarray  # (4,) normalised xyxy
    detector_score: float
    track_id: int
    action_scores: np.ndarray  # (num_classes,) probabilities, in label-map order


@dataclass
class KeyframePrediction:
    """Everything predicted on one keyframe of one video."""

    video_id: str
    timestamp: float  # seconds, as written in the CSV
    frame_index: int  # index of the keyframe's centre frame in decode order
    persons: list[PersonPrediction] = field(default_factory=list)
    extra: dict | None = None  # more fields of its JSONL record (online mode: source time, latency)


OUTPUT_SUFFIXES = (".csv", ".tracks.csv", ".jsonl", ".pred.mp4", ".segments.csv", ".frames.csv")
FRAME_COLUMNS = ("video_id", "frame_index", "time", "track_id", "x1", "y1", "x2", "y2", "score")


def _name_max(directory: Path) -> int:
    """The file system's longest file name in bytes (255 on ext4, xfs, btrfs, tmpfs)."""
    for folder in (directory, *directory.parents):
        if folder.is_dir():
            try:
                return int(os.pathconf(folder, "PC_NAME_MAX"))
            except (OSError, ValueError, AttributeError):
                break
    return 255


def output_stem(out_dir: Path, stem: str) -> str:
    """`stem`, or a shortened one when `<stem>.segments.csv` (the longest suffix) would exceed the file
    system's name limit.

    A legal video name of ~250 bytes cannot take a longer suffix; its outputs are named by the first
    bytes of the stem plus `~` and 8 hex digits of the whole stem's SHA-1 (stable across runs, so
    `--resume` finds them). The CSV's video id stays the full stem.
    """
    longest = max(len(suffix.encode()) for suffix in OUTPUT_SUFFIXES)
    limit = _name_max(Path(out_dir)) - longest
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return stem
    digest = hashlib.sha1(encoded).hexdigest()[:8]
    head = encoded[: max(1, limit - 9)].decode("utf-8", "ignore")  # never half a UTF-8 character
    return f"{head}~{digest}"


@dataclass
class OutputPaths:
    """Where one video's outputs go."""

    csv: Path
    tracks_csv: Path
    jsonl: Path
    video: Path | None  # the rendered mp4, when rendering
    segments_csv: Path | None = None  # the action segments (written at the end)
    frames_csv: Path | None = None  # per-frame tracked boxes, with --track-every

    @classmethod
    def for_video(cls, out_dir: Path, stem: str, render: bool, track_frames: bool = False) -> "OutputPaths":
        # `.pred.mp4`, never `<stem>.mp4`: with outputs next to the input that would overwrite it.
        stem = output_stem(out_dir, stem)
        return cls(
            csv=out_dir / f"{stem}.csv",
            tracks_csv=out_dir / f"{stem}.tracks.csv",
            jsonl=out_dir / f"{stem}.jsonl",
            video=out_dir / f"{stem}.pred.mp4" if render else None,
            segments_csv=out_dir / f"{stem}.segments.csv",
            frames_csv=out_dir / f"{stem}.frames.csv" if track_frames else None,
        )

    def all(self) -> list[Path]:
        return [p for p in (self.csv, self.tracks_csv, self.jsonl, self.video, self.segments_csv, self.frames_csv)
                if p is not None]

    def is_complete(self) -> bool:
        """True when a previous run finished this video (its JSONL ends with the `end` record)."""
        if not all(p.is_file() for p in self.all()):
            return False
        last = read_last_line(self.jsonl)
        try:
            return json.loads(last).get("type") == "end"
        except (json.JSONDecodeError, AttributeError):
            return False


def read_last_line(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        end = f.tell()
        f.seek(max(0, end - 65536))
        lines = f.read().splitlines()
    return lines[-1].decode("utf-8", "replace") if lines else ""


def _num(value: float) -> str:
    """Shortest decimal that reads back as the same float32 (boxes and scores are float32 in memory)."""
    return str(np.float32(value))


class PredictionWriter:
    """Writes one video's CSV, tracks CSV and JSON Lines, one keyframe at a time."""

    def __init__(
        self,
        paths: OutputPaths,
        label_map: dict[int, str],
        min_score: float = 0.0,
        label_threshold: float = 0.5,
        echo=None,
    ):
        self.paths = paths
        self.echo = echo  # a text stream every JSONL record is also written (and flushed) to: `--stdout jsonl`
        self.label_ids = np.array(list(label_map), dtype=np.int64)
        self.label_names = list(label_map.values())
        self.min_score = min_score
        self.label_threshold = label_threshold
        paths.csv.parent.mkdir(parents=True, exist_ok=True)
        # A file name that is not valid UTF-8 (legal on Linux) keeps its bytes in the CSVs' video ids.
        opened = []
        files = [(paths.csv, {"newline": ""}), (paths.tracks_csv, {"newline": ""}), (paths.jsonl, {})]
        if paths.frames_csv is not None:
            files.append((paths.frames_csv, {"newline": ""}))
        try:
            for path, kwargs in files:
                opened.append((path, open(path, "w", encoding="utf-8", errors="surrogateescape", **kwargs)))
        except BaseException:  # e.g. a name the file system refuses: leave none of this video's files behind
            for path, f in opened:
                f.close()
                path.unlink(missing_ok=True)
            raise
        self._csv, self._tracks, self._jsonl = (f for _, f in opened[:3])
        self._frames = opened[3][1] if len(opened) > 3 else None
        if self._frames is not None:
            self._frames.write(",".join(FRAME_COLUMNS) + "\n")
            self._frames.flush()
        self.keyframes_written = 0

    def write_header(self, header: dict) -> None:
        self._write_json({"type": "video", **header})

    def write_keyframe(self, keyframe: KeyframePrediction) -> None:
        timestamp = format_timestamp(keyframe.timestamp)
        csv_lines, track_lines, persons = [], [], []
        for person in keyframe.persons:
            box = ",".join(_num(v) for v in person.box_norm)
            prefix = f"{csv_field(keyframe.video_id)},{timestamp},{box}"
            order = np.argsort(-person.action_scores, kind="stable")
            actions = []
            for index in order:
                score = float(person.action_scores[index])
                if score < self.min_score:
                    break
                action_id = int(self.label_ids[index])
                csv_lines.append(f"{prefix},{action_id},{_num(score)}\n")
                if score >= self.label_threshold:
                    track_lines.append(f"{prefix},{action_id},{person.track_id}\n")
                actions.append({"id": action_id, "name": self.label_names[index], "score": round(score, 6)})
            persons.append(
                {
                    "box_norm": [round(float(v), 6) for v in person.box_norm],
                    "track_id": int(person.track_id),
                    "detector_score": round(float(person.detector_score), 6),
                    "actions": actions,
                }
            )
        # One write per file per keyframe: an interrupt never leaves half a keyframe behind.
        self._csv.write("".join(csv_lines))
        self._csv.flush()
        self._tracks.write("".join(track_lines))
        self._tracks.flush()
        self._write_json(
            {
                "type": "keyframe",
                "timestamp": keyframe.timestamp,
                "frame_index": keyframe.frame_index,
                "persons": persons,
                **(keyframe.extra or {}),
            }
        )
        self.keyframes_written += 1

    def write_frame(self, video_id: str, frame_index: int, time_s: float, track_ids, boxes_norm,
                    scores) -> None:
        """The tracked boxes of one detected frame (`--track-every`): one `<stem>.frames.csv` row per box."""
        if self._frames is None:
            return
        prefix = f"{csv_field(video_id)},{int(frame_index)},{round(float(time_s), 6)}"
        self._frames.write("".join(
            f"{prefix},{int(track_id)},{','.join(_num(v) for v in box)},{_num(score)}\n"
            for track_id, box, score in zip(track_ids, boxes_norm, scores)))
        self._frames.flush()

    def write_record(self, kind: str, fields: dict) -> None:
        """Another JSONL record between the keyframes (online mode: a `gap` in a live source)."""
        self._write_json({"type": kind, **fields})

    def write_end(self, summary: dict) -> None:
        self._write_json({"type": "end", "keyframes": self.keyframes_written, **summary})

    def _write_json(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        self._jsonl.write(line)
        self._jsonl.flush()
        if self.echo is not None:
            self.echo.write(line)
            self.echo.flush()

    def close(self) -> None:
        for f in (self._csv, self._tracks, self._jsonl, self._frames):
            if f is not None:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a prediction JSON Lines file (for tests and downstream tools)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
