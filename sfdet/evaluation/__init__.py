"""AVA frame-mAP (exactly the official evaluator, vectorised) and its reports."""

from sfdet.evaluation.frame_map import (
    CATEGORY_GROUPS,
    PROTOCOLS,
    FrameMapResult,
    frame_map,
    frame_map_from_arrays,
    metric_names,
)

__all__ = ["CATEGORY_GROUPS", "PROTOCOLS", "FrameMapResult", "frame_map", "frame_map_from_arrays", "metric_names"]
