"""`sfdet train-detector`: checkpoint round trip, person AP on hand-made cases, errors, `sfdet predict` with
the detector.pt it writes, and (slow) the toy AP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sfdet.cli import main
from sfdet.data.ava import read_label_map, read_predictions_csv
from sfdet.predict.writers import read_jsonl
from sfdet.toy import generate_toy_dataset
from sfdet.detection.keyframes import Keyframe, SplitKeyframes, person_boxes
from sfdet.detection.train_detector import flip_horizontally, person_ap
from sfdet.persons import CHECKPOINT_FORMAT, TINY_ARCH, TrainedDetector, build_person_detector, read_detector_checkpoint

REPO = Path(__file__).resolve().parents[1]
TOY_CONFIG = REPO / "configs/toy/slowfast_tiny.yaml"


@pytest.fixture(scope="module")
def quick_toy(tmp_path_factory):
    return generate_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", quick=True, workers=1)


@pytest.fixture(scope="module")
def trained(quick_toy, tmp_path_factory):
    """A detector.pt after a handful of iterations (loadable, not good)."""
    out = tmp_path_factory.mktemp("det") / "detector.pt"
    rc = main(["train-detector", str(quick_toy), "--out", str(out), "--max-iters", "3", "--batch-size", "2",
               "--device", "cpu", "--no-progress"])
    assert rc == 0
    return out


def test_train_detector_writes_a_loadable_self_describing_checkpoint(trained, quick_toy, capsys):
    checkpoint = read_detector_checkpoint(trained)
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["arch"] == TINY_ARCH
    assert checkpoint["input_size"] == [180, 320]  # the toy's native 320x180
    assert checkpoint["info"]["iterations"] == 3
    assert 0.0 <= checkpoint["info"]["person_ap50_val"] <= 1.0

    detector = build_person_detector(trained, score_threshold=0.0)
    frame = np.zeros((180, 320, 3), np.uint8)
    boxes, scores = detector(frame)
    assert boxes.dtype == np.float32 and boxes.shape == (len(scores), 4)
    assert (scores >= 0).all()
    assert build_person_detector(trained).score_threshold == checkpoint["score_threshold"]


def test_train_detector_prints_the_val_person_ap(quick_toy, tmp_path, capsys):
    out = tmp_path / "d.pt"
    assert main(["train-detector", str(quick_toy), "--out", str(out), "--max-iters", "1", "--batch-size", "2",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "val person AP@0.5 (VOC all-points): " in printed
    assert f"wrote {out}" in printed


class _FixedOutputs(torch.nn.Module):
    """Stands in for a detector model: returns given outputs per image, in call order."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, images):
        return [self.outputs.pop(0) for _ in images]


def _hand_made_split():
    # Two 100x100 keyframes with two persons each (the GT lists one row per action: duplicates collapse).
    gt = pd.DataFrame({
        "video_id": ["v"] * 5, "timestamp": [1.0, 1.0, 1.0, 2.0, 2.0],
        "x1": [0.1, 0.1, 0.6, 0.1, 0.6], "y1": [0.1, 0.1, 0.1, 0.1, 0.1],
        "x2": [0.3, 0.3, 0.9, 0.3, 0.9], "y2": [0.9, 0.9, 0.9, 0.9, 0.9],
        "action_id": [1, 4, 2, 1, 1], "person_id": [0, 0, 1, 0, 1],
    })
    persons = person_boxes(gt)
    exclusions = pd.DataFrame({"video_id": pd.Series([], dtype=object), "timestamp": np.zeros(0)})
    split = SplitKeyframes([("v", 1.0), ("v", 2.0)], persons, set(), exclusions)
    image = torch.zeros(100, 100, 3, dtype=torch.uint8)
    return split, [Keyframe("v", 1.0, image, (100, 100)), Keyframe("v", 2.0, image, (100, 100))]


def _output(boxes, scores, labels=None):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels if labels is not None else [1] * len(scores))}


