"""Person detectors behind one small interface.

A detector maps one RGB frame to person boxes:

    detector(frame_rgb: (H, W, 3) uint8, video_id, timestamp)
        -> boxes_xyxy_abs (N, 4) float32 in frame pixels, scores (N,) float32

Model-based detectors ignore `video_id`/`timestamp`; the precomputed one
looks the boxes up by them. Every backend's output goes through
`check_boxes`, so a detector that returns NaNs, boxes far outside the frame or
inverted boxes stops the run with an error naming the detector instead of
silently producing garbage actions.

Backends: any torchvision detection model by name (`TorchvisionDetector`),
detectron2 when it is installed (`Detectron2Detector`), and precomputed
AVA-layout CSVs or MMAction2 proposal pickles (`PrecomputedDetector`).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sfdet.errors import CheckpointError, ConfigError, SfdetError

DEFAULT_TORCHVISION_DETECTOR = "fasterrcnn_resnet50_fpn_v2"
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
    size = np.array([width, height, width, height], dtype=np.float32)
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
    """Base class: subclasses implement `_detect`; `__call__` validates its output."""

    name: str = "detector"

    def _detect(self, frame_rgb: np.ndarray, video_id: str, timestamp: float):
        raise NotImplementedError

    def __call__(self, frame_rgb: np.ndarray, video_id: str = "", timestamp: float = 0.0):
        boxes, scores = self._detect(frame_rgb, video_id, timestamp)
        where = f"{video_id} t={timestamp:g}s" if video_id else ""
        return check_boxes(boxes, scores, frame_rgb.shape[:2], self.name, where)

    def describe(self) -> dict:
        """What goes into the prediction JSON header."""
        return {"name": self.name}


# --------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------


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
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(f"detector weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated file, not a torch file, ...
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{path}: not a readable torch state dict ({reason})") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # torchvision reference-scripts checkpoint
        return state
    enum = _torchvision_default_weights(model_name)
    if enum is None:
        raise ConfigError(f"torchvision detector '{model_name}' has no published weights; pass --detector-weights FILE")
    return torch.load(torchvision_weights_file(enum.url), map_location="cpu", weights_only=True)


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

        detection_models = torchvision.models.list_models(module=torchvision.models.detection)
        if model_name not in detection_models:
            raise ConfigError(
                f"unknown torchvision detector '{model_name}'; choose one of {', '.join(sorted(detection_models))}"
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

    @torch.inference_mode()
    def _detect(self, frame_rgb, video_id, timestamp):
        image = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(self.device).permute(2, 0, 1).float() / 255.0
        (output,) = self.model([image])
        keep = (output["labels"] == self.person_label) & (output["scores"] >= self.score_threshold)
        return output["boxes"][keep].float().cpu().numpy(), output["scores"][keep].float().cpu().numpy()

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "score_threshold": self.score_threshold}


# --------------------------------------------------------------------------
# detectron2 (optional)
# --------------------------------------------------------------------------


class Detectron2Detector(PersonDetector):
    """A detectron2 model-zoo detector (config name + weights), when detectron2 is installed.

    `config_name` is a model-zoo config such as
    "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml" or a path to a config file.
    """

    def __init__(
        self,
        config_name: str,
        weights: str | None = "DEFAULT",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        device: str | torch.device = "cpu",
        person_label: int = 0,
    ):
        try:
            from detectron2 import model_zoo
            from detectron2.config import get_cfg
            from detectron2.engine import DefaultPredictor
        except ImportError:
            raise ConfigError(
                "the detectron2 detector needs detectron2; install it "
                "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html) or use a torchvision detector"
            ) from None
        cfg = get_cfg()
        config_file = config_name if Path(config_name).is_file() else model_zoo.get_config_file(config_name)
        cfg.merge_from_file(config_file)
        if weights == "DEFAULT":  # the model zoo's COCO weights
            cfg.MODEL.WEIGHTS = model_zoo.get_checkpoint_url(config_name)
        else:  # a local file, or None: random init
            cfg.MODEL.WEIGHTS = weights or ""
        cfg.MODEL.DEVICE = str(torch.device(device))
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        self.name = f"detectron2:{config_name}"
        self.weights = cfg.MODEL.WEIGHTS
        self.score_threshold = score_threshold
        self.person_label = person_label
        self.input_format = cfg.INPUT.FORMAT
        self.predictor = DefaultPredictor(cfg)

    def _detect(self, frame_rgb, video_id, timestamp):
        image = frame_rgb[:, :, ::-1] if self.input_format == "BGR" else frame_rgb
        instances = self.predictor(np.ascontiguousarray(image))["instances"].to("cpu")
        keep = (instances.pred_classes == self.person_label) & (instances.scores >= self.score_threshold)
        return instances.pred_boxes.tensor[keep].numpy(), instances.scores[keep].numpy()

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "score_threshold": self.score_threshold}


# --------------------------------------------------------------------------
# precomputed boxes
# --------------------------------------------------------------------------


def timestamp_key(timestamp: float) -> int:
    """Keyframe times as integer milliseconds, so 3, 3.0 and 3.0000001 are one key."""
    return int(round(float(timestamp) * 1000))


class PrecomputedDetector(PersonDetector):
    """Boxes from an AVA-layout proposals CSV or an MMAction2 proposal pickle.

    Keyframes absent from the file have no persons. Normalised boxes are
    scaled by the frame size, as the Dataset does for its proposals.
    """

    def __init__(self, path: str | Path, score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        from sfdet.data.ava import read_proposals

        self.path = Path(path)
        if not self.path.is_file():
            raise SfdetError(f"proposals file not found: {self.path}")
        table = read_proposals(self.path, min_score=score_threshold)
        self.name = f"precomputed:{self.path.name}"
        self.score_threshold = score_threshold
        self._boxes: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for (video_id, timestamp), rows in table.groupby(["video_id", "timestamp"], sort=False):
            boxes_norm = rows[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float32)
            self._boxes[(str(video_id), timestamp_key(timestamp))] = (boxes_norm, rows["score"].to_numpy(np.float32))

    def video_ids(self) -> set[str]:
        return {video_id for video_id, _ in self._boxes}

    def boxes_norm(self, video_id: str, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """(N,4) normalised boxes and (N,) scores of one keyframe (empty when absent)."""
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        return self._boxes.get((video_id, timestamp_key(timestamp)), empty)

    def _detect(self, frame_rgb, video_id, timestamp):
        boxes_norm, scores = self.boxes_norm(video_id, timestamp)
        height, width = frame_rgb.shape[:2]
        return boxes_norm * np.array([width, height, width, height], np.float32), scores

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "score_threshold": self.score_threshold}


def build_detector(
    spec: str | None,
    weights: str | None = "DEFAULT",
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    device: str | torch.device = "cpu",
    boxes_path: str | None = None,
) -> PersonDetector:
    """`--detector` / `--boxes` -> a detector.

    spec: None or a torchvision model name (default `fasterrcnn_resnet50_fpn_v2`),
    `torchvision:NAME`, or `detectron2:CONFIG`. `boxes_path` (precomputed
    proposals) overrides `spec`.
    """
    if boxes_path is not None:
        return PrecomputedDetector(boxes_path, score_threshold)
    spec = spec or DEFAULT_TORCHVISION_DETECTOR
    backend, _, name = spec.partition(":") if ":" in spec else ("torchvision", "", spec)
    if backend == "torchvision":
        return TorchvisionDetector(name, weights=weights, score_threshold=score_threshold, device=device)
    if backend == "detectron2":
        return Detectron2Detector(name, weights=weights, score_threshold=score_threshold, device=device)
    raise ConfigError(
        f"unknown detector '{spec}'; use a torchvision model name, 'torchvision:NAME' or 'detectron2:CONFIG'"
    )
