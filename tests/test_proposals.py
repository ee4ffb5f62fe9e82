"""`sfdet proposals`: AVA-layout output that reads back, exact recall with a GT-echoing detector, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from sfdet.boxes import norm_to_abs
from sfdet.cli import main
from sfdet.data import ava
from sfdet.toy import generate_toy_dataset
from sfdet.detection.keyframes import boxes_by_key, data_config, read_split_keyframes
from sfdet.detection.proposals import detections_to_rows, make_proposals, report_lines
from sfdet.persons import PersonDetector


@pytest.fixture(scope="module")
def quick_toy(tmp_path_factory):
    return generate_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", quick=True, workers=1)


@pytest.fixture(scope="module")
def trained(quick_toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "detector.pt"
    assert main(["train-detector", str(quick_toy), "--out", str(out), "--max-iters", "2", "--batch-size", "2",
                 "--no-eval", "--device", "cpu", "--no-progress"]) == 0
    return out


class GTEcho(PersonDetector):
    """Returns the split's GT person boxes (scaled to the frame), with scores 0.9, 0.8, ..."""

    name = "gt-echo"
    score_threshold = 0.0

    def __init__(self, boxes):
        self.boxes = boxes
        self.calls = 0

    def _detect(self, frame_rgb, video_id, timestamp):
        self.calls += 1
        height, width = frame_rgb.shape[:2]
        boxes_norm = self.boxes.get((video_id, timestamp), np.zeros((0, 4), np.float32))
        scores = 0.9 - 0.1 * np.arange(len(boxes_norm))
        return norm_to_abs(boxes_norm, width, height), scores


def test_a_detector_that_finds_the_gt_has_recall_one(quick_toy):
    cfg = data_config([str(quick_toy)])
    split = read_split_keyframes(cfg, "val")
    detector = GTEcho(boxes_by_key(split.persons))
    result = make_proposals(cfg, "val", detector, progress=False)

    assert detector.calls == result.detected == result.keyframes == len(split.keys)  # GT + excluded keyframes
    assert result.recall == {0.5: 1.0, 0.9: 1.0}
    assert report_lines(result) == ["GT person-box recall at IoU 0.5: 1.000", "GT person-box recall at IoU 0.9: 1.000"]
    merged = result.proposals.merge(split.persons, on=["video_id", "timestamp"], suffixes=("", "_gt"))
    same = np.isclose(merged[ava.BOX_COLUMNS].to_numpy(), merged[[c + "_gt" for c in ava.BOX_COLUMNS]].to_numpy(),
                      atol=1e-5).all(axis=1)
    assert same.sum() == len(split.persons) == len(result.proposals)


def test_rows_are_normalised_rounded_best_first_and_degenerate_boxes_dropped():
    rows = detections_to_rows("v", 3.0, np.array([[0, 0, 160, 90], [32, 18, 64.0000001, 36], [5, 5, 5, 9]]),
                              np.array([0.5, 0.9, 0.99]), (180, 320))
    assert rows.columns.tolist() == ["video_id", "timestamp", "x1", "y1", "x2", "y2", "score"]
    assert rows[ava.BOX_COLUMNS].to_numpy().tolist() == [[0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 0.5, 0.5]]
    assert rows["score"].tolist() == [0.9, 0.5]


def test_proposals_cli_writes_ava_csv_and_pickle_that_read_back(quick_toy, trained, tmp_path, capsys):
    csv, pkl = tmp_path / "val_predicted_boxes.csv", tmp_path / "val.pkl"
    assert main(["proposals", str(quick_toy), "--detector", str(trained), "--out", str(csv), "--pkl", str(pkl),
                 "--score-thresh", "0", "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "GT person-box recall at IoU 0.5: " in out and "GT person-box recall at IoU 0.9: " in out

    table = ava.read_proposals(csv)
    assert len(table) > 0
    first = csv.read_text().splitlines()[0].split(",")
    assert len(first) == 8 and first[6] == "-1"  # AVA predicted-boxes layout: action -1, score last
    val_videos = set(ava.read_gt_csv(quick_toy / "annotations" / "val.csv")["video_id"])
    assert set(table["video_id"]) <= val_videos
    from_pickle = ava.read_proposals(pkl)
    pd.testing.assert_frame_equal(from_pickle.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False)
    with open(pkl, "rb") as f:
        assert all(key.count(",") == 1 for key in pickle.load(f))


def test_train_split_and_config_file(quick_toy, trained, tmp_path, capsys):
    config = tmp_path / "data.yaml"
    config.write_text(f"data:\n  root: {quick_toy}\n")
    csv = tmp_path / "train.csv"
    assert main(["proposals", "--config", str(config), "--split", "train", "--detector", str(trained),
                 "--out", str(csv), "--score-thresh", "0", "--no-progress"]) == 0
    assert set(ava.read_proposals(csv)["video_id"]) <= {"toy_train_000", "toy_train_001"}


@pytest.mark.parametrize("argv, message", [
    (["proposals", "{missing}", "--detector", "{det}", "--out", "{tmp}/p.csv"], "no such directory"),
    (["proposals", "{toy}", "--detector", "{tmp}/missing.pt", "--out", "{tmp}/p.csv"], "detector checkpoint not found"),
    (["proposals", "{toy}", "--detector", "no_such_net", "--out", "{tmp}/p.csv"], "unknown torchvision detector"),
    (["proposals", "{toy}", "--detector", "{det}", "--out", "{tmp}/p.csv", "--score-thresh", "2"], "--score-thresh"),
    (["proposals", "{toy}", "data.video_dir=nowhere", "--detector", "{det}", "--out", "{tmp}/p.csv"],
     "none of the"),
])
def test_bad_inputs_give_one_line_and_exit_2(argv, message, quick_toy, trained, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "nope", tmp=tmp_path, toy=quick_toy, det=trained) for a in argv]
    assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfdet proposals: error: ") and message in err
    assert "\n" not in err and not (tmp_path / "p.csv").exists()