def test_person_boxes_collapse_the_rows_of_one_person():
    split, _ = _hand_made_split()
    assert len(split.persons) == 4
    assert list(split.persons.columns) == ["video_id", "timestamp", "x1", "y1", "x2", "y2", "person_id"]


def test_person_ap_is_voc_all_points_on_a_hand_made_case():
    split, keyframes = _hand_made_split()
    perfect = [_output([[10, 10, 30, 90], [60, 10, 90, 90]], [0.9, 0.8]),
               _output([[10, 10, 30, 90], [60, 10, 90, 90]], [0.7, 0.6])]
    assert person_ap(_FixedOutputs(perfect), keyframes, split, torch.device("cpu"), progress=False) == 1.0

    # A false positive ranked first: precisions 0, 1/2, 2/3, 3/4, 4/5 at recalls 0, .25, .5, .75, 1;
    # the monotone envelope is 0.8 at every recall step, so AP = 0.8.
    fp_first = [_output([[40, 40, 50, 50], [10, 10, 30, 90], [60, 10, 90, 90]], [0.95, 0.9, 0.8]),
                _output([[10, 10, 30, 90], [60, 10, 90, 90]], [0.7, 0.6])]
    assert person_ap(_FixedOutputs(fp_first), keyframes, split, torch.device("cpu"), progress=False) == pytest.approx(0.8)

    # Non-person labels are ignored; a box at IoU < 0.5 misses: 3 of 4 found, all ranked first -> AP 0.75.
    other = [_output([[10, 10, 30, 90], [60, 10, 90, 90], [0, 0, 100, 100]], [0.9, 0.8, 0.99], [1, 1, 3]),
             _output([[10, 10, 30, 90], [60, 10, 70, 90]], [0.7, 0.6])]
    assert person_ap(_FixedOutputs(other), keyframes, split, torch.device("cpu"), progress=False) == pytest.approx(0.75)


def test_flip_mirrors_image_and_boxes():
    image = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    flipped, boxes = flip_horizontally(image, torch.tensor([[0.0, 1.0, 1.0, 2.0], [1.0, 0.0, 4.0, 3.0]]))
    assert torch.equal(flipped[:, :, 0], image[:, :, 3])
    assert torch.equal(boxes, torch.tensor([[3.0, 1.0, 4.0, 2.0], [0.0, 0.0, 3.0, 3.0]]))


def test_fine_tunes_a_torchvision_detector_from_its_weights(quick_toy, tmp_path):
    """The COCO path: a torchvision state dict (random here: no weights offline) keeps its 91 classes, person = 1."""
    import torchvision

    weights = tmp_path / "coco.pth"
    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.save(torchvision.models.get_model(arch, weights=None, weights_backbone=None).state_dict(), weights)
    out = tmp_path / "ft.pt"
    assert main(["train-detector", str(quick_toy), "--arch", arch, "--weights", str(weights), "--out", str(out),
                 "--max-iters", "1", "--batch-size", "1", "--no-eval", "--no-progress"]) == 0
    checkpoint = read_detector_checkpoint(out)
    assert checkpoint["arch"] == arch and checkpoint["arch_params"] == {"num_classes": 91}
    boxes, scores = build_person_detector(out, score_threshold=0.0)(np.zeros((180, 320, 3), np.uint8))
    assert boxes.shape == (len(scores), 4)


@pytest.mark.parametrize("argv, message", [
    (["train-detector", "{missing}", "--out", "{tmp}/d.pt"], "no such directory"),
    (["train-detector", "{toy}", "--out", "{tmp}/d.pt", "--arch", "no_such_net"], "unknown detector architecture 'no_such_net'"),
    (["train-detector", "{toy}", "--out", "{tmp}/d.pt", "--weights", "{tmp}/none.pth"], "--weights needs --arch"),
    (["train-detector", "{toy}", "--out", "{tmp}/d.pt", "--arch", "fasterrcnn_mobilenet_v3_large_320_fpn",
      "--weights", "{tmp}/none.pth"], "detector weights file not found"),
    (["train-detector", "{toy}", "--out", "{tmp}/d.pt", "--epochs", "0"], "--epochs must be > 0"),
])
def test_bad_inputs_give_one_line_and_exit_2(argv, message, quick_toy, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "nope", tmp=tmp_path, toy=quick_toy) for a in argv]
    assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfdet train-detector: error: ") and message in err
    assert "\n" not in err and not (tmp_path / "d.pt").exists()


