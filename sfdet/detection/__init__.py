"""Person detection for AVA-format datasets: fine-tune a detector (`sfdet train-detector`), make proposals (`sfdet proposals`).

`load_detector(path)` turns a `detector.pt` into a detector with the `sfdet.predict` interface:
detector(frame_rgb (H, W, 3) uint8) -> boxes_xyxy_abs (N, 4), scores (N,).
"""

from sfdet.detection.models import TrainedDetector, load_detector

__all__ = ["TrainedDetector", "load_detector"]
