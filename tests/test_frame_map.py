"""Frame-mAP on hand-made cases with known answers, the protocol variants, the trainer hook and the reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sfdet.data.ava import write_predictions_csv
from sfdet.errors import DataError
from sfdet.evaluation import frame_map, frame_map_from_arrays
from sfdet.evaluation.report import format_table, input_warnings, write_json, write_plot

LABELS = {1: "stand", 2: "sit", 3: "walk", 64: "hug"}
A = (0.0, 0.0, 0.5, 0.5)
B = (0.5, 0.5, 1.0, 1.0)


def gt_table(rows):
    """rows: (video, timestamp, box, action[, person_id])."""
    return pd.DataFrame([
        {"video_id": r[0], "timestamp": float(r[1]), "x1": r[2][0], "y1": r[2][1], "x2": r[2][2], "y2": r[2][3],
         "action_id": r[3], "person_id": r[4] if len(r) > 4 else -1}
        for r in rows
    ])


def pred_table(rows):
    """rows: (video, timestamp, box, action, score)."""
    return pd.DataFrame([
        {"video_id": r[0], "timestamp": float(r[1]), "x1": r[2][0], "y1": r[2][1], "x2": r[2][2], "y2": r[2][3],
         "action_id": r[3], "score": r[4]}
        for r in rows
    ])


GT = gt_table([("v", 902, A, 1), ("v", 902, B, 1), ("v", 903, A, 2)])


def test_perfect_detections_give_ap_one():
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 902, B, 1, 0.8), ("v", 903, A, 2, 0.7)])
    result = frame_map(GT, pred, LABELS)
    assert result.per_class_ap == {1: 1.0, 2: 1.0, 3: result.per_class_ap[3], 64: result.per_class_ap[64]}
    assert math.isnan(result.per_class_ap[3]) and math.isnan(result.per_class_ap[64])  # no GT: NaN, not 0
    assert result.map == 1.0
    assert result.metrics["PascalBoxes_Precision/mAP@0.5IOU"] == 1.0
    assert result.metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/stand"] == 1.0


def test_half_recall_gives_ap_half_and_no_detection_gives_zero():
    pred = pred_table([("v", 902, A, 1, 0.9)])
    result = frame_map(GT, pred, LABELS)
    assert result.per_class_ap[1] == 0.5
    assert result.per_class_ap[2] == 0.0  # GT but no detection: 0
    assert result.map == 0.25


def test_false_positive_ranked_first_halves_precision():
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 902, B, 1, 0.8), ("v", 904, A, 1, 0.95),
                       ("v", 903, A, 2, 0.5)])
    # class 1 ranking: FP (keyframe without GT), TP, TP -> precision 0, 1/2, 2/3 at recall 0, .5, 1
    assert frame_map(GT, pred, LABELS).per_class_ap[1] == pytest.approx(2 / 3, abs=1e-15)


def test_duplicate_detection_is_a_false_positive_without_fallback():
    # The second detection's best GT (A) is taken: it is an FP even though it also overlaps B a bit.
    gt = gt_table([("v", 902, (0.0, 0.0, 0.5, 1.0), 1), ("v", 902, (0.5, 0.0, 1.0, 1.0), 1)])
    pred = pred_table([("v", 902, (0.0, 0.0, 0.5, 1.0), 1, 0.9), ("v", 902, (0.0, 0.0, 0.6, 1.0), 1, 0.8)])
    result = frame_map(gt, pred, LABELS)
    assert result.per_class_ap[1] == 0.5


def test_invalid_boxes_are_dropped_not_false_positives():
    pred = pred_table([("v", 902, (0.3, 0.3, 0.3, 0.6), 1, 0.99), ("v", 902, (0.6, 0.3, 0.2, 0.6), 1, 0.98),
                       ("v", 902, (float("nan"), 0.3, 0.5, 0.6), 1, 0.97), ("v", 902, A, 1, 0.5)])
    result = frame_map(GT, pred, LABELS)
    assert result.per_class_ap[1] == 0.5 and result.notes["invalid_pred_boxes_dropped"] == 3


def test_exclusions_remove_gt_and_detections():
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 903, B, 2, 0.9)])
    exclusions = pd.DataFrame({"video_id": ["v"], "timestamp": [903.0]})
    result = frame_map(GT, pred, LABELS, exclusions=exclusions)
    assert math.isnan(result.per_class_ap[2]) and result.per_class_ap[1] == 0.5


def test_iou_threshold_and_class_subset():
    shifted = (0.1, 0.0, 0.6, 0.5)  # IoU with A = 0.4/0.6 = 2/3
    pred = pred_table([("v", 902, shifted, 1, 0.9), ("v", 903, A, 2, 0.9)])
    assert frame_map(GT, pred, LABELS, iou=0.5).per_class_ap[1] == 0.5
    assert frame_map(GT, pred, LABELS, iou=0.7).per_class_ap[1] == 0.0
    subset = frame_map(GT, pred, LABELS, classes=[2])
    assert list(subset.per_class_ap) == [2] and subset.map == 1.0
    with pytest.raises(DataError, match=r"--classes \[5\] are not in the label map"):
        frame_map(GT, pred, LABELS, classes=[5])


def test_unknown_classes_and_videos_are_reported():
    gt = pd.concat([GT, gt_table([("v", 902, A, 7)])], ignore_index=True)
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 902, A, 99, 0.9), ("w", 902, A, 1, 0.8)])
    result = frame_map(gt, pred, LABELS)
    assert result.notes["gt_rows_with_class_not_in_label_map"] == {7: 1}
    assert result.notes["pred_rows_with_class_not_in_label_map"] == {99: 1}
    assert result.notes["pred_videos_without_gt"] == ["w"]
    assert result.per_class_ap[1] == 0.5  # w's detection is an FP ranked after the TP
    text = "\n".join(input_warnings(result))
    assert "class ids not in the label map" in text and "count as false positives" in text


def test_gt_order_within_a_keyframe_follows_person_id_like_the_reference():
    """A detection with equal IoU to two GT boxes takes the first in the reference's GT order."""
    gt_a, gt_b = (0.0, 0.0, 0.75, 1.0), (0.25, 0.0, 1.0, 1.0)
    middle = (0.125, 0.0, 0.875, 1.0)  # IoU 0.625/0.875 with both
    gt = gt_table([("v", 902, gt_b, 1, 2), ("v", 902, gt_a, 1, 5)])  # file order B, A; person ids order A, B
    pred = pred_table([("v", 902, middle, 1, 0.9), ("v", 902, gt_a, 1, 0.8)])
    # activitynet: GT sorted by descending person id -> [A, B]; `middle` takes A, then gt_a finds A taken.
    assert frame_map(gt, pred, LABELS).per_class_ap[1] == 0.5
    # pyslowfast: file order [B, A]; `middle` takes B, gt_a takes A.
    assert frame_map(gt, pred, LABELS, protocol="pyslowfast").per_class_ap[1] == 1.0


