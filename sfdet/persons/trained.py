"""sfdet's self-describing detector checkpoint (`detector.pt`, written by `sfdet train-detector`) and its detector.

Checkpoint, a plain dict readable with `torch.load(weights_only=True)`:
    format          "sfdet-detector"
    arch            "tiny_fasterrcnn" or a torchvision detection model name (see `architectures.py`)
    arch_params     keyword arguments that rebuild the architecture (e.g. num_classes, widths)
    input_size      [min_size, max_size]: the short side frames are resized to, and the long-side cap
    score_threshold boxes scoring below this are not persons (the default cut of its users)
    person_label    the label of the person class in the model's output
    model_state     state dict
    info            how it was trained and measured (dataset, epochs, val person AP)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sfdet.errors import CheckpointError
from sfdet.fileio import atomic_save, load_torch_file
from sfdet.persons.architectures import PERSON_LABEL, build_detector_model
from sfdet.persons.base import PersonDetector
from sfdet.persons.torchvision_backend import detect_persons

CHECKPOINT_FORMAT = "sfdet-detector"
REQUIRED_KEYS = ("arch", "arch_params", "input_size", "score_threshold", "model_state")


def save_detector(path: str | Path, model: nn.Module, arch: str, arch_params: dict, input_size: tuple[int, int],
                  score_threshold: float, info: dict | None = None) -> Path:
    """Write the checkpoint atomically (never a half-written detector.pt); returns `path`."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_params": dict(arch_params),
        "input_size": [int(v) for v in input_size],
        "score_threshold": float(score_threshold),
        "person_label": PERSON_LABEL,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "info": dict(info or {}),
    }
    return atomic_save(checkpoint, path)


def read_detector_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict of an sfdet detector file, validated (one-line `CheckpointError` otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"detector checkpoint not found: {path}; train one with `sfdet train-detector`")
    checkpoint = load_torch_file(path, what="detector checkpoint", hint="re-run `sfdet train-detector`")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an sfdet detector checkpoint (written by `sfdet train-detector`); "
                              "for torchvision COCO weights use --detector NAME --detector-weights FILE")
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: detector checkpoint lacks {', '.join(missing)}; re-run `sfdet train-detector`")
    return checkpoint


def load_detector_model(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode on CPU, checkpoint dict without the state) of a detector checkpoint."""
    checkpoint = read_detector_checkpoint(path)
    model = build_detector_model(checkpoint["arch"], checkpoint["arch_params"], checkpoint["input_size"])
    try:
        model.load_state_dict(checkpoint.pop("model_state"))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: state does not fit architecture '{checkpoint['arch']}' ({first_line})") from None
    return model.eval(), checkpoint


class TrainedDetector(PersonDetector):
    """A `detector.pt` of `sfdet train-detector` behind the person-detector interface:

    detector(frame_rgb (H, W, 3) uint8) -> boxes_xyxy_abs (N, 4) float32, scores (N,) float32 (score >= threshold).
    `score_threshold` None = the one stored in the checkpoint.
    """

    def __init__(self, path: str | Path, score_threshold: float | None = None, device: str | torch.device = "cpu"):
        model, checkpoint = load_detector_model(path)
        self.path = Path(path)
        self.name = f"sfdet:{self.path.name}"
        self.arch = checkpoint["arch"]
        self.person_label = int(checkpoint.get("person_label", PERSON_LABEL))
        self.score_threshold = float(checkpoint["score_threshold"] if score_threshold is None else score_threshold)
        self.info = checkpoint.get("info", {})
        self.device = torch.device(device)
        self.model = model.to(self.device)
        # The model's own post-processing must not cut below the threshold asked for.
        if hasattr(self.model, "roi_heads"):
            self.model.roi_heads.score_thresh = min(self.model.roi_heads.score_thresh, self.score_threshold)

    def _detect(self, frame_rgb, video_id, timestamp):
        return detect_persons(self.model, frame_rgb, self.device, self.person_label, self.score_threshold)

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "arch": self.arch, "score_threshold": self.score_threshold}
