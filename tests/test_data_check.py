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
    assert lines[-1] == "ok: train 5 usable keyframes, val 3 usable keyframes"


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
