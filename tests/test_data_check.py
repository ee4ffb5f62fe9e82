"""`sfdet data check`: the report on a tiny dataset, and a clear non-zero exit when nothing lines up."""

from __future__ import annotations

import pandas as pd
import pytest

from sfdet import cli
from sfdet.data import ava
from test_dataset import make_tiny_dataset


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_check")
    make_tiny_dataset(root)
    return root


def test_report_on_a_tiny_dataset(tiny_root, capsys):
    assert cli.main(["data", "check", str(tiny_root)]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    assert "label map" in out and "3 classes" in out
    # train: train_a, train_b and ghost have GT at 1, 2, 3 s; ghost has no video; train_b 3 s is excluded
    assert any(line.startswith("GT ") and "18 rows, 9 keyframes, 9 person boxes (1.00 per keyframe, max 1), 3 videos" in line
               for line in lines)
    assert f"videos in {tiny_root / 'videos'}: 2 found, 1 missing, 0 unreadable" in lines
    assert "missing: ghost" in lines
    assert "excluded keyframes: 1 (1 of them have GT)" in lines
    assert "keyframes with GT and a readable video: 5 of 9" in lines
    assert "keyframes with GT and a readable video: 3 of 3" in lines  # val
    # the class histogram lists the class without GT
    assert any(line.split()[:3] == ["5", "jump", "0"] and line.endswith("<- no GT") for line in lines)
    assert any(line.split()[:3] == ["1", "stand", "9"] for line in lines)
    # proposals: one train GT box of 9 covered (IoU 0.95); every val box covered
    assert any("GT recall 0.111 at IoU 0.5, 0.111 at IoU 0.9" in line for line in lines)
    assert any("2 boxes, 2 with score >= 0.8; GT recall" in line for line in lines)
    assert any("4 boxes, 3 with score >= 0.8; GT recall 1.000 at IoU 0.5, 1.000 at IoU 0.9" in line for line in lines)
    assert any(line.endswith("GT recall 0.111 at IoU 0.5, 0.111 at IoU 0.9; keyframes with a GT box no proposal covers "
                             "at IoU 0.5: 7 of 8") for line in lines)
    assert lines[-1] == "ok: train 5 usable keyframes, val 3 usable keyframes (3 warnings above)"
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings == [
        "warning: train: 3 of 3 classes have fewer than 10 training instances (GT boxes): 1 stand (9), 2 wave (9), "
        "5 jump (0); a class needs tens of examples to be learnt: annotate more of them, or train without them "
        "(list the classes to keep in data.classes)",
        "warning: train: 7 of 8 keyframes with GT (88%) have a GT box that no proposal with score >= 0.8 covers at "
        "IoU 0.5 (e.g. ghost at 1 s); those persons train on their GT box only, and people like them are missed at "
        "test time: check that the proposals are of these videos and timestamps, lower data.detection_score_thresh, "
        "or fine-tune a person detector (`sfdet train-detector`) and rerun `sfdet proposals`",
        "warning: val: 1 of 3 classes has no GT in val: 5 jump; their AP cannot be measured (the val mAP leaves them "
        "out): annotate them in val videos, or split the videos again (`sfdet data import --val-fraction / --seed`)",
    ]


def test_config_file_and_overrides(tiny_root, capsys):
    code = cli.main(["data", "check", "--config", "configs/toy/data.yaml", f"data.root={tiny_root}", "data.val_proposals="])
    assert code == 0
    out = capsys.readouterr().out
    assert "proposals: not configured" in out


def test_wrong_time_offset_lines_up_nothing(tiny_root, capsys):
    assert cli.main(["data", "check", str(tiny_root), "data.time_offset=900"]) == 2
    captured = capsys.readouterr()
    assert "keyframes outside their video's duration: 5 (e.g. train_a at 1 s = video time -899 s): check data.time_offset" \
        in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        "sfdet data: error: nothing lines up: no keyframe has both GT and a readable video inside its duration; "
        "check data.root, data.video_dir / data.frames_dir and data.time_offset"
    )


