"""Class subsets end to end: fine-tuning a 10-class checkpoint on 5 toy classes and evaluating with them.

Two routes to the same thing (issue 18's acceptance):
- the quick toy set's GT, restricted to 5 classes, written as a tracks CSV and imported with
  `sfdet data import tracks-csv --label-map` (the 5 classes with their original ids); training with
  `train.init=CHECKPOINT` rebuilds the head for the 5 classes, keeping their rows by name;
- `data.classes` with 5 names on the whole quick toy set: the Dataset, the head, validation and the
  checkpoint's label map use those classes with their ids, so `predict` writes the original ids and
  `sfdet eval --classes NAMES` evaluates the same classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from sfdet import cli
from sfdet.config import load_config
from sfdet.data import ava
from sfdet.models import build_model
from sfdet.models.checkpoint import model_alpha, save_sfdet_checkpoint
from sfdet.models.recipe import ClipRecipe
from test_annotations import write_tracks_csv
from test_train import SLOWFAST_TINY, TINY

FIVE = {2: "walk", 3: "run", 5: "crouch", 6: "wave_slow", 8: "swipe_down"}  # in the quick toy's train and val GT
QUICK = ["train.max_iters=2"]


def ten_class_checkpoint(toy: Path, path: Path) -> Path:
    """An sfdet checkpoint of the tiny SlowFast over the toy's 10 classes (random weights: only its form matters)."""
    cfg = load_config(SLOWFAST_TINY, [f"data.root={toy}", *TINY])
    label_map = ava.read_label_map(toy / "annotations" / "label_map.pbtxt")
    assert len(label_map) == 10
    cfg.model.num_classes = len(label_map)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return save_sfdet_checkpoint(path, model, label_map, "test", recipe=ClipRecipe.from_data(cfg.data, model_alpha(cfg.model)))


def _val_records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("kind") == "val"]


def test_fine_tune_a_10_class_checkpoint_on_5_imported_classes(quick_toy, tmp_path, capsys):
    ckpt = ten_class_checkpoint(quick_toy, tmp_path / "ten.pt")
    label_map = ava.read_label_map(quick_toy / "annotations" / "label_map.pbtxt")
    gt = pd.concat([ava.read_gt_csv(quick_toy / "annotations" / f"{s}.csv") for s in ("train", "val")])
    five_gt = gt[gt["action_id"].isin(list(FIVE))]
    write_tracks_csv(tmp_path / "tracks.csv", five_gt, label_map)
    ava.write_label_map(tmp_path / "five.pbtxt", FIVE)
    data = tmp_path / "data"
    assert cli.main(["data", "import", "tracks-csv", str(tmp_path / "tracks.csv"), "--videos",
                     str(quick_toy / "videos"), "--out", str(data), "--label-map", str(tmp_path / "five.pbtxt")]) == 0
    assert ava.read_label_map(data / "annotations" / "label_map.pbtxt") == FIVE  # ids kept
    assert cli.main(["data", "check", "--config", str(data / "data.yaml")]) == 0

    # The published-model recipe of the README: the architecture's config + the imported data section.
    (tmp_path / "mine.yaml").write_text(f"_base_: [{SLOWFAST_TINY}, {data / 'data.yaml'}]\n")
    run = tmp_path / "run"
    capsys.readouterr()
    assert cli.main(["train", "--config", str(tmp_path / "mine.yaml"), "--no-progress", f"output_dir={run}",
                     f"train.init={ckpt}", *TINY, *QUICK]) == 0
    out = capsys.readouterr().out
    assert "init: head rebuilt for 5 classes (checkpoint has 10); 5 matched by name kept their weights" in out
    saved = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert saved["label_map"] == FIVE and saved["model_config"]["num_classes"] == 5
    assert saved["model_state"]["head.proj.weight"].shape[0] == 5
    (val,) = _val_records(run)
    assert set(val["per_class_ap"]) <= set(FIVE.values()) and val["per_class_ap"]

    # Evaluate a prediction of the fine-tuned model with the subset, by name.
    val_video = sorted(pd.read_csv(data / "annotations" / "val.csv", header=None)[0].unique())[0]
    preds = tmp_path / "preds"
    assert cli.main(["predict", str(quick_toy / "videos" / f"{val_video}.mp4"), "--weights",
                     str(run / "checkpoints" / "last.pt"), "--boxes", str(_all_proposals(quick_toy, tmp_path)),
                     "--out", str(preds), "--precision", "fp32", "--no-progress"]) == 0
    predicted = ava.read_predictions_csv(preds / f"{val_video}.csv")
    assert set(predicted["action_id"]) == set(FIVE)  # the original ids
    capsys.readouterr()
    assert cli.main(["eval", "--gt", str(data / "annotations" / "val.csv"), "--pred", str(preds / f"{val_video}.csv"),
                     "--labelmap", str(quick_toy / "annotations" / "label_map.pbtxt"),
                     "--classes", ",".join(FIVE.values())]) == 0
    report = json.loads((preds / f"{val_video}_eval.json").read_text())
    assert sorted(c["id"] for c in report["classes"]) == list(FIVE)


