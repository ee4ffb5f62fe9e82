"""`--detector` / `--boxes` -> a person detector: the one factory of `sfdet predict`, `proposals` and the demo.

`spec` is read the same way everywhere:
    None                    the default torchvision detector (`fasterrcnn_resnet50_fpn_v2`, COCO weights)
    "torchvision:NAME"      a torchvision detection model; `weights` = a state-dict file, "DEFAULT" or None
    "detectron2:CONFIG"     a detectron2 model-zoo config (name or file)
    an existing file        a `detector.pt` written by `sfdet train-detector` (checked by its content)
    a path-like string      (has a folder separator or a .pt/.pth/.pyth suffix) that does not exist: an error
    NAME                    a torchvision detection model name
`boxes_path` (precomputed proposals: AVA-layout CSV or MMAction2 pickle) takes precedence over `spec`.
`score_threshold` None = the backend's default: 0.8 for COCO detectors and precomputed boxes, the
threshold stored in a `detector.pt`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sfdet.errors import CheckpointError, ConfigError
from sfdet.persons.base import DEFAULT_SCORE_THRESHOLD, PersonDetector
from sfdet.persons.detectron2_backend import Detectron2Detector
from sfdet.persons.precomputed import PrecomputedDetector
from sfdet.persons.torchvision_backend import DEFAULT_TORCHVISION_DETECTOR, TorchvisionDetector
from sfdet.persons.trained import TrainedDetector

BACKENDS = ("torchvision", "detectron2")
# A `--detector` value ending so (or holding a folder separator) names a file, never a model.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pyth", ".pkl", ".ckpt")


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.lower().endswith(CHECKPOINT_SUFFIXES)


def build_person_detector(
    spec: str | Path | None = None,
    weights: str | None = "DEFAULT",
    score_threshold: float | None = None,
    device: str | torch.device = "cpu",
    boxes_path: str | Path | None = None,
) -> PersonDetector:
    """The detector `spec` names (see the module docstring), on `device`."""
    threshold = DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold
    if boxes_path is not None:
        return PrecomputedDetector(boxes_path, threshold)
    spec = DEFAULT_TORCHVISION_DETECTOR if spec is None else str(spec)
    backend, colon, name = spec.partition(":")
    if colon and backend == "torchvision":
        return TorchvisionDetector(name, weights=weights, score_threshold=threshold, device=device)
    if colon and backend == "detectron2":
        return Detectron2Detector(name, weights=weights, score_threshold=threshold, device=device)
    if colon and len(backend) > 1 and backend.isidentifier():
        raise ConfigError(f"unknown detector '{spec}'; use a torchvision model name, 'torchvision:NAME', "
                          "'detectron2:CONFIG' or a detector.pt written by `sfdet train-detector`")
    path = Path(spec).expanduser()
    if path.is_dir():
        raise CheckpointError(f"--detector {spec} is a directory; pass the detector.pt file inside it")
    if path.is_file():
        if weights not in (None, "DEFAULT"):
            raise ConfigError(f"--detector-weights does not apply to {spec}: a detector.pt holds its own weights")
        return TrainedDetector(path, score_threshold, device)
    if _looks_like_path(spec):
        raise CheckpointError(f"detector checkpoint not found: {spec}; train one with `sfdet train-detector`, "
                              "or name a torchvision detector (e.g. fasterrcnn_resnet50_fpn_v2)")
    return TorchvisionDetector(spec, weights=weights, score_threshold=threshold, device=device)
