"""Action timelines: per-person action segments from per-keyframe scores of tracked people.

For every (track, action) the keyframe scores are smoothed causally (the mean of the track's last `window`
observed keyframes) and thresholded with hysteresis: a segment opens when the smoothed score reaches
`on_threshold` and stays open while it is >= `off_threshold`. So a single noisy keyframe neither starts nor
breaks a segment, and everything is decided online (the rendered video shows the segment as it is open).

- start: the keyframe where the segment opened, moved back over the directly preceding keyframes of that
  track (at most `window - 1`) whose raw score is >= `off_threshold` (undoes the smoothing lag);
- end: the last keyframe whose smoothed score was >= `off_threshold`;
- a track not seen on a keyframe keeps its segments open; missing more than `max_gap` keyframes in a row
  closes them at its last keyframe; the video's end closes everything;
- segments spanning fewer than `min_keyframes` keyframes are dropped;
- mean_score: the mean raw score of the track's keyframes from start to end.
Several actions of one person may overlap (AVA's actions are multi-label).

Outputs: `<stem>.segments.csv` (`SEGMENT_COLUMNS`, header row, sorted by track, start, action) and one
`segment` JSONL record per segment as it closes (`Segment.record()`).
"""

from __future__ import annotations

import csv
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SEGMENT_COLUMNS = ("video_id", "track_id", "action_id", "action", "start", "end", "start_frame", "end_frame",
                   "keyframes", "mean_score")


@dataclass(frozen=True)
class TimelineSettings:
    on_threshold: float = 0.5
    off_threshold: float = 0.3
    window: int = 3  # keyframes in the causal moving average (1 = no smoothing)
    min_keyframes: int = 1
    max_gap: int = 1  # keyframes a track may be missing without closing its segments

    def __post_init__(self):
        if not 0.0 <= self.off_threshold <= self.on_threshold <= 1.0:
            raise ValueError(f"need 0 <= off_threshold <= on_threshold <= 1, got off={self.off_threshold}, "
                             f"on={self.on_threshold}")
        if self.window < 1 or self.min_keyframes < 1 or self.max_gap < 0:
            raise ValueError("window and min_keyframes must be >= 1, max_gap >= 0")


@dataclass
class Segment:
    track_id: int
    action_id: int
    action: str
    start: float  # timestamp (seconds) of its first keyframe
    end: float  # timestamp of its last keyframe
    start_frame: int
    end_frame: int
    keyframes: int
    mean_score: float

    def row(self, video_id: str) -> list:
        return [video_id, self.track_id, self.action_id, self.action, self.start, self.end, self.start_frame,
                self.end_frame, self.keyframes, round(self.mean_score, 6)]

    def record(self) -> dict:
        return {"track_id": self.track_id, "action_id": self.action_id, "action": self.action,
                "start": self.start, "end": self.end, "start_frame": self.start_frame, "end_frame": self.end_frame,
                "keyframes": self.keyframes, "mean_score": round(self.mean_score, 6)}


@dataclass
class _Track:
    times: list = field(default_factory=list)  # (timestamp, frame_index) per observed keyframe
    scores: list = field(default_factory=list)  # (C,) raw scores per observed keyframe
    recent: deque = None  # the last `window` score vectors
    open_start: dict = field(default_factory=dict)  # action column -> index (into times) of its start
    last_on: dict = field(default_factory=dict)  # action column -> index of its last keyframe >= off
    missed: int = 0