def test_pixel_boxes_are_outside_the_frame(tmp_path, capsys):
    make_tiny_dataset(tmp_path)
    gt = ava.read_gt_csv(tmp_path / "annotations" / "train.csv")
    gt[ava.BOX_COLUMNS] = gt[ava.BOX_COLUMNS] * [96, 64, 96, 64]  # pixels instead of [0, 1]
    for split in ("train", "val"):
        ava.write_gt_csv(tmp_path / "annotations" / f"{split}.csv", gt)
    assert cli.main(["data", "check", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "GT boxes outside the frame: 9 of 9" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith(
        "sfdet data: error: nothing lines up: every GT box is outside the frame; boxes must be normalised"
    )


def test_two_roots_is_a_usage_error(capsys):
    assert cli.main(["data", "check", "a", "b"]) == 2
    assert "give one dataset ROOT, got 2: a b" in capsys.readouterr().err


def test_missing_label_map_is_one_line(tmp_path, capsys):
    pd.DataFrame().to_csv(tmp_path / "x.csv")
    assert cli.main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sfdet data: error: {tmp_path / 'annotations' / 'label_map.pbtxt'}: no such file"


# ------------------------------------------------------------------- warnings that prevent silent failures


def _write_counts(root, train_counts: dict[int, int], val_counts: dict[int, int]) -> None:
    """GT of train_a / val_a with `n` boxes of class c (one person box per row, distinct boxes), at 1-3 s."""
    for split, video, counts in (("train", "train_a", train_counts), ("val", "val_a", val_counts)):
        rows = []
        for class_id, n in counts.items():
            for k in range(n):
                x = 0.01 + 0.0005 * k
                rows.append((video, 1 + k % 3, x, 0.1, x + 0.3, 0.9, class_id, k))
        ava.write_gt_csv(tiny_path(root, f"{split}.csv"), pd.DataFrame(rows, columns=ava.GT_COLUMNS))


def tiny_path(root, name):
    return root / "annotations" / name


def _warnings(out: str) -> list[str]:
    return [line[len("warning: "):] for line in out.splitlines() if line.startswith("warning: ")]


def test_imbalance_and_few_instances_and_classes_absent_from_val(tmp_path, capsys):
    make_tiny_dataset(tmp_path)
    _write_counts(tmp_path, {1: 600, 2: 11, 5: 5}, {1: 3, 2: 0, 5: 0})
    assert cli.main(["data", "check", str(tmp_path), "data.train_proposals=", "data.val_proposals="]) == 0
    warnings = _warnings(capsys.readouterr().out)
    assert warnings[0].startswith("train: 1 of 3 classes has fewer than 10 training instances (GT boxes): 5 jump (5);")
    assert warnings[1] == (
        "train: class imbalance 120:1 (most: 1 stand 600 instances, fewest: 5 jump 5), above 50:1; rare classes "
        "get few gradients and may never score high: annotate more of the rare classes, or leave them out "
        "(data.classes)")
    assert warnings[2].startswith("val: 2 of 3 classes have no GT in val: 2 wave, 5 jump; their AP cannot be measured")
    assert len(warnings) == 3  # no proposals configured: no coverage warning


def test_a_balanced_set_with_covering_proposals_has_no_warning(tmp_path, capsys):
    make_tiny_dataset(tmp_path)
    _write_counts(tmp_path, {1: 12, 2: 12, 5: 12}, {1: 1, 2: 1, 5: 1})
    for split in ("train", "val"):
        gt = ava.read_gt_csv(tiny_path(tmp_path, f"{split}.csv"))
        proposals = gt.drop_duplicates(["video_id", "timestamp", *ava.BOX_COLUMNS]).assign(score=0.9)
        ava.write_proposals_csv(tiny_path(tmp_path, f"{split}_predicted_boxes.csv"), proposals[ava.PROPOSAL_COLUMNS])
    assert cli.main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert _warnings(out) == []
    assert out.strip().splitlines()[-1] == "ok: train 3 usable keyframes, val 1 usable keyframes"


def test_check_with_a_class_subset(tiny_root, capsys):
    assert cli.main(["data", "check", str(tiny_root), "data.classes=[wave]"]) == 0
    out = capsys.readouterr().out
    assert "label map" in out and "3 classes; data.classes keeps 1: 2 wave" in out
    assert "9 GT rows of classes data.classes leaves out: dropped (0 person boxes have no class left and go with them)" \
        in out
    assert "jump" not in out and "val: " not in "".join(_warnings(out))
    assert cli.main(["data", "check", str(tiny_root), "data.classes=[wave, jmup, 7]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sfdet data: error: config key 'data.classes': not in the label map "
                   f"{tiny_root / 'annotations' / 'label_map.pbtxt'} (3 classes): 'jmup' (closest: 'jump' = 5); "
                   f"7 (ids are 1..5; closest: 5 = 'jump')")
