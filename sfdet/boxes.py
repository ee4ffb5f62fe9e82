"""Box conventions in one place.

`boxes_norm`: xyxy in [0, 1] of the frame (AVA CSVs). `boxes_xyxy_abs`: xyxy in pixels of a
frame of `width` x `height`. Conversions keep the caller's float type: pass `dtype` to pin it
(results are bit-identical to writing the `[w, h, w, h]` product by hand in that dtype).
"""

from __future__ import annotations

import numpy as np


def frame_scale(width: float, height: float, dtype=np.float32) -> np.ndarray:
    """`[width, height, width, height]`: multiplies boxes_norm into boxes_xyxy_abs."""
    return np.array([width, height, width, height], dtype=dtype)


def norm_to_abs(boxes_norm, width: float, height: float, dtype=np.float32) -> np.ndarray:
    """(N, 4) boxes_norm -> (N, 4) boxes_xyxy_abs (pixels)."""
    return np.asarray(boxes_norm, dtype=dtype) * frame_scale(width, height, dtype)


def abs_to_norm(boxes_xyxy_abs, width: float, height: float, dtype=np.float32) -> np.ndarray:
    """(N, 4) boxes_xyxy_abs -> (N, 4) boxes_norm."""
    return np.asarray(boxes_xyxy_abs, dtype=dtype) / frame_scale(width, height, dtype)


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes (both in one convention) -> (N, M) IoU in float64, no +1 in the areas.

    Pairs whose union is empty have IoU 0. (The AVA evaluator keeps its own row-aligned IoU in
    `sfdet.evaluation.frame_map`, which reproduces the official code's exact operations.)
    """
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
