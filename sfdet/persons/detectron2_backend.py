"""A detectron2 detector as a person detector (optional: only when detectron2 is installed).

PySlowFast's AVA person proposals came from a detectron2 Faster R-CNN; this backend runs any
detectron2 (yacs `.yaml`) config the way detectron2's own `DefaultPredictor` does, and keeps the
boxes of the `person` class. detectron2 has no wheel on PyPI: build it from source (README, or
`scripts/install_detectron2.sh`), with `setuptools<81` (its model zoo imports `pkg_resources`).

Config: a model-zoo name ("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml") or a local `.yaml` file.
Weights:
    "DEFAULT"            the model zoo's trained weights for a model-zoo name (for a local config file:
                         the config's own MODEL.WEIGHTS), from the torch hub cache
                         (`<torch hub dir>/checkpoints/detectron2/<path of the URL>`), downloaded there through
                         the model registry's one download path when missing (offline: one line naming the
                         URL and where to put the file)
    a URL                http(s):// or detectron2://, cached and downloaded the same way
    a local file         detectron2's own formats: a model-zoo `.pkl` or a `DetectionCheckpointer` `.pth`
    None                 random init (tests)
"""

from __future__ import annotations

import urllib.request
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sfdet.errors import CheckpointError, ConfigError
from sfdet.persons.base import DEFAULT_SCORE_THRESHOLD, PersonDetector

DETECTRON2_URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
_SHOWN_KEYS = 3  # tensor names an ill-fitting checkpoint's error shows


def _import_detectron2():
    try:
        import detectron2  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the detectron2 detector needs detectron2, which has no PyPI wheel: build it from source "
            "(see the README's install section, or https://detectron2.readthedocs.io/en/latest/tutorials/install.html) "
            "or use a torchvision detector"
        ) from None
    try:
        with warnings.catch_warnings():  # third-party noise a user can do nothing about
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            from detectron2 import model_zoo  # imports pkg_resources
            import detectron2.engine  # noqa: F401  (scripts some functions: the torch.jit warning)
    except ModuleNotFoundError as exc:
        if exc.name == "pkg_resources":
            raise ConfigError("detectron2's model zoo imports pkg_resources, which setuptools 81 removed: "
                              "pip install 'setuptools<81'") from None
        raise ConfigError(f"detectron2 is installed but cannot be imported ({exc}); "
                          "pip install fvcore 'iopath>=0.1.7,<0.1.10' omegaconf hydra-core pycocotools") from None
    return model_zoo


def detectron2_weights_file(url: str, opener: Callable = urllib.request.urlopen, progress: bool = True) -> Path:
    """`<torch hub dir>/checkpoints/detectron2/<path of the URL>`, downloaded first when missing.

    The model zoo's file names (`model_final_280758.pkl`) only are unique with their folders, so the
    URL's path below detectron2's prefix is kept. `detectron2://X` is detectron2's short form of
    `https://dl.fbaipublicfiles.com/detectron2/X`.
    """
    from sfdet.models.registry import download

    if url.startswith("detectron2://"):
        url = DETECTRON2_URL_PREFIX + url[len("detectron2://"):]
    relative = url[len(DETECTRON2_URL_PREFIX):] if url.startswith(DETECTRON2_URL_PREFIX) else url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / "detectron2" / relative.split("?", 1)[0]
    if not path.is_file():
        download(url, path, opener, progress)
    return path


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://", "detectron2://"))


def _person_label(cfg) -> int:
    """The `person` index in the config's dataset classes (COCO: 0), when detectron2 knows the dataset."""
    from detectron2.data import MetadataCatalog

    for dataset in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN):
        try:
            classes = MetadataCatalog.get(dataset).get("thing_classes", None)
        except Exception:  # an unregistered dataset name
            classes = None
        if classes and "person" in classes:
            return list(classes).index("person")
    return 0


