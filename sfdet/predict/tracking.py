"""Person identity across keyframes: IoU matching with the Hungarian algorithm.

Keyframes are ~1 s apart, so a motion model buys little; matching each
keyframe's boxes to the live tracks by IoU (optimal assignment, gated by a
minimum IoU) is what AVA-style person ids need. A track that goes unmatched
for more than `max_age` keyframes is retired; its id is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from sfdet.boxes import box_iou


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,) last matched box
    misses: int = 0  # keyframes since the last match


class IouTracker:
    """Assigns a track id to every box of consecutive keyframes.

    min_iou: a box and a track may be matched only if their IoU is >= this.
    max_age: a track survives this many keyframes without a match (0 = must
        match on the very next keyframe).
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 1):
        if not 0.0 <= min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {min_iou}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        self.min_iou = min_iou
        self.max_age = max_age
        self._tracks: list[_Track] = []
        self._next_id = 0

    def update(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """(N,4) boxes of the next keyframe -> (N,) int64 track ids."""
        boxes_xyxy = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        track_ids = np.full(len(boxes_xyxy), -1, dtype=np.int64)
        matched_tracks: set[int] = set()
        if self._tracks and len(boxes_xyxy):
            iou = box_iou(np.stack([t.box for t in self._tracks]), boxes_xyxy)
            # Gate before assigning, so a pair below min_iou never displaces a valid one.
            gated_iou = np.where(iou >= self.min_iou, iou, 0.0)
            rows, cols = linear_sum_assignment(gated_iou, maximize=True)
            for row, col in zip(rows, cols):
                if gated_iou[row, col] > 0:
                    track = self._tracks[row]
                    track.box, track.misses = boxes_xyxy[col], 0
                    track_ids[col] = track.track_id
                    matched_tracks.add(row)
        survivors = []
        for index, track in enumerate(self._tracks):
            if index not in matched_tracks:
                track.misses += 1
            if track.misses <= self.max_age:
                survivors.append(track)
        self._tracks = survivors
        for col in np.flatnonzero(track_ids < 0):
            track_ids[col] = self._next_id
            self._tracks.append(_Track(self._next_id, boxes_xyxy[col]))
            self._next_id += 1
        return track_ids