def test_a_file_that_is_not_a_detector_checkpoint_is_refused(tmp_path):
    from sfdet.errors import CheckpointError

    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable detector checkpoint"):
        TrainedDetector(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an sfdet detector checkpoint"):
        TrainedDetector(tmp_path / "other.pt")


@pytest.fixture(scope="module")
def action_model(quick_toy, tmp_path_factory):
    """A random-init toy action model in sfdet's checkpoint format (with the quick toy set's label map)."""
    from sfdet.config import load_config
    from sfdet.models import build_model
    from sfdet.models.checkpoint import save_sfdet_checkpoint

    cfg = load_config(TOY_CONFIG, [f"data.root={quick_toy}"])
    label_map = read_label_map(quick_toy / "annotations/label_map.pbtxt")
    cfg.model.num_classes = len(label_map)
    torch.manual_seed(0)
    return save_sfdet_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", build_model(cfg.model).eval(),
                                 label_map)


def test_predict_runs_with_the_detector_pt_train_detector_writes(quick_toy, trained, action_model, tmp_path):
    """`sfdet predict VIDEO --detector detector.pt`: the file of `sfdet train-detector` is a person detector."""
    out = tmp_path / "out"
    assert main(["predict", str(quick_toy / "videos/toy_val_000.mp4"), "--weights", str(action_model),
                 "--config", str(TOY_CONFIG), "--detector", str(trained),
                 "--detector-threshold", "0", "--timestamps", "2,5", "--out", str(out), "--device", "cpu",
                 "--precision", "fp32", "--batch-size", "2", "--no-progress"]) == 0
    records = read_jsonl(out / "toy_val_000.jsonl")
    header = records[0]
    assert header["detector"]["name"] == f"sfdet:{trained.name}" and header["detector"]["score_threshold"] == 0.0
    keyframes = [r for r in records if r["type"] == "keyframe"]
    assert [k["timestamp"] for k in keyframes] == [2.0, 5.0] and records[-1]["type"] == "end"
    predictions = read_predictions_csv(out / "toy_val_000.csv")
    persons = sum(len(k["persons"]) for k in keyframes)
    assert persons > 0  # every box the briefly trained detector outputs is kept (threshold 0)
    assert len(predictions) == persons * len(read_label_map(quick_toy / "annotations/label_map.pbtxt"))


@pytest.mark.parametrize("spec, message", [
    ("{tmp}/missing.pt", "detector checkpoint not found: {tmp}/missing.pt"),
    ("{tmp}/junk.pt", "junk.pt: not a readable detector checkpoint"),
])
def test_predict_with_a_bad_detector_path_is_one_line(spec, message, quick_toy, action_model, tmp_path, capsys):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main(["predict", str(quick_toy / "videos/toy_val_000.mp4"), "--weights", str(action_model),
                 "--config", str(TOY_CONFIG), "--detector", spec.format(tmp=tmp_path),
                 "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfdet predict: error: ") and message.format(tmp=tmp_path) in err and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_default_toy_dataset_reaches_person_ap_090(tmp_path, capsys):
    """The acceptance run: default `sfdet toy-data`, default `sfdet train-detector`, val person AP@0.5 >= 0.90."""
    root = generate_toy_dataset(tmp_path / "toy")
    out = tmp_path / "detector.pt"
    assert main(["train-detector", str(root), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    ap = read_detector_checkpoint(out)["info"]["person_ap50_val"]
    assert ap >= 0.90, f"val person AP@0.5 = {ap:.4f}"