def _all_proposals(toy: Path, tmp_path: Path) -> Path:
    path = tmp_path / "boxes.csv"
    ava.write_proposals_csv(path, pd.concat([ava.read_proposals(toy / "annotations" / f"{s}_predicted_boxes.csv")
                                             for s in ("train", "val")]))
    return path


def test_data_classes_trains_and_evaluates_5_of_10_classes_with_their_ids(quick_toy, tmp_path, capsys):
    ckpt = ten_class_checkpoint(quick_toy, tmp_path / "ten.pt")
    run = tmp_path / "run"
    names = list(FIVE.values())
    assert cli.main(["train", "--config", str(SLOWFAST_TINY), "--no-progress", f"data.root={quick_toy}",
                     f"output_dir={run}", f"data.classes=[{', '.join(names[:3])}, 6, 8]", f"train.init={ckpt}",
                     *TINY, *QUICK]) == 0
    out = capsys.readouterr().out
    assert "data.classes: training and evaluating 5 classes: 2 walk, 3 run, 5 crouch, 6 wave_slow, 8 swipe_down" in out
    assert "init: head rebuilt for 5 classes (checkpoint has 10); 5 matched by name kept their weights" in out
    saved = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert saved["label_map"] == FIVE and saved["model_config"]["num_classes"] == 5
    (val,) = _val_records(run)
    assert sorted(val["per_class_ap"]) == sorted(FIVE.values())  # val on the toy's proposals, the 5 classes

    preds = tmp_path / "preds"
    assert cli.main(["predict", str(quick_toy / "videos" / "toy_val_000.mp4"), "--weights",
                     str(run / "checkpoints" / "last.pt"), "--boxes",
                     str(quick_toy / "annotations" / "val_predicted_boxes.csv"), "--out", str(preds),
                     "--precision", "fp32", "--no-progress"]) == 0
    assert set(ava.read_predictions_csv(preds / "toy_val_000.csv")["action_id"]) == set(FIVE)
    capsys.readouterr()
    assert cli.main(["eval", "--gt", str(quick_toy / "annotations" / "val.csv"), "--pred", str(preds / "toy_val_000.csv"),
                     "--labelmap", str(quick_toy / "annotations" / "label_map.pbtxt"),
                     "--classes", "walk,3,crouch,wave_slow,8"]) == 0
    report = json.loads((preds / "toy_val_000_eval.json").read_text())
    assert sorted(c["id"] for c in report["classes"]) == list(FIVE)


def test_unknown_classes_are_one_line_with_the_closest(quick_toy, tmp_path, capsys):
    code = cli.main(["train", "--config", str(SLOWFAST_TINY), "--no-progress", f"data.root={quick_toy}",
                     f"output_dir={tmp_path / 'run'}", "data.classes=[walk, wave slow, 11]", *TINY, *QUICK])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sfdet train: error: config key 'data.classes': not in the label map "
                   f"{quick_toy / 'annotations' / 'label_map.pbtxt'} (10 classes): 'wave slow' (closest: "
                   f"'wave_slow' = 6); 11 (ids are 1..10; closest: 10 = 'clap')")


@pytest.mark.parametrize("classes", ["", "walk,,", "swipe down"])
def test_eval_classes_names_errors(quick_toy, tmp_path, capsys, classes):
    pred = tmp_path / "p.csv"
    pred.write_text("toy_val_000,1,0.1,0.1,0.5,0.5,2,0.9\n")
    code = cli.main(["eval", "--gt", str(quick_toy / "annotations" / "val.csv"), "--pred", str(pred),
                     "--labelmap", str(quick_toy / "annotations" / "label_map.pbtxt"), "--classes", classes])
    err = capsys.readouterr().err.strip()
    if classes == "walk,,":
        assert code == 0 and json.loads((tmp_path / "p_eval.json").read_text())["classes"][0]["id"] == 2
    elif classes == "":
        assert code == 2 and err == "sfdet eval: error: --classes '': no class given; list ids or names, e.g. --classes 1,2,3"
    else:
        assert code == 2 and "'swipe down' (closest: 'swipe_down' = 8" in err
