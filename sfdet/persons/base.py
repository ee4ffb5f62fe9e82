"""The person-detector interface and the guard every backend's output goes through.

A detector maps one RGB frame to person boxes:

    detector(frame_rgb: (H, W, 3) uint8, video_id="", timestamp=0.0)
        -> boxes_xyxy_abs (N, 4) float32 in frame pixels, scores (N,) float32

Model-based detectors ignore `video_id`/`timestamp`; the precomputed one looks the boxes up by
them. Every backend's output goes through `check_boxes`, so a detector that returns NaNs, boxes
far outside the frame or inverted boxes stops the run with an error naming the detector instead
of silently producing garbage actions.
"""

from __future__ import annotations

import numpy as np

from sfdet.boxes import frame_scale
from sfdet.errors import SfdetError

# The COCO detectors' and precomputed proposals' default cut (AVA's configs use 0.8).
DEFAULT_SCORE_THRESHOLD = 0.8


def check_boxes(
    boxes_xyxy_abs, scores, frame_hw: tuple[int, int], detector_name: str, where: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a detector's output and clip tiny overshoots to the frame.

    Boxes must be finite, have x1 < x2 and y1 < y2, and lie inside the frame up
    to a tolerance of max(2 px, 1% of the side) (clipped); anything else is an
    error naming the detector. Returns float32 (N,4) boxes and (N,) scores.
    """
    boxes = np.asarray(boxes_xyxy_abs, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    at = f" at {where}" if where else ""
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise SfdetError(
            f"person detector '{detector_name}' returned boxes of shape {tuple(boxes.shape)}{at}; expected (N, 4)"
        )
    if len(scores) != len(boxes):
        raise SfdetError(f"person detector '{detector_name}' returned {len(boxes)} boxes but {len(scores)} scores{at}")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise SfdetError(f"person detector '{detector_name}' returned a non-finite box or score{at}")
    height, width = frame_hw
    size = frame_scale(width, height, np.float32)
    tolerance = np.maximum(2.0, 0.01 * size)
    outside = (boxes < -tolerance) | (boxes > size + tolerance)
    if outside.any():
        row = int(np.flatnonzero(outside.any(axis=1))[0])
        raise SfdetError(
            f"person detector '{detector_name}' returned box {boxes[row].tolist()} outside the "
            f"{width}x{height} frame{at}; boxes must be absolute xyxy pixels"
        )
    boxes = np.clip(boxes, 0.0, size)
    inverted = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if inverted.any():
        row = int(np.flatnonzero(inverted)[0])
        raise SfdetError(
            f"person detector '{detector_name}' returned box {boxes[row].tolist()} with x1 >= x2 or y1 >= y2{at}; "
            "boxes must be xyxy"
        )
    return boxes, scores


class PersonDetector:
    """Base class: subclasses implement `_detect`; `__call__` validates its output.

    `name` identifies the detector in errors and in the prediction JSON header;
    `score_threshold` is the cut its boxes passed (what recall is measured at).
    """

    name: str = "detector"
    score_threshold: float = 0.0

    def _detect(self, frame_rgb: np.ndarray, video_id: str, timestamp: float):
        raise NotImplementedError

    def __call__(self, frame_rgb: np.ndarray, video_id: str = "", timestamp: float = 0.0):
        boxes, scores = self._detect(frame_rgb, video_id, timestamp)
        where = f"{video_id} t={timestamp:g}s" if video_id else ""
        return check_boxes(boxes, scores, frame_rgb.shape[:2], self.name, where)

    def describe(self) -> dict:
        """What goes into the prediction JSON header."""
        return {"name": self.name}
