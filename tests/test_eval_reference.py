"""sfdet's frame-mAP equals the reference AVA evaluator (MMAction2 0.24.1 `ava_eval`) on random hard cases."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from sfdet.errors import DataError
from sfdet.evaluation import frame_map

_spec = importlib.util.spec_from_file_location("ava_reference", Path(__file__).with_name("ava_reference.py"))
ava_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ava_reference)
try:
    REFERENCE = ava_reference.load_ava_utils()
except ImportError as exc:  # pragma: no cover - depends on the test environment
    pytest.skip(f"reference evaluator unavailable: {exc}", allow_module_level=True)


def run_reference(pred_csv, label_map_path, gt_csv, exclusions_csv=None, custom_classes=None):
    """mAP and per-class AP (by name) as the reference prints them."""
    out = io.StringIO()
    logging.disable(logging.INFO)
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the reference's nanmean of empty slices
            REFERENCE.ava_eval(str(pred_csv), "mAP", str(label_map_path), str(gt_csv),
                               None if exclusions_csv is None else str(exclusions_csv), verbose=True,
                               custom_classes=custom_classes)
    finally:
        logging.disable(logging.NOTSET)
    values = {}
    for line in out.getvalue().splitlines():
        if "=\t" in line:
            name, value = line.rsplit("=\t", 1)
            values[name] = float(value)
    per_class = {k.split("/", 2)[2]: v for k, v in values.items() if k.startswith("PerformanceByCategory/")}
    return values["mAP@0.5IOU"], per_class


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


def fmt(value: float) -> str:
    return repr(float(value))


def random_case(rng: np.random.Generator, tmp_path):
    """Write one small, nasty case (GT, predictions, label map, exclusions) and return their paths."""
    label_ids = sorted(rng.choice([1, 2, 3, 4, 5, 6, 15, 64, 80], size=rng.integers(2, 7), replace=False).tolist())
    all_ids = label_ids + [7, 99]  # ids outside the label map appear in GT and predictions
    label_map = tmp_path / "labels.pbtxt"
    label_map.write_text("".join(f'item {{\n  name: "class {i}"\n  id: {i}\n}}\n' for i in label_ids))

    videos = [f"vid{i}" for i in range(rng.integers(1, 4))]
    keyframes = [(v, t) for v in videos for t in range(902, 902 + rng.integers(1, 5))]
    with_person_id = rng.random() < 0.7
    score_decimals = int(rng.choice([1, 2, 17]))  # few decimals -> many score ties

    gt_lines, pred_lines, people = [], [], {}
    for video, second in keyframes:
        n_people = int(rng.integers(0, 5))
        boxes = []
        for person in range(n_people):
            x1, y1 = rng.random(2) * 0.6
            box = [x1, y1, x1 + 0.05 + rng.random() * 0.4, y1 + 0.05 + rng.random() * 0.4]
            if rng.random() < 0.2 and boxes:  # heavy overlap with another person
                box = list(np.array(boxes[-1]) + rng.normal(0, 0.02, 4))
            boxes.append(box)
            for action in rng.choice(all_ids, size=rng.integers(1, 4), replace=False):
                row = [video, "%04d" % second, *map(fmt, box), str(action)]
                if with_person_id:
                    row.append(str(int(rng.integers(0, 4))))
                gt_lines.append(",".join(row))
                if rng.random() < 0.05:
                    gt_lines.append(gt_lines[-1])  # duplicate GT row
        people[(video, second)] = boxes

    pred_keyframes = keyframes + [(videos[0], 950), ("video_without_gt", 902)]
    for video, second in pred_keyframes:
        if rng.random() < 0.15:
            continue  # GT without predictions
        boxes = list(people.get((video, second), []))
        boxes += [list(np.array(b) + rng.normal(0, 0.03, 4)) for b in boxes]  # near-duplicates
        boxes += [[*(rng.random(2) * 0.5), *(0.5 + rng.random(2) * 0.5)] for _ in range(rng.integers(0, 3))]
        for box in boxes:
            special = rng.random()
            if special < 0.05:
                box = [box[0], box[1], box[0], box[3]]  # zero width
            elif special < 0.1:
                box = [box[2], box[1], box[0], box[3]]  # inverted
            for action in rng.choice(all_ids, size=rng.integers(1, len(all_ids)), replace=False):
                score = round(float(rng.random()), score_decimals)
                pred_lines.append(",".join([video, "%04d" % second, *map(fmt, box), str(action), fmt(score)]))
                if rng.random() < 0.05:
                    pred_lines.append(pred_lines[-1])  # duplicate prediction
    rng.shuffle(pred_lines)
    if rng.random() < 0.1:  # predictions without a score column: score 1.0 for all
        pred_lines = [line.rsplit(",", 1)[0] for line in pred_lines]

    gt_csv, pred_csv = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt_csv.write_text("".join(line + "\n" for line in gt_lines))
    pred_csv.write_text("".join(line + "\n" for line in pred_lines))
    exclusions = None
    if rng.random() < 0.5:
        exclusions = tmp_path / "excluded.csv"
        chosen = [keyframes[i] for i in rng.choice(len(keyframes), size=min(2, len(keyframes)), replace=False)]
        exclusions.write_text("".join(f"{v},{t:04d}\n" for v, t in chosen + [("vid9", 1000)]))
    return gt_csv, pred_csv, label_map, exclusions


@pytest.mark.parametrize("seed", range(4))
def test_random_cases_equal_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    crashes = 0
    for case in range(60):
        case_dir = tmp_path / f"case{case}"
        case_dir.mkdir()
        gt_csv, pred_csv, label_map, exclusions = random_case(rng, case_dir)
        if not gt_csv.read_text():
            continue
        try:
            ref_map, ref_per_class = run_reference(pred_csv, label_map, gt_csv, exclusions)
        except ValueError as exc:  # the reference crashes on an inverted GT box it matches against
            assert "Invalid box data" in str(exc)
            with pytest.raises(DataError, match=r"gt.csv:\d+: inverted GT box"):
                frame_map(gt_csv, pred_csv, label_map, exclusions=exclusions)
            crashes += 1
            continue
        result = frame_map(gt_csv, pred_csv, label_map, exclusions=exclusions)
        assert same(result.map, ref_map), (case, result.map, ref_map)
        assert {result.label_map[c]: ap for c, ap in result.per_class_ap.items()}.keys() == ref_per_class.keys()
        for class_id, ap in result.per_class_ap.items():
            assert same(ap, ref_per_class[result.label_map[class_id]]), (case, class_id, ap)
    assert crashes < 5  # nearly all cases are evaluated, not crash-compared


def test_class_subset_equals_reference_custom_classes(tmp_path):
    rng = np.random.default_rng(123)
    for case in range(20):
        case_dir = tmp_path / f"case{case}"
        case_dir.mkdir()
        gt_csv, pred_csv, label_map, exclusions = random_case(rng, case_dir)
        ids = [int(line.split(":")[1]) for line in label_map.read_text().splitlines() if "id:" in line]
        subset = ids[: max(1, len(ids) // 2)]
        ref_map, ref_per_class = run_reference(pred_csv, label_map, gt_csv, exclusions, custom_classes=[0] + subset)
        result = frame_map(gt_csv, pred_csv, label_map, exclusions=exclusions, classes=subset)
        assert same(result.map, ref_map)
        for class_id, ap in result.per_class_ap.items():
            assert same(ap, ref_per_class[result.label_map[class_id]])


def test_max_per_frame_equals_reference_on_the_top_k_file(tmp_path):
    """Without score ties, `max_per_frame=K` equals the reference run on each keyframe's K best rows."""
    rng = np.random.default_rng(7)
    for case in range(10):
        case_dir = tmp_path / f"case{case}"
        case_dir.mkdir()
        gt_csv, pred_csv, label_map, _ = random_case(rng, case_dir)
        ids = {int(line.split(":")[1]) for line in label_map.read_text().splitlines() if "id:" in line}
        rows = [line.split(",") for line in pred_csv.read_text().splitlines()]
        rows = [r[:7] + [fmt(rng.random())] for r in rows if int(r[6]) in ids]  # distinct scores, known ids
        kept = []
        for key in dict.fromkeys((r[0], r[1]) for r in rows):
            kept += sorted((r for r in rows if (r[0], r[1]) == key), key=lambda r: -float(r[7]))[:5]
        pred_csv.write_text("".join(",".join(r) + "\n" for r in rows))
        top_csv = case_dir / "top.csv"
        top_csv.write_text("".join(",".join(r) + "\n" for r in sorted(kept, key=rows.index)))
        ref_map, _ = run_reference(top_csv, label_map, gt_csv)
        assert same(frame_map(gt_csv, pred_csv, label_map, max_per_frame=5).map, ref_map)


def test_gt_person_id_order_decides_equal_iou_ties_like_the_reference(tmp_path):
    """A detection with equal IoU to two GT boxes: the reference orders GT by descending 8th column."""
    (tmp_path / "labels.pbtxt").write_text('item {\n  name: "stand"\n  id: 1\n}\n')
    (tmp_path / "gt.csv").write_text("v,0902,0.25,0.0,1.0,1.0,1,2\nv,0902,0.0,0.0,0.75,1.0,1,5\n")
    (tmp_path / "pred.csv").write_text("v,0902,0.125,0.0,0.875,1.0,1,0.9\nv,0902,0.0,0.0,0.75,1.0,1,0.8\n")
    ref_map, _ = run_reference(tmp_path / "pred.csv", tmp_path / "labels.pbtxt", tmp_path / "gt.csv")
    assert ref_map == 0.5
    assert frame_map(tmp_path / "gt.csv", tmp_path / "pred.csv", tmp_path / "labels.pbtxt").map == 0.5
