"""Precomputed person boxes (`--boxes`): an AVA-layout proposals CSV or an MMAction2 proposal pickle."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from sfdet.boxes import norm_to_abs
from sfdet.errors import DataError, SfdetError
from sfdet.persons.base import DEFAULT_SCORE_THRESHOLD, PersonDetector


def timestamp_key(timestamp: float) -> int:
    """Keyframe times as integer milliseconds, so 3, 3.0 and 3.0000001 are one key."""
    return int(round(float(timestamp) * 1000))


def timestamp_range(timestamps) -> str:
    """`900-1798 s` (or `902 s` for one timestamp)."""
    low, high = float(min(timestamps)), float(max(timestamps))
    return f"{low:g} s" if low == high else f"{low:g}-{high:g} s"


class PrecomputedDetector(PersonDetector):
    """Boxes from an AVA-layout proposals CSV or an MMAction2 proposal pickle.

    Keyframes absent from the file have no persons. Normalised boxes are
    scaled by the frame size (in float32), as the Dataset does for its proposals.
    A file without boxes (or none scoring >= the threshold) is an error; `video_problem`
    says why a video would find none of its boxes (an id or timestamps the file does not have).
    """

    def __init__(self, path: str | Path, score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        from sfdet.data.ava import read_proposals

        self.path = Path(path)
        if not self.path.is_file():
            raise SfdetError(f"proposals file not found: {self.path}")
        every_row = read_proposals(self.path)
        if every_row.empty:
            raise DataError(f"{self.path}: no person boxes in this file (--boxes); it must list "
                            "video_id,timestamp,x1,y1,x2,y2,action_id,score rows (or be an MMAction2 proposal pickle)")
        table = every_row[every_row["score"] >= score_threshold]
        if table.empty:
            raise DataError(f"{self.path}: none of its {len(every_row)} boxes scores >= {score_threshold:g} (highest "
                            f"{every_row['score'].max():g}); lower --detector-threshold to use them")
        self.name = f"precomputed:{self.path.name}"
        self.score_threshold = score_threshold
        self._boxes: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for (video_id, timestamp), rows in table.groupby(["video_id", "timestamp"], sort=False):
            boxes_norm = rows[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float32)
            self._boxes[(str(video_id), timestamp_key(timestamp))] = (boxes_norm, rows["score"].to_numpy(np.float32))
        # Every (video id, timestamp) of the file, boxes below the threshold too: what `video_problem` reports.
        self._timestamps: dict[str, np.ndarray] = {
            str(video_id): np.unique(rows.to_numpy(np.float64))
            for video_id, rows in every_row.groupby("video_id", sort=False)["timestamp"]
        }

    def video_ids(self) -> set[str]:
        return set(self._timestamps)

    def timestamps(self, video_id: str) -> np.ndarray:
        """The file's distinct timestamps of `video_id` (sorted; empty when absent)."""
        return self._timestamps.get(video_id, np.zeros(0))

    def closest_ids(self, video_id: str, count: int = 3) -> list[str]:
        """The file's video ids most like `video_id`, closest first."""
        return difflib.get_close_matches(video_id, list(self._timestamps), n=count, cutoff=0.0)

    def missing_id_problem(self, video_id: str) -> str | None:
        """One line when the file has no row for `video_id`, naming the ids it does have."""
        if video_id in self._timestamps:
            return None
        ids = self.closest_ids(video_id)
        listed = ", ".join(repr(i) for i in ids) + (", ..." if len(self._timestamps) > len(ids) else "")
        every_timestamp = np.concatenate(list(self._timestamps.values()))
        return (f"video id {video_id!r} is not in {self.path}, which has {len(self._timestamps)} video id(s), "
                f"closest first: {listed} (timestamps {timestamp_range(every_timestamp)}); name the video after its "
                "id in the file, or use boxes made for this video")

    def has_boxes_for(self, video_id: str, timestamps) -> bool:
        """Does the file list `video_id` at any of `timestamps` (below the threshold too)?"""
        listed = {timestamp_key(t) for t in self.timestamps(video_id)}
        return any(timestamp_key(t) in listed for t in timestamps)

    def boxes_norm(self, video_id: str, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """(N,4) normalised boxes and (N,) scores of one keyframe (empty when absent)."""
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        return self._boxes.get((video_id, timestamp_key(timestamp)), empty)

    def _detect(self, frame_rgb, video_id, timestamp):
        boxes_norm, scores = self.boxes_norm(video_id, timestamp)
        height, width = frame_rgb.shape[:2]
        return norm_to_abs(boxes_norm, width, height, np.float32), scores

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "score_threshold": self.score_threshold}
