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
    (GT_ROWS, PRED_ROWS, ["--classes", "1,x"], r"--classes: not in the label map .*\(60 classes\): 'x' \("),
    (GT_ROWS, PRED_ROWS, ["--classes", "2"], r"--classes: not in the label map .*: 2 \(ids are 1\.\.80; closest: 1 = 'bend/bow \(at the waist\)', 3 = "),
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


# ------------------------------------------------------------------- issue 15: bad input gets one clear line

def run_eval(files, gt, pred, *extra):
    return cli.main(["eval", "--gt", str(gt), "--pred", str(pred), "--labelmap", LABEL_MAP, *map(str, extra)])


def warnings_of(out):
    return [line for line in out.splitlines() if line.startswith("warning: ")]


def test_nan_gt_box_is_named_not_a_number_with_file_and_line(files, capsys):
    (files / "gt.csv").write_text(GT_ROWS + "vid,0903,nan,0.5,0.9,0.9,80,1\n")
    assert run_eval(files, files / "gt.csv", files / "run" / "preds.csv") == 0
    out = capsys.readouterr().out
    assert warnings_of(out) == [
        f"warning: gt: 1 boxes with a coordinate that is not a number (NaN or inf), used as given "
        f"(as the reference); first at {files / 'gt.csv'}:4"]
    assert "outside [0,1]" not in out


def test_out_of_range_boxes_are_located_too(files, capsys):
    (files / "run" / "preds.csv").write_text(PRED_ROWS + "vid,0903,10,10,50,50,80,0.1\n")
    assert run_eval(files, files / "gt.csv", files / "run" / "preds.csv") == 0
    assert warnings_of(capsys.readouterr().out) == [
        "warning: pred: 1 boxes outside [0,1] (used as given; are they normalised?); "
        f"first at {files / 'run' / 'preds.csv'}:4"]


def test_duplicated_prediction_rows_warn_once_and_keep_the_official_numbers(files, capsys):
    pred = files / "run" / "preds.csv"
    lines = PRED_ROWS.splitlines(keepends=True)
    pred.write_text(lines[0] + lines[1] + lines[0] + lines[2] + lines[1] + lines[0])  # 3 repeats
    assert run_eval(files, files / "gt.csv", pred) == 0
    out = capsys.readouterr().out
    assert warnings_of(out) == [
        "warning: pred: 3 duplicated rows (same video, timestamp, box and class as an earlier row) count as "
        f"false positives, as in the reference; first: {pred}:3 repeats {pred}:1"]
    # stand: TP then two FPs at the same score -> ranking as the reference's argsort; the mAP drops
    data = json.loads((files / "run" / "preds_eval.json").read_text())
    assert data["notes"]["duplicate_pred_rows"] == 3
    assert data["notes"]["first_duplicate_pred_row"] == f"{pred}:3 repeats {pred}:1"
    assert data["PascalBoxes_Precision/mAP@0.5IOU"] < 0.5


def test_empty_gt_file_is_an_error_naming_it(files, capsys):
    (files / "gt.csv").write_text("")
    assert run_eval(files, files / "gt.csv", files / "run" / "preds.csv") == 2
    captured = capsys.readouterr()
    assert captured.err == (f"sfdet eval: error: {files / 'gt.csv'}: has no rows "
                            "(an empty GT file: nothing to evaluate against)\n")
    assert not (files / "run" / "preds_eval.json").exists()


@pytest.mark.parametrize("gt, extra, why", [
    (GT_ROWS, ["--classes", "1"], "3 are of classes left out by --classes"),
    ("vid,0902,0.1,0.1,0.5,0.5,12,0\n", ["--exclusions", "EX"], "1 are on excluded keyframes"),
    ("vid,0902,0.1,0.1,0.5,0.5,999,0\nvid,0902,0.1,0.1,0.5,0.5,12,0\n", ["--exclusions", "EX"],
     "1 have class ids not in the label map; 1 are on excluded keyframes"),
])
def test_no_gt_left_to_evaluate_is_an_error_saying_why(files, capsys, gt, extra, why):
    (files / "gt.csv").write_text(gt)
    (files / "ex.csv").write_text("vid,0902\n")
    extra = [str(files / "ex.csv") if a == "EX" else a for a in extra]
    assert run_eval(files, files / "gt.csv", files / "run" / "preds.csv", *extra) == 2
    n = len(gt.splitlines())
    assert capsys.readouterr().err == (
        f"sfdet eval: error: {files / 'gt.csv'}: none of its {n} row(s) is left to evaluate ({why}): "
        "no class has GT, so the mAP is undefined\n")