def test_pyslowfast_matches_in_given_order_not_score_order():
    pred = pred_table([("v", 902, (0.0, 0.0, 0.5, 0.45), 1, 0.2), ("v", 902, A, 1, 0.9)])
    gt = gt_table([("v", 902, A, 1)])
    # activitynet: the exact box (0.9) is matched first -> TP then FP: AP 1.
    assert frame_map(gt, pred, LABELS).per_class_ap[1] == 1.0
    # pyslowfast: the low-score box comes first and takes the GT; the 0.9 box is an FP ranked first: AP 0.5.
    assert frame_map(gt, pred, LABELS, protocol="pyslowfast").per_class_ap[1] == 0.5


def test_mmaction2_1x_ignores_keyframes_without_gt_and_classes_without_detections():
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 902, B, 1, 0.8), ("v", 950, A, 1, 0.99)])
    assert frame_map(GT, pred, LABELS).per_class_ap[1] == pytest.approx(2 / 3, abs=1e-15)
    result = frame_map(GT, pred, LABELS, protocol="mmaction2-1.x")
    assert result.per_class_ap[1] == 1.0
    assert math.isnan(result.per_class_ap[2]) and result.map == 1.0  # class 2 has GT but no detection: left out


def test_max_per_frame_keeps_the_best_detections_of_each_keyframe():
    pred = pred_table([("v", 902, B, 3, 0.99), ("v", 902, A, 1, 0.9), ("v", 902, B, 1, 0.5)])
    assert frame_map(GT, pred, LABELS).per_class_ap[1] == 1.0
    result = frame_map(GT, pred, LABELS, max_per_frame=2)
    assert result.per_class_ap[1] == 0.5 and result.notes["dropped_by_max_per_frame"] == 1


