"""Any torchvision detection model as a person detector, and where its weights come from.

Weights: a local state-dict file, or torchvision's COCO weights ("DEFAULT") taken from the torch
hub cache (`<torch hub dir>/checkpoints/<file>`), downloaded there through the model registry's
one download path when missing (offline: an error naming the URL and where to put the file).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sfdet.errors import CheckpointError, ConfigError
from sfdet.fileio import load_torch_file
from sfdet.persons.base import DEFAULT_SCORE_THRESHOLD, PersonDetector

DEFAULT_TORCHVISION_DETECTOR = "fasterrcnn_resnet50_fpn_v2"


def torchvision_detection_models() -> list[str]:
    """The names torchvision's `get_model` knows in `torchvision.models.detection`."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models.detection)


def _torchvision_default_weights(model_name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(model_name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def load_torchvision_detector_state(model_name: str, weights: str | None):
    """State dict for a torchvision detector: a local file, or the COCO weights from the cache.

    `weights` is a file path, "DEFAULT" (torchvision's COCO weights: taken from
    the torch hub cache, downloaded when missing), or None (keep random init).
    Offline, the error names the URL and the exact place to put the file.
    """
    if weights is None:
        return None
    if weights != "DEFAULT":
        state = load_torch_file(weights, what="detector weights file")
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # torchvision reference-scripts checkpoint
        return state
    enum = _torchvision_default_weights(model_name)
    if enum is None:
        raise ConfigError(f"torchvision detector '{model_name}' has no published weights; pass --detector-weights FILE")
    return load_torch_file(torchvision_weights_file(enum.url), what="detector weights file",
                           hint="delete it to download it again")


def torchvision_weights_file(url: str, opener: Callable = urllib.request.urlopen, progress: bool = True) -> Path:
    """`<torch hub dir>/checkpoints/<file>` (torchvision's own cache), downloaded first when missing.

    The download is the model registry's: through a `.part` file (an interrupted download
    leaves nothing behind), with a progress bar, and offline an error naming the URL and the
    path to put the file at.
    """
    from sfdet.models.registry import download

    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not path.is_file():
        download(url, path, opener, progress)
    return path


@torch.inference_mode()
def detect_persons(model: torch.nn.Module, frame_rgb: np.ndarray, device: torch.device, person_label: int,
                   score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Run a torchvision-style detector (`model([(3, H, W) float in [0, 1]])` -> [{"boxes", "scores", "labels"}])
    on one (H, W, 3) uint8 RGB frame: (N, 4) boxes_xyxy_abs and (N,) scores of `person_label` >= `score_threshold`."""
    image = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(device).permute(2, 0, 1).float() / 255.0
    (output,) = model([image])
    keep = (output["labels"] == person_label) & (output["scores"] >= score_threshold)
    return output["boxes"][keep].float().cpu().numpy(), output["scores"][keep].float().cpu().numpy()


class TorchvisionDetector(PersonDetector):
    """Any torchvision detection model (`torchvision.models.list_models(module=torchvision.models.detection)`).

    The model gets the full-resolution frame and resizes it itself (its own
    `min_size`/`max_size` transform). Boxes of the COCO `person` class with a
    score >= `score_threshold` are kept.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_TORCHVISION_DETECTOR,
        weights: str | None = "DEFAULT",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        device: str | torch.device = "cpu",
        person_label: int | None = None,
        **model_kwargs,
    ):
        import torchvision

        detection_models = torchvision_detection_models()
        if model_name not in detection_models:
            raise ConfigError(
                f"unknown torchvision detector '{model_name}'; choose one of {', '.join(sorted(detection_models))}, "
                "or pass a detector.pt written by `sfdet train-detector`"
            )
        model = torchvision.models.get_model(model_name, weights=None, weights_backbone=None, **model_kwargs)
        state = load_torchvision_detector_state(model_name, weights)
        if state is not None:
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first_line = str(exc).strip().splitlines()[0]
                raise CheckpointError(
                    f"detector weights '{weights}' do not fit torchvision '{model_name}' ({first_line}); "
                    "pass weights of that architecture or choose --detector accordingly"
                ) from None
        if person_label is None:
            enum = _torchvision_default_weights(model_name)
            categories = enum.meta.get("categories", []) if enum is not None else []
            person_label = categories.index("person") if "person" in categories else 1
        self.name = f"torchvision:{model_name}"
        self.weights = weights
        self.model_name = model_name
        self.person_label = person_label
        self.score_threshold = score_threshold
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    def _detect(self, frame_rgb, video_id, timestamp):
        return detect_persons(self.model, frame_rgb, self.device, self.person_label, self.score_threshold)

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "score_threshold": self.score_threshold}