class ActionTimeline:
    """Feed keyframes in order (`update`), read what is open now (`current`), close with `finish`."""

    def __init__(self, label_map: dict[int, str], settings: TimelineSettings | None = None):
        self.settings = settings or TimelineSettings()
        self.label_ids = [int(k) for k in label_map]
        self.label_names = list(label_map.values())
        self._tracks: dict[int, _Track] = {}
        self.segments: list[Segment] = []

    def update(self, timestamp: float, frame_index: int, track_ids: Sequence[int],
               scores: np.ndarray) -> list[Segment]:
        """One keyframe: track ids (N,) and their action scores (N, C). Returns the segments it closed."""
        s = self.settings
        scores = np.asarray(scores, dtype=np.float64).reshape(len(track_ids), len(self.label_ids))
        closed: list[Segment] = []
        seen = set()
        for track_id, row in zip(track_ids, scores):
            track_id = int(track_id)
            seen.add(track_id)
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = _Track(recent=deque(maxlen=s.window))
            track.missed = 0
            track.times.append((float(timestamp), int(frame_index)))
            track.scores.append(row)
            track.recent.append(row)
            smoothed = np.mean(np.stack(track.recent), axis=0)
            here = len(track.times) - 1
            for column in range(len(self.label_ids)):
                value = smoothed[column]
                if column in track.open_start:
                    if value >= s.off_threshold:
                        track.last_on[column] = here
                    else:
                        closed.extend(self._close(track_id, track, column))
                elif value >= s.on_threshold:
                    start = here
                    while start > 0 and here - (start - 1) < s.window and track.scores[start - 1][column] >= s.off_threshold:
                        start -= 1
                    track.open_start[column] = start
                    track.last_on[column] = here
        for track_id, track in list(self._tracks.items()):
            if track_id in seen:
                continue
            track.missed += 1
            if track.missed > s.max_gap:
                for column in list(track.open_start):
                    closed.extend(self._close(track_id, track, column))
                del self._tracks[track_id]
        return closed

    def _close(self, track_id: int, track: _Track, column: int) -> list[Segment]:
        start = track.open_start.pop(column)
        end = track.last_on.pop(column)
        count = end - start + 1
        if count < self.settings.min_keyframes:
            return []
        mean = float(np.mean([track.scores[i][column] for i in range(start, end + 1)]))
        segment = Segment(track_id, self.label_ids[column], self.label_names[column], track.times[start][0],
                          track.times[end][0], track.times[start][1], track.times[end][1], count, mean)
        self.segments.append(segment)
        return [segment]

    def current_labels(self, track_id: int) -> list[str]:
        """What the rendered video shows of a track's open segments: `name since 12s (0.81)` per segment."""
        return [f"{name} since {start:g}s ({mean:.2f})" for name, start, mean in self.current(track_id)]

    def current(self, track_id: int) -> list[tuple[str, float, float]]:
        """The open segments of a track: (action name, start timestamp, mean score so far), by start."""
        track = self._tracks.get(int(track_id))
        if track is None:
            return []
        out = []
        for column, start in track.open_start.items():
            end = track.last_on[column]
            mean = float(np.mean([track.scores[i][column] for i in range(start, end + 1)]))
            out.append((self.label_names[column], track.times[start][0], mean))
        return sorted(out, key=lambda item: (item[1], -item[2]))

    def finish(self) -> list[Segment]:
        """Close every open segment (the video ended). Returns the segments it closed."""
        closed = []
        for track_id, track in self._tracks.items():
            for column in list(track.open_start):
                closed.extend(self._close(track_id, track, column))
        self._tracks = {}
        return closed


def sorted_segments(segments: Iterable[Segment]) -> list[Segment]:
    return sorted(segments, key=lambda s: (s.track_id, s.start, s.action_id))


def write_segments_csv(path: str | Path, video_id: str, segments: Iterable[Segment]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # `<stem>.segments.tmp`: no longer than the final name (a long stem is cut to fit `.segments.csv`)
    tmp = path.with_suffix(".tmp") if path.suffix else path.with_name(f"{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(SEGMENT_COLUMNS)
        for segment in sorted_segments(segments):
            writer.writerow(segment.row(video_id))
    tmp.replace(path)
    return path


def segments_from_keyframes(label_map: dict[int, str], keyframes: Iterable[tuple[float, int, Sequence[int], np.ndarray]],
                            settings: TimelineSettings | None = None) -> list[Segment]:
    """All segments of a video from (timestamp, frame_index, track_ids, scores) keyframes, sorted."""
    timeline = ActionTimeline(label_map, settings)
    for timestamp, frame_index, track_ids, scores in keyframes:
        timeline.update(timestamp, frame_index, track_ids, scores)
    timeline.finish()
    return sorted_segments(timeline.segments)


def segments_from_jsonl(path: str | Path, label_map: dict[int, str] | None = None,
                        settings: TimelineSettings | None = None) -> list[Segment]:
    """Segments of a finished `sfdet predict` JSONL (its keyframe records), e.g. with other thresholds.

    settings None: those in the file's header (`timeline`), else the defaults."""
    import json

    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    header = next((r for r in records if r.get("type") == "video"), {})
    if label_map is None:
        label_map = {int(k): v for k, v in (header.get("label_map") or {}).items()}
    if settings is None and header.get("timeline"):  # the settings `sfdet predict` used
        settings = TimelineSettings(**header["timeline"])
    columns = {action_id: i for i, action_id in enumerate(label_map)}

    def keyframes():
        for record in records:
            if record.get("type") != "keyframe":
                continue
            ids, rows = [], []
            for person in record["persons"]:
                row = np.zeros(len(columns))
                for action in person["actions"]:
                    if action["id"] in columns:
                        row[columns[action["id"]]] = action["score"]
                ids.append(person["track_id"])
                rows.append(row)
            yield record["timestamp"], record["frame_index"], ids, np.array(rows).reshape(len(ids), len(columns))

    return segments_from_keyframes(label_map, keyframes(), settings)