def test_empty_predictions_file_warns(files, capsys):
    (files / "run" / "preds.csv").write_text("")
    assert run_eval(files, files / "gt.csv", files / "run" / "preds.csv") == 0
    out = capsys.readouterr().out
    assert warnings_of(out) == [
        f"warning: pred: {files / 'run' / 'preds.csv'} has no rows: every class with GT gets AP 0"]
    assert "PascalBoxes_Precision/mAP@0.5IOU=\t0.0" in out


def test_pred_directory_reads_every_prediction_csv_but_tracks(files, capsys):
    run = files / "run"
    lines = PRED_ROWS.splitlines(keepends=True)
    (run / "preds.csv").write_text(lines[0])           # as `sfdet predict` writes: <stem>.csv ...
    (run / "preds.tracks.csv").write_text(GT_ROWS)     # ... and <stem>.tracks.csv (GT layout: must be skipped)
    (run / "other.csv").write_text(lines[1] + lines[2])
    (run / "preds.jsonl").write_text("{}\n")
    (run / ".hidden.csv").write_text("garbage\n")
    assert run_eval(files, files / "gt.csv", run) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"read 2 prediction file(s) from {run} (*.csv, not *.tracks.csv): other.csv, preds.csv"
    assert warnings_of(out) == []
    assert "PascalBoxes_Precision/mAP@0.5IOU=\t0.5" in out  # the same as the one-file run
    data = json.loads((files / "run_eval.json").read_text())  # next to the folder, named after it
    assert data["notes"]["pred_files"] == [str(run / "other.csv"), str(run / "preds.csv")]
    assert data["PascalBoxes_Precision/mAP@0.5IOU"] == 0.5


def test_pred_directory_errors_name_the_file_and_line_and_skip_the_gt(files, capsys):
    run = files / "run"
    (run / "gt.csv").write_text(GT_ROWS)  # the GT file itself in the folder: not read as predictions
    (run / "b.csv").write_text(PRED_ROWS + "vid,0902,0.1,x,0.5,0.5,12,0.9\n")
    assert run_eval(files, run / "gt.csv", run) == 2
    assert capsys.readouterr().err == f"sfdet eval: error: {run / 'b.csv'}:4: y1 'x' is not a number\n"
    (run / "b.csv").write_text(PRED_ROWS)
    assert run_eval(files, run / "gt.csv", run) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"read 2 prediction file(s) from {run} (*.csv, not *.tracks.csv): b.csv, preds.csv"
    assert warnings_of(out) == [
        "warning: pred: 3 duplicated rows (same video, timestamp, box and class as an earlier row) count as "
        f"false positives, as in the reference; first: {run / 'preds.csv'}:1 repeats {run / 'b.csv'}:1"]


def test_pred_directory_without_predictions_and_gt_directory_are_one_line_errors(files, capsys):
    empty = files / "empty"
    empty.mkdir()
    (empty / "x.tracks.csv").write_text(GT_ROWS)
    assert run_eval(files, files / "gt.csv", empty) == 2
    assert capsys.readouterr().err == (
        f"sfdet eval: error: {empty}: is a directory with no prediction CSVs (*.csv other than *.tracks.csv); "
        "pass a predictions CSV or the folder `sfdet predict` wrote\n")
    assert run_eval(files, files, files / "run" / "preds.csv") == 2
    assert capsys.readouterr().err == (
        f"sfdet eval: error: {files}: is a directory; --gt takes one GT CSV file "
        "(video_id,timestamp,x1,y1,x2,y2,action_id[,person_id])\n")
    assert run_eval(files, files / "gt.csv", files / "run" / "preds.csv", "--exclusions", files) == 2
    assert capsys.readouterr().err == f"sfdet eval: error: {files}: is a directory, not a file\n"