class Detectron2Detector(PersonDetector):
    """A detectron2 detector (config name or file + weights), run as detectron2's `DefaultPredictor` runs it.

    The frame is resized as the config says (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST) and the boxes come
    back in frame pixels; boxes of the `person` class (COCO: 0) scoring >= `score_threshold` are kept.
    """

    def __init__(
        self,
        config_name: str,
        weights: str | None = "DEFAULT",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        device: str | torch.device = "cpu",
        person_label: int | None = None,
        opener: Callable = urllib.request.urlopen,
    ):
        model_zoo = _import_detectron2()
        from detectron2.config import get_cfg
        from detectron2.engine import DefaultPredictor

        config_file, from_zoo = self._config_file(model_zoo, config_name)
        cfg = get_cfg()
        try:
            cfg.merge_from_file(config_file)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"cannot read detectron2 config {config_name}: {first_line}") from None
        if weights == "DEFAULT":
            if from_zoo:
                try:
                    weights = model_zoo.get_checkpoint_url(config_name)
                except RuntimeError:
                    raise ConfigError(f"detectron2 model-zoo config {config_name} has no trained weights; "
                                      "pass --detector-weights FILE") from None
            elif cfg.MODEL.WEIGHTS:
                weights = cfg.MODEL.WEIGHTS
            else:
                raise ConfigError(f"detectron2 config {config_name} sets no MODEL.WEIGHTS; "
                                  "pass --detector-weights FILE")
        weights_file = self._weights_file(weights, opener)
        cfg.MODEL.WEIGHTS = ""  # loaded below, checked; DefaultPredictor loads nothing itself
        cfg.MODEL.DEVICE = str(torch.device(device))
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold  # R-CNNs' cut before NMS and the top-k
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = score_threshold
        cfg.freeze()
        self.predictor = DefaultPredictor(cfg)
        if weights_file is not None:
            self._load_weights(weights_file, config_name)
        self.name = f"detectron2:{config_name}"
        self.weights = weights
        self.score_threshold = score_threshold
        self.person_label = _person_label(cfg) if person_label is None else person_label
        self.device = torch.device(device)

    @staticmethod
    def _config_file(model_zoo, config_name: str) -> tuple[str, bool]:
        path = Path(config_name).expanduser()
        if path.suffix == ".py":
            raise ConfigError(f"detectron2 LazyConfig (.py) configs are not supported: {config_name}; "
                              "use a .yaml config")
        if path.is_file():
            return str(path), False
        try:
            return model_zoo.get_config_file(config_name), True
        except RuntimeError:
            raise ConfigError(f"detectron2 config {config_name} is neither a file nor a model-zoo config "
                              "(e.g. COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml)") from None

    @staticmethod
    def _weights_file(weights: str | None, opener: Callable) -> Path | None:
        if weights is None or weights == "":
            return None  # random init
        if _is_url(weights):
            return detectron2_weights_file(weights, opener)
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"detector weights file not found: {weights}")
        return path

    def _load_weights(self, path: Path, config_name: str) -> None:
        """Load a detectron2 checkpoint as DefaultPredictor would, but refuse one that leaves tensors unset."""
        from detectron2.checkpoint import DetectionCheckpointer

        class _Checkpointer(DetectionCheckpointer):
            incompatible = None

            def _log_incompatible_keys(self, incompatible) -> None:
                self.incompatible = incompatible
                super()._log_incompatible_keys(incompatible)

        checkpointer = _Checkpointer(self.predictor.model)
        try:
            checkpointer.load(str(path))
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"cannot read detectron2 weights {path} ({first_line}); expected a model-zoo .pkl "
                                  "or a DetectionCheckpointer .pth") from None
        incompatible = checkpointer.incompatible
        if incompatible is None:
            return
        wrong = [key for key, *_ in incompatible.incorrect_shapes] + list(incompatible.missing_keys)
        if wrong:
            more = f" and {len(wrong) - _SHOWN_KEYS} more" if len(wrong) > _SHOWN_KEYS else ""
            raise CheckpointError(f"detector weights {path} do not fit detectron2 config {config_name} "
                                  f"(missing or mis-shaped: {', '.join(wrong[:_SHOWN_KEYS])}{more}); "
                                  "pass weights trained with this config")

    def _detect(self, frame_rgb, video_id, timestamp):
        frame = np.asarray(frame_rgb)
        if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):  # a greyscale frame
            frame = np.repeat(frame.reshape(*frame.shape[:2], 1), 3, axis=2)
        # DefaultPredictor takes BGR (OpenCV's order) and flips it itself for RGB-input models.
        instances = self.predictor(np.ascontiguousarray(frame[:, :, ::-1]))["instances"].to("cpu")
        keep = (instances.pred_classes == self.person_label) & (instances.scores >= self.score_threshold)
        return instances.pred_boxes.tensor[keep].numpy(), instances.scores[keep].numpy()

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "score_threshold": self.score_threshold}
