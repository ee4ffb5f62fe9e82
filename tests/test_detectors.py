"""Person detectors (`sfdet.persons`): the box-format guard, torchvision (random weights, no download),
precomputed boxes, a `detector.pt`, and what the one factory makes of each `--detector` value."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from sfdet.data.ava import write_proposals_csv, write_proposals_pkl
from sfdet.errors import CheckpointError, ConfigError, SfdetError
from sfdet.persons import (
    TINY_ARCH,
    PrecomputedDetector,
    TorchvisionDetector,
    TrainedDetector,
    build_person_detector,
    check_boxes,
    save_detector,
    tiny_fasterrcnn,
)

FRAME = np.zeros((120, 200, 3), dtype=np.uint8)  # H=120, W=200


def test_check_boxes_clips_tiny_overshoots():
    boxes, scores = check_boxes([[-1.5, 0, 100, 121.0], [10, 10, 20, 20]], [0.9, 0.8], (120, 200), "d")
    np.testing.assert_array_equal(boxes, [[0, 0, 100, 120], [10, 10, 20, 20]])
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    empty, _ = check_boxes(np.zeros((0,)), np.zeros(0), (120, 200), "d")
    assert empty.shape == (0, 4)


@pytest.mark.parametrize(
    "boxes, message",
    [
        ([[0, 0, np.nan, 10]], "non-finite"),
        ([[0, 0, 10, 10]], "2 scores"),  # scores given below are 2
        ([[0, 0, 260, 100]], "outside the 200x120 frame"),
        ([[0.1, 0.1, 0.9, 0.9]], None),  # valid (tiny but fine)
        ([[50, 10, 40, 20]], "x1 >= x2"),
        ([[0, 0, 10]], r"shape \(1, 3\)"),
    ],
)
def test_check_boxes_rejects_bad_output_naming_the_detector(boxes, message):
    scores = [0.9, 0.9] if message == "2 scores" else [0.9]
    if message is None:
        check_boxes(boxes, scores, (120, 200), "my-detector")
        return
    with pytest.raises(SfdetError, match=message) as exc:
        check_boxes(boxes, scores, (120, 200), "my-detector", where="v1 t=3s")
    assert "person detector 'my-detector'" in str(exc.value) and "v1 t=3s" in str(exc.value)


@pytest.fixture(scope="module")
def random_torchvision_detector():
    torch.manual_seed(0)
    # The default architecture, random weights, nothing downloaded; small input size keeps it fast.
    return TorchvisionDetector(
        "fasterrcnn_resnet50_fpn_v2", weights=None, score_threshold=0.0, min_size=96, max_size=160,
        box_score_thresh=0.0, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, box_detections_per_img=50,
    )


def test_torchvision_detector_random_weights_gives_valid_person_boxes(random_torchvision_detector):
    detector = random_torchvision_detector
    assert detector.person_label == 1  # COCO "person" in torchvision's category list
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(120, 200, 3), dtype=np.uint8)
    with torch.no_grad():
        raw = detector.model([torch.from_numpy(frame).permute(2, 0, 1).float() / 255])[0]
    # Random weights seldom say "person": filter on the class the random model does output.
    detector.person_label = int(raw["labels"][0])
    boxes, scores = detector(frame, "v", 1.0)
    expected = raw["labels"] == detector.person_label
    assert len(boxes) == int(expected.sum()) and len(boxes) > 0
    np.testing.assert_allclose(boxes, raw["boxes"][expected].numpy(), atol=1e-4)
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert (boxes[:, [0, 2]] <= 200).all() and (boxes[:, [1, 3]] <= 120).all()


def test_torchvision_detector_output_goes_through_the_guard(random_torchvision_detector, monkeypatch):
    detector = random_torchvision_detector

    def broken_model(images):
        inverted = torch.tensor([[10.0, 10.0, 5.0, 50.0]])  # x1 > x2
        return [{"boxes": inverted, "labels": torch.tensor([detector.person_label]), "scores": torch.tensor([0.99])}]

    monkeypatch.setattr(detector, "model", broken_model)
    with pytest.raises(SfdetError, match=r"person detector 'torchvision:fasterrcnn_resnet50_fpn_v2'.*x1 >= x2"):
        detector(FRAME, "clip", 2.0)


def test_torchvision_detector_weights_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    kwargs = dict(min_size=64, max_size=96, box_score_thresh=0.0)
    source = TorchvisionDetector("fasterrcnn_mobilenet_v3_large_320_fpn", weights=None, score_threshold=0.0, **kwargs)
    path = tmp_path / "detector.pth"
    torch.save(source.model.state_dict(), path)
    torch.manual_seed(2)
    loaded = TorchvisionDetector("fasterrcnn_mobilenet_v3_large_320_fpn", weights=str(path), score_threshold=0.0,
                                 **kwargs)
    frame = np.random.default_rng(1).integers(0, 255, size=(80, 96, 3), dtype=np.uint8)
    for a, b in zip(source(frame), loaded(frame)):
        np.testing.assert_array_equal(a, b)
    # Weights of another architecture: one clear line naming the file and the architecture.
    with pytest.raises(CheckpointError, match=r"detector\.pth' do not fit torchvision 'ssdlite320_mobilenet_v3_large'"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", weights=str(path))
    with pytest.raises(CheckpointError, match="not found"):
        TorchvisionDetector("fasterrcnn_mobilenet_v3_large_320_fpn", weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable detector weights file"):
        TorchvisionDetector("fasterrcnn_mobilenet_v3_large_320_fpn", weights=str(tmp_path / "junk.pth"))


@pytest.fixture(scope="module")
def detector_pt(tmp_path_factory):
    """A detector.pt as `sfdet train-detector` writes it (its save function; a random tiny model, no training)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("det") / "detector.pt"
    save_detector(path, tiny_fasterrcnn(96, 160), TINY_ARCH, {}, (96, 160), score_threshold=0.3, info={"iterations": 0})
    return path


