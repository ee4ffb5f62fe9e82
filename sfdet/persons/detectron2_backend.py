"""A detectron2 model-zoo detector as a person detector (optional: only when detectron2 is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sfdet.errors import ConfigError
from sfdet.persons.base import DEFAULT_SCORE_THRESHOLD, PersonDetector


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
