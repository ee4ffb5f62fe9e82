"""`sfdet eval` end to end: the printed metric, the JSON/PNG outputs, and one-line errors on bad input."""

from __future__ import annotations

import json
import re

import pytest

from sfdet import cli

LABEL_MAP = "/work/shared/reference/ava_action_list_v2.2_for_activitynet_2019.pbtxt"
GT_ROWS = "vid,0902,0.1,0.1,0.5,0.5,12,0\nvid,0902,0.5,0.5,0.9,0.9,12,1\nvid,0903,0.1,0.1,0.5,0.5,80,0\n"
PRED_ROWS = "vid,0902,0.1,0.1,0.5,0.5,12,0.9\nvid,0903,0.1,0.1,0.5,0.5,80,0.8\nvid,0903,0.5,0.5,0.9,0.9,80,0.95\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "gt.csv").write_text(GT_ROWS)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "preds.csv").write_text(PRED_ROWS)
    return tmp_path


def test_eval_prints_reference_metric_and_writes_json_png(files, capsys):
    argv = ["eval", "--gt", str(files / "gt.csv"), "--pred", str(files / "run" / "preds.csv"), "--labelmap", LABEL_MAP]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "PascalBoxes_Precision/mAP@0.5IOU=\t0.5" in out  # stand: 0.5, watch (a person): 0.5
    assert "stand" in out and "watch (a person)" in out
    data = json.loads((files / "run" / "preds_eval.json").read_text())
    assert data["PascalBoxes_Precision/mAP@0.5IOU"] == 0.5
    assert data["metrics"]["PascalBoxes_PerformanceByCategory/AP@0.5IOU/stand"] == 0.5
    assert (files / "run" / "preds_eval.png").stat().st_size > 1000


def test_eval_options_and_out_folder(files, capsys):
    (files / "ex.csv").write_text("vid,0903\n")
    argv = ["eval", "--gt", str(files / "gt.csv"), "--pred", str(files / "run" / "preds.csv"), "--labelmap", LABEL_MAP,
            "--exclusions", str(files / "ex.csv"), "--classes", "12,80", "--iou", "0.5", "--max-per-frame", "50",
            "--protocol", "mmaction2-1.x", "--out", str(files / "report")]
    assert cli.main(argv) == 0
    data = json.loads((files / "report" / "preds_eval.json").read_text())
    assert [c["id"] for c in data["classes"]] == [12, 80] and data["protocol"] == "mmaction2-1.x"
    assert data["PascalBoxes_Precision/mAP@0.5IOU"] == 0.5  # class 80 only on the excluded keyframe


@pytest.mark.parametrize("gt, pred, extra, message", [
    (GT_ROWS, "vid,0902,0.1,0.1,0.5,0.5,12,0.9,3\n", [], r"preds.csv:1: expected 7 or 8 comma-separated fields, got 9"),
    ("vid,0902,0.1,0.1,0.5,0.5\n", PRED_ROWS, [], r"gt.csv:1: expected 7 or 8 comma-separated fields, got 6"),
    (GT_ROWS, PRED_ROWS + "vid,0902,0.1,zero,0.5,0.5,12,0.9\n", [], r"preds.csv:4: y1 'zero' is not a number"),
    (GT_ROWS, "vid,0902,0.1,0.1,0.5,0.5,12,nan\n", [], r"preds.csv:1: score nan is not a number"),
    (GT_ROWS, "vid,0902,0.1,0.1,0.5,0.5,12.5,0.9\n", [], r"preds.csv:1: action_id '12.5' is not an integer"),
    ("vid,0902,0.9,0.1,0.5,0.5,12\n", PRED_ROWS, [], r"gt.csv:1: inverted GT box"),
    (GT_ROWS, PRED_ROWS, ["--classes", "1,x"], r"--classes expects comma-separated integer ids"),
    (GT_ROWS, PRED_ROWS, ["--classes", "2"], r"--classes \[2\] are not in the label map"),
    (GT_ROWS, PRED_ROWS, ["--iou", "1.5"], r"iou threshold must be in \(0, 1\]"),
    (GT_ROWS, PRED_ROWS, ["--exclusions", "/no/such.csv"], r"/no/such.csv: no such file"),
    (GT_ROWS, PRED_ROWS, ["--labelmap", "GT"], r"gt.csv:1: unexpected line"),
])
def test_malformed_input_is_one_line_and_exit_2(files, capsys, gt, pred, extra, message):
    (files / "gt.csv").write_text(gt)
    (files / "run" / "preds.csv").write_text(pred)
    extra = [str(files / "gt.csv") if a == "GT" else a for a in extra]
    argv = ["eval", "--gt", str(files / "gt.csv"), "--pred", str(files / "run" / "preds.csv"), "--labelmap", LABEL_MAP]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sfdet eval: error: ")
    assert re.search(message, err), err