def test_nan_score_is_an_error():
    pred = pred_table([("v", 902, A, 1, float("nan"))])
    with pytest.raises(DataError, match=r"\(row 1\): score is NaN"):
        frame_map(GT, pred, LABELS)


def test_inverted_gt_box_is_an_error_only_where_the_reference_crashes():
    gt = pd.concat([GT, gt_table([("v", 905, (0.6, 0.1, 0.2, 0.5), 1)])], ignore_index=True)
    pred = pred_table([("v", 902, A, 1, 0.9)])
    assert frame_map(gt, pred, LABELS).gt_counts[1] == 3  # no detection there: counted, never matched
    pred = pred_table([("v", 905, A, 1, 0.9)])
    with pytest.raises(DataError, match=r"\(row 4\): inverted GT box"):
        frame_map(gt, pred, LABELS)


def test_arrays_hook_equals_the_full_precision_csv(tmp_path):
    rng = np.random.default_rng(0)
    n, class_ids = 40, np.array([1, 2, 3, 64])
    corners = np.sort(rng.random((n, 2, 2)), axis=1).astype(np.float32)
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], axis=1)
    video_ids = rng.choice(["v", "w"], n)
    timestamps = rng.choice([902.0, 903.0, 904.0], n)
    scores = rng.random((n, len(class_ids))).astype(np.float32)
    gt = gt_table([(v, t, tuple(b), int(c)) for v, t, b, c in
                   zip(video_ids[:20], timestamps[:20], boxes[:20].astype(float), rng.choice(class_ids, 20))])
    from_arrays = frame_map_from_arrays(video_ids, timestamps, boxes, scores, class_ids, gt, LABELS)
    rows = pred_table([(v, t, tuple(map(float, b)), int(c), float(s)) for v, t, b, row in
                       zip(video_ids, timestamps, boxes, scores) for c, s in zip(class_ids, row)])
    write_predictions_csv(tmp_path / "pred.csv", rows)
    from_csv = frame_map(gt, tmp_path / "pred.csv", LABELS)
    assert from_arrays.per_class_ap == pytest.approx(from_csv.per_class_ap, abs=0, nan_ok=True)
    assert from_arrays.map == from_csv.map and 0 < from_arrays.map < 1