def test_factory_reads_a_detector_pt_by_its_content(detector_pt, tmp_path, monkeypatch):
    detector = build_person_detector(str(detector_pt))
    assert isinstance(detector, TrainedDetector) and detector.name == "sfdet:detector.pt"
    assert detector.score_threshold == 0.3  # the threshold stored in the checkpoint
    boxes, scores = build_person_detector(detector_pt, score_threshold=0.0)(FRAME, "v", 1.0)
    assert boxes.dtype == np.float32 and boxes.shape == (len(scores), 4) and (scores >= 0).all()
    # No suffix, no folder: still a detector.pt, told apart from a model name by the file existing.
    shutil.copyfile(detector_pt, tmp_path / "people")
    monkeypatch.chdir(tmp_path)
    assert isinstance(build_person_detector("people"), TrainedDetector)
    with pytest.raises(ConfigError, match="--detector-weights does not apply"):
        build_person_detector("people", weights="coco.pth")


def test_factory_names_what_is_wrong_in_one_line(tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    torch.save({"model": {}}, tmp_path / "state.pt")
    cases = [
        (str(tmp_path / "missing.pt"), CheckpointError, "detector checkpoint not found: .*missing.pt"),
        ("runs/det/detector", CheckpointError, "detector checkpoint not found: runs/det/detector"),
        (str(tmp_path / "junk.pt"), CheckpointError, "junk.pt: not a readable detector checkpoint"),
        (str(tmp_path / "state.pt"), CheckpointError, "state.pt: not an sfdet detector checkpoint"),
        (str(tmp_path), CheckpointError, "is a directory"),
        ("yolo", ConfigError, "unknown torchvision detector 'yolo'"),
        ("torchvision:yolo", ConfigError, "unknown torchvision detector 'yolo'"),
        ("mmdet:x", ConfigError, "unknown detector 'mmdet:x'"),
    ]
    for spec, error, message in cases:
        with pytest.raises(error, match=message) as exc:
            build_person_detector(spec, weights=None)
        assert "\n" not in str(exc.value)


def test_detectron2_backend_missing_is_a_clear_error(monkeypatch):
    # Whether or not detectron2 is installed (tests/test_detectron2.py tests the backend itself): hide it.
    for name in [m for m in sys.modules if m == "detectron2" or m.startswith("detectron2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "detectron2", None)
    with pytest.raises(ConfigError, match="needs detectron2") as exc:
        build_person_detector("detectron2:COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml")
    assert "\n" not in str(exc.value)


def _proposals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": ["clip", "clip", "clip", "other"],
            "timestamp": [1.0, 1.0, 2.5, 1.0],
            "x1": [0.1, 0.5, 0.2, 0.0],
            "y1": [0.2, 0.5, 0.2, 0.0],
            "x2": [0.3, 0.9, 0.4, 1.0],
            "y2": [0.6, 1.0, 0.8, 1.0],
            "score": [0.95, 0.5, 0.85, 0.99],
        }
    )


@pytest.mark.parametrize("form", ["csv", "pkl"])
def test_precomputed_boxes_scaled_to_the_frame_and_thresholded(tmp_path, form):
    if form == "csv":
        path = tmp_path / "boxes.csv"
        write_proposals_csv(path, _proposals())
    else:
        path = tmp_path / "boxes.pkl"
        write_proposals_pkl(path, _proposals()[_proposals()["timestamp"].eq(1.0)])
    detector = build_person_detector(None, boxes_path=str(path), score_threshold=0.8)
    boxes, scores = detector(FRAME, "clip", 1)
    np.testing.assert_allclose(boxes, [[20, 24, 60, 72]], rtol=1e-6)  # 0.5-score box dropped
    np.testing.assert_allclose(scores, [0.95], rtol=1e-6)
    assert detector(FRAME, "clip", 7.0)[0].shape == (0, 4)  # keyframe not in the file: no persons
    if form == "csv":
        np.testing.assert_allclose(detector(FRAME, "clip", 2.5)[0], [[40, 24, 80, 96]], rtol=1e-6)
    assert isinstance(detector, PrecomputedDetector)


def test_precomputed_boxes_missing_file(tmp_path):
    with pytest.raises(SfdetError, match="missing.csv"):
        build_person_detector(None, boxes_path=str(tmp_path / "missing.csv"))
