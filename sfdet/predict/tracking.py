"""Person identity: IoU matching across keyframes (`IouTracker`, the default), and a ByteTrack-class tracker
for boxes on many frames (`ByteTracker`, `predict --track-every N`).

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


# ----------------------------------------------------------------------------------------------------
# ByteTrack-class tracker for per-frame boxes (`predict --track-every N`)


class KalmanBoxFilter:
    """Constant-velocity Kalman filter on (cx, cy, aspect, height), ByteTrack/SORT's state and noise model."""

    _std_position = 1.0 / 20
    _std_velocity = 1.0 / 160

    def __init__(self):
        self._motion = np.eye(8)
        self._motion[:4, 4:] = np.eye(4)
        self._update = np.eye(4, 8)

    @staticmethod
    def to_xyah(box: np.ndarray) -> np.ndarray:
        w, h = box[2] - box[0], box[3] - box[1]
        return np.array([box[0] + w / 2, box[1] + h / 2, w / max(h, 1e-9), h], dtype=np.float64)

    @staticmethod
    def to_xyxy(state: np.ndarray) -> np.ndarray:
        cx, cy, a, h = state[:4]
        w = a * h
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def initiate(self, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self.to_xyah(box)
        mean = np.r_[z, np.zeros(4)]
        h = z[3]
        std = [2 * self._std_position * h, 2 * self._std_position * h, 1e-2, 2 * self._std_position * h,
               10 * self._std_velocity * h, 10 * self._std_velocity * h, 1e-5, 10 * self._std_velocity * h]
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray, steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(max(1, steps)):
            h = mean[3]
            std = [self._std_position * h, self._std_position * h, 1e-2, self._std_position * h,
                   self._std_velocity * h, self._std_velocity * h, 1e-5, self._std_velocity * h]
            mean = self._motion @ mean
            cov = self._motion @ cov @ self._motion.T + np.diag(np.square(std))
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        std = [self._std_position * h, self._std_position * h, 1e-1, self._std_position * h]
        projected_cov = self._update @ cov @ self._update.T + np.diag(np.square(std))
        gain = np.linalg.solve(projected_cov, (cov @ self._update.T).T).T
        innovation = self.to_xyah(box) - self._update @ mean
        return mean + gain @ innovation, cov - gain @ projected_cov @ gain.T


@dataclass
class _ByteTrack:
    track_id: int
    mean: np.ndarray
    cov: np.ndarray
    box: np.ndarray  # last matched (or predicted) xyxy box
    score: float
    last_frame: int
    hits: int = 1
    confirmed: bool = False


def _iou_assign(tracks_boxes: np.ndarray, boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    if len(tracks_boxes) == 0 or len(boxes) == 0:
        return []
    iou = box_iou(tracks_boxes, boxes)
    gated = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    return [(r, c) for r, c in zip(rows, cols) if gated[r, c] > 0]


class ByteTracker:
    """ByteTrack-style multi-object tracker (Zhang et al., ECCV 2022) for boxes on many frames.

    Per frame: every live track's box is predicted by its Kalman filter (constant velocity, one step per
    frame elapsed); boxes scoring >= `high_score` are matched to the confirmed and lost tracks first
    (Hungarian on IoU, gated at `match_iou`), then the remaining tracks take the low-score boxes
    (>= `low_score`, gated at `low_match_iou`), which keeps identities through occlusion where the detector's
    confidence drops; new (unconfirmed) tracks match the leftover high boxes (`new_match_iou`). Unmatched
    high boxes >= `new_track_score` start tracks; a track not matched for more than `max_lost_frames` frames
    is retired (ids are never reused). A track is confirmed on its second match (on the first in the first
    frame), as ByteTrack.

    `update(boxes, scores, frame_index)` -> (N,) ids, -1 for boxes that neither matched nor started a track
    (low-score boxes). `fresh_ids=True` gives those a new id each instead (what keyframe scoring needs: every
    box scored gets an id).
    """

    def __init__(self, high_score: float = 0.5, low_score: float = 0.1, new_track_score: float = 0.6,
                 match_iou: float = 0.1, low_match_iou: float = 0.3, new_match_iou: float = 0.1,
                 max_lost_frames: int = 30, fresh_ids: bool = False):
        if not 0.0 <= low_score <= high_score <= 1.0:
            raise ValueError(f"need 0 <= low_score <= high_score <= 1, got {low_score}, {high_score}")
        self.high_score, self.low_score, self.new_track_score = high_score, low_score, new_track_score
        self.match_iou, self.low_match_iou, self.new_match_iou = match_iou, low_match_iou, new_match_iou
        self.max_lost_frames = max_lost_frames
        self.fresh_ids = fresh_ids
        self.kalman = KalmanBoxFilter()
        self._tracks: list[_ByteTrack] = []
        self._next_id = 0
        self._frame = None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray | None = None, frame_index: int | None = None) -> np.ndarray:
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        frame = (0 if self._frame is None else self._frame + 1) if frame_index is None else int(frame_index)
        first_frame = self._frame is None
        steps = 1 if self._frame is None else max(1, frame - self._frame)
        self._frame = frame
        for track in self._tracks:
            track.mean, track.cov = self.kalman.predict(track.mean, track.cov, steps)
            track.box = self.kalman.to_xyxy(track.mean)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        pool = [t for t in self._tracks if t.confirmed]
        unconfirmed = [t for t in self._tracks if not t.confirmed]

        def match(tracks, candidates, min_iou):
            if not tracks or len(candidates) == 0:
                return tracks, candidates
            pairs = _iou_assign(np.stack([t.box for t in tracks]), boxes[candidates], min_iou)
            used_t, used_c = set(), set()
            for r, c in pairs:
                track, index = tracks[r], candidates[c]
                track.mean, track.cov = self.kalman.update(track.mean, track.cov, boxes[index])
                track.box, track.score, track.last_frame = boxes[index].copy(), float(scores[index]), frame
                track.hits += 1
                track.confirmed = True
                ids[index] = track.track_id
                used_t.add(r)
                used_c.add(c)
            return ([t for i, t in enumerate(tracks) if i not in used_t],
                    np.array([x for i, x in enumerate(candidates) if i not in used_c], dtype=np.int64))

        previous = frame - steps
        pool, high_left = match(pool, high, self.match_iou)  # confirmed and lost tracks
        match([t for t in pool if t.last_frame == previous], low, self.low_match_iou)  # tracked ones only
        _, high_left = match(unconfirmed, high_left, self.new_match_iou)
        for index in high_left:
            if scores[index] < self.new_track_score and not self.fresh_ids:
                continue
            mean, cov = self.kalman.initiate(boxes[index])
            track = _ByteTrack(self._new_id(), mean, cov, boxes[index].copy(), float(scores[index]), frame,
                               confirmed=first_frame)
            self._tracks.append(track)
            ids[index] = track.track_id
        if self.fresh_ids:
            for index in np.flatnonzero(ids < 0):
                ids[index] = self._new_id()
        self._tracks = [t for t in self._tracks
                        if (t.confirmed and frame - t.last_frame <= self.max_lost_frames)
                        or (not t.confirmed and t.last_frame == frame)]
        return ids