def test_reports_table_json_and_png(tmp_path):
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 903, A, 2, 0.8), ("v", 903, B, 2, 0.7)])
    result = frame_map(GT, pred, LABELS)  # stand 50%, sit 100%, walk and hug without GT
    table = format_table(result).splitlines()
    ordered = [line.split()[1] for line in table[2:6]]
    assert ordered == ["sit", "stand", "walk", "hug"]  # sorted by AP, NaN last
    assert any("person movement" in line and "75.00" in line for line in table)  # ids <= 14: nanmean(50, 100)
    assert any("person interaction" in line and "nan" in line for line in table)
    data = json.loads(write_json(result, tmp_path / "e.json").read_text())
    assert data["PascalBoxes_Precision/mAP@0.5IOU"] == result.map
    assert data["classes"][0] == {"id": 2, "name": "sit", "ap": 1.0, "gt_count": 1, "detections": 2}
    assert data["classes"][-1]["ap"] is None
    png = write_plot(result, tmp_path / "e.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_leaves_out_ava_groups_for_a_label_map_inside_one_group():
    labels = {1: "stand", 2: "sit"}  # ids 1..2: all "person movement", as the toy's 1..10
    result = frame_map(GT[GT["action_id"].isin(labels)], pred_table([("v", 902, A, 1, 0.9)]), labels)
    table = format_table(result)
    assert "person movement" not in table and "person interaction" not in table
    assert table.splitlines()[-1].split()[0] == "mAP"


def test_duplicates_and_non_finite_boxes_are_noted_with_their_rows():
    gt = pd.concat([GT, gt_table([("v", 902, (float("nan"), 0.0, 0.5, 0.5), 3)])], ignore_index=True)
    pred = pred_table([("v", 902, A, 1, 0.9), ("v", 902, B, 1, 0.8), ("v", 902, A, 1, 0.7), ("v", 902, A, 1, 0.85)])
    result = frame_map(gt, pred, LABELS)
    # ranked TP 0.9, FP 0.85 (repeat), TP 0.8, FP 0.7 (repeat): the repeats stay false positives
    assert result.per_class_ap[1] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-15)
    assert result.notes["duplicate_pred_rows"] == 2
    assert result.notes["first_duplicate_pred_row"] == "<predictions table> (row 3) repeats <predictions table> (row 1)"
    assert result.notes["non_finite_boxes"] == {"gt": 1, "pred": 0}
    assert result.notes["first_non_finite_box"] == {"gt": "<GT table> (row 4)"}
    assert result.notes["out_of_range_boxes"] == {"gt": 0, "pred": 0}  # a NaN box is not "outside [0,1]"
    assert input_warnings(result) == [
        "pred: 2 duplicated rows (same video, timestamp, box and class as an earlier row) count as false positives, "
        "as in the reference; first: <predictions table> (row 3) repeats <predictions table> (row 1)",
        "gt: 1 boxes with a coordinate that is not a number (NaN or inf), used as given (as the reference); "
        "first at <GT table> (row 4)",
    ]


def test_a_folder_of_predictions_equals_their_concatenation(tmp_path):
    rng = np.random.default_rng(5)
    corners = np.sort(rng.random((60, 2, 2)), axis=1)
    pred = pd.DataFrame({"video_id": "v", "timestamp": rng.choice([902.0, 903.0], 60),
                         "x1": corners[:, 0, 0], "y1": corners[:, 0, 1], "x2": corners[:, 1, 0],
                         "y2": corners[:, 1, 1], "action_id": rng.choice([1, 2], 60), "score": rng.random(60)})
    folder = tmp_path / "preds"
    write_predictions_csv(folder / "b.csv", pred.iloc[:25])
    write_predictions_csv(folder / "a.csv", pred.iloc[25:])
    write_predictions_csv(folder / "a.tracks.csv", pred.iloc[:5])  # not read
    write_predictions_csv(tmp_path / "all.csv", pd.concat([pred.iloc[25:], pred.iloc[:25]]))  # `cat preds/*.csv`
    from_folder = frame_map(GT, folder, LABELS)
    from_file = frame_map(GT, tmp_path / "all.csv", LABELS)
    np.testing.assert_equal(from_folder.per_class_ap, from_file.per_class_ap)  # bit-identical (NaN == NaN)
    assert from_folder.map == from_file.map
    assert from_folder.notes["pred_files"] == [str(folder / "a.csv"), str(folder / "b.csv")]


def test_reports_are_written_atomically(tmp_path, monkeypatch):
    result = frame_map(GT, pred_table([("v", 902, A, 1, 0.9)]), LABELS)
    write_json(result, tmp_path / "e.json")
    write_plot(result, tmp_path / "e.png")
    before = {p: p.read_bytes() for p in (tmp_path / "e.json", tmp_path / "e.png")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.png"]  # no temporary files left

    import sfdet.evaluation.report as report

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report.json, "dumps", crash)
    with pytest.raises(RuntimeError):
        write_json(result, tmp_path / "e.json")
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", crash)
    with pytest.raises(RuntimeError):
        write_plot(result, tmp_path / "e.png")
    assert {p: p.read_bytes() for p in before} == before  # the previous files are intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.png"]
