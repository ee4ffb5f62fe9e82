"""Person detectors: one interface, every backend, one factory.

    base.py                 `PersonDetector` (frame -> boxes_xyxy_abs, scores) and `check_boxes`, its output guard
    torchvision_backend.py  any torchvision detection model; COCO weights from the torch hub cache
    detectron2_backend.py   a detectron2 model-zoo detector (when detectron2 is installed)
    precomputed.py          boxes read from a proposals CSV / MMAction2 pickle (`--boxes`)
    architectures.py        what `sfdet train-detector` trains: a tiny Faster R-CNN or a torchvision model
    trained.py              its `detector.pt` (save / read) and the detector that runs it
    factory.py              `build_person_detector`: `--detector` / `--boxes` -> a detector, the same everywhere

May import sfdet.data, sfdet.models and the leaf modules (errors, boxes, fileio, devices);
never sfdet.predict, sfdet.engine, sfdet.detection, sfdet.commands or sfdet.demo.
"""

from sfdet.persons.architectures import PERSON_LABEL, TINY_ARCH, build_detector_model, tiny_fasterrcnn
from sfdet.persons.base import DEFAULT_SCORE_THRESHOLD, PersonDetector, check_boxes
from sfdet.persons.detectron2_backend import Detectron2Detector
from sfdet.persons.factory import build_person_detector
from sfdet.persons.precomputed import PrecomputedDetector
from sfdet.persons.torchvision_backend import (
    DEFAULT_TORCHVISION_DETECTOR,
    TorchvisionDetector,
    load_torchvision_detector_state,
    torchvision_weights_file,
)
from sfdet.persons.trained import (
    CHECKPOINT_FORMAT,
    TrainedDetector,
    load_detector_model,
    read_detector_checkpoint,
    save_detector,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_SCORE_THRESHOLD",
    "DEFAULT_TORCHVISION_DETECTOR",
    "PERSON_LABEL",
    "TINY_ARCH",
    "Detectron2Detector",
    "PersonDetector",
    "PrecomputedDetector",
    "TorchvisionDetector",
    "TrainedDetector",
    "build_detector_model",
    "build_person_detector",
    "check_boxes",
    "load_detector_model",
    "load_torchvision_detector_state",
    "read_detector_checkpoint",
    "save_detector",
    "tiny_fasterrcnn",
    "torchvision_weights_file",
]
