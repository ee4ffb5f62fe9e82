"""`sfdet demo --quick`: every stage runs, every artifact exists and is valid, re-runs resume.

One quick demo (module fixture, about 30 s on an idle 2-core machine) feeds most tests; the full
demo (accuracy target: frame-mAP >= 0.70 with the fine-tuned detector's boxes) is `slow`.
"""

from __future__ import annotations

import json
import shutil

import av
import torch
import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from sfdet.cli import main
from sfdet.data import ava
from sfdet.demo import STAGES, run_demo
from sfdet.errors import DataError
from sfdet.evaluation import frame_map

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE_BYTES = 300 * 1024


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "runs"
    lines: list[str] = []
    summary = run_demo(out, quick=True, log=lines.append)
    return out, summary, lines


def test_quick_demo_prints_every_stage_and_one_summary(demo):
    out, summary, lines = demo
    stage_lines = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] + "]" for line in stage_lines] == [f"[{k}/6]" for k in range(1, 7)]
    assert lines[-1] == summary.text()
    text = summary.text()
    assert f"{100 * summary.frame_map:.2f} with the fine-tuned detector's boxes" in text
    assert f"{100 * summary.frame_map_simulated:.2f} with the simulated detector's proposals" in text
    for name in summary.per_class_ap:  # the per-class table names every class
        assert f" {name} " in text
    assert (out / "summary.txt").read_text() == text + "\n"


def test_quick_demo_csvs_evaluate_to_the_reported_map(demo, capsys):
    out, summary, _ = demo
    annotations = out / "data" / "annotations"
    for boxes, expected in (("detector", summary.frame_map), ("simulated", summary.frame_map_simulated)):
        csv = out / "eval" / boxes / "val_predictions.csv"
        predictions = ava.read_predictions_csv(csv)
        assert len(predictions) > 0 and predictions["video_id"].str.startswith("toy_val_").all()
        result = frame_map(annotations / "val.csv", csv, annotations / "label_map.pbtxt",
                           exclusions=annotations / "val_excluded_timestamps.csv")
        assert result.map == expected
    code = main(["eval", "--gt", str(annotations / "val.csv"), "--pred", str(out / "eval/detector/val_predictions.csv"),
                 "--labelmap", str(annotations / "label_map.pbtxt"),
                 "--exclusions", str(annotations / "val_excluded_timestamps.csv"), "--out", str(out / "cli_eval")])
    assert code == 0
    assert f"mAP@0.5IOU=\t{summary.frame_map}" in capsys.readouterr().out
    # The detector's proposals cover both splits, in the AVA predicted-boxes layout.
    for split in ("train", "val"):
        proposals = ava.read_proposals(out / "proposals" / f"{split}.csv")
        assert set(proposals["video_id"]) <= {p.stem for p in (out / "data" / "videos").glob(f"toy_{split}_*.mp4")}


def test_quick_demo_rendered_video_decodes(demo):
    out, summary, _ = demo
    rendered = summary.artifacts["rendered video"]
    assert rendered == out / "predict" / "toy_val_000.pred.mp4"
    with av.open(str(rendered)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(out / "data" / "videos" / "toy_val_000.mp4")) as container:
        source_frames = sum(1 for _ in container.decode(video=0))
    assert len(frames) == source_frames == 8 * 15  # quick preset: 8 s at 15 fps, every frame rendered
    assert frames[0].shape == (180, 320, 3)


def test_quick_demo_figures_are_small_pngs(demo):
    _, summary, _ = demo
    figures = [summary.artifacts[name] for name in ("frame", "per-class AP / PR plot", "training curves")]
    for path in figures:
        assert path.read_bytes()[:8] == PNG_MAGIC, path
        assert path.stat().st_size < MAX_FIGURE_BYTES, path
        with Image.open(path) as image:
            image.verify()
        assert matplotlib.image.imread(path).ndim == 3
    with Image.open(summary.artifacts["frame"]) as frame:
        assert frame.size == (320, 180)  # one frame of the rendered video, at its size
    rendered_frames = []
    with av.open(str(summary.artifacts["rendered video"])) as container:
        rendered_frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frame = np.asarray(Image.open(summary.artifacts["frame"]).convert("RGB"))
    assert min(np.abs(frame.astype(int) - f.astype(int)).mean() for f in rendered_frames) < 3.0


def test_rerun_skips_finished_stages_and_reports_the_same(demo):
    out, summary, _ = demo
    lines: list[str] = []
    again = run_demo(out, quick=True, log=lines.append)
    skipped = [line for line in lines if line.endswith("done in a previous run, skipped")]
    assert len(skipped) == len(STAGES)
    assert (again.frame_map, again.frame_map_simulated, again.table) == \
        (summary.frame_map, summary.frame_map_simulated, summary.table)


def test_rerun_redoes_a_stage_whose_outputs_are_gone(demo):
    out, summary, _ = demo
    shutil.rmtree(out / "predict")
    lines: list[str] = []
    run_demo(out, quick=True, log=lines.append)
    assert sum(line.endswith("skipped") for line in lines) == len(STAGES) - 1
    assert any(line.startswith("[6/6] predict: sfdet predict") for line in lines)
    assert summary.artifacts["rendered video"].is_file()


def test_other_settings_in_the_same_folder_are_refused(demo):
    out, _, _ = demo
    with pytest.raises(DataError, match="other settings.*--overwrite"):
        run_demo(out, quick=True, seed=1, log=lambda line: None)


def test_cli_refuses_a_folder_that_is_not_a_demo_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sfdet demo: error: {tmp_path} is not empty and holds no demo run; choose another --out "
                   "or pass --overwrite"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_full_demo_reaches_the_accuracy_target(tmp_path):
    summary = run_demo(tmp_path / "demo")
    assert summary.frame_map >= 0.70
    assert summary.detector_ap is not None and summary.detector_ap >= 0.90


# --------------------------------------------------------------------------------------------------
# The budget planner (`sfdet demo --budget MINUTES`): pure planning, the probe with a fake clock, and the
# demo's loop with fake stages and a fake clock (no training: milliseconds).

import sfdet.demo as demo_module  # noqa: E402
from sfdet.demo import (  # noqa: E402
    LOOP_OVERHEAD,
    REFERENCE_PROBE_SECONDS,
    REFERENCE_STAGE_SECONDS,
    REFERENCE_TRAIN_OVERHEAD_SECONDS,
    DemoPreset,
    Recipe,
    Stage,
    expected_map,
    plan_budget,
    probe_seconds_per_iteration,
)
from sfdet.config import load_config  # noqa: E402

DEFAULT_CROP = load_config(demo_module.DEFAULT_CONFIG).data.train_crop


def test_plan_budget_takes_the_most_epochs_that_fit():
    others = {"toy data": 100.0, "detector": 300.0, "proposals": 50.0, "evaluation": 40.0, "predict": 10.0}
    plan = plan_budget(1300.0, 1.0, 100, others, 60.0, max_epochs=13, table=((4, 0.7), (8, 0.8)))
    epoch_s = LOOP_OVERHEAD * 100
    assert plan.epochs == int((0.95 * 1300 - 500 - 60) // epoch_s) == 5
    assert plan.stage_seconds["action model"] == pytest.approx(60 + 5 * epoch_s)
    assert list(plan.stage_seconds) == [s.name for s in STAGES]
    assert plan.fits and plan.total_s <= 1300
    assert plan.expected_map == pytest.approx(0.725)
    text = plan.text()
    assert "trains 5 epochs of 13 (500 iterations" in text and "expected action frame-mAP" in text and "72.5" in text
    # A generous budget stops at the preset's epochs; a tight one trains 1 epoch and says it will not fit.
    assert plan_budget(36000.0, 1.0, 100, others, 60.0, max_epochs=13).epochs == 13
    tight = plan_budget(600.0, 1.0, 100, others, 60.0, max_epochs=13, table=((4, 0.7),))
    assert tight.epochs == 1 and not tight.fits
    assert "warning: even 1 epoch takes" in tight.text() and "not measured at 1 epochs" in tight.text()


def test_expected_map_interpolates_only_inside_the_measured_range():
    table = ((13, 0.86), (6, 0.80), (9, 0.83))
    assert expected_map(6, table) == pytest.approx(0.80)
    assert expected_map(11, table) == pytest.approx(0.83 + 0.03 * 2 / 4)
    assert expected_map(13, table) == pytest.approx(0.86)
    assert expected_map(5, table) is None and expected_map(14, table) is None
    assert expected_map(13, ((13, 0.84),)) == pytest.approx(0.84) and expected_map(12, ((13, 0.84),)) is None


def test_probe_times_training_steps_with_the_given_clock():
    cfg = load_config(demo_module.DEFAULT_CONFIG, ["data.train_crop=32", "train.batch_size=2", "train.precision=fp32"])
    ticks = iter([0.0, 10.0, 11.0, 20.0, 25.0, 30.0, 32.0])  # warm-up start; then 3 steps of 1, 5 and 2 s
    assert probe_seconds_per_iteration(cfg, torch.device("cpu"), steps=3, clock=lambda: next(ticks)) == 2.0


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_stages(clock: FakeClock, seconds: dict[str, float], seen: dict, interrupt_training: list[bool]):
    """The demo's six stages, each only advancing the clock and touching its outputs."""
    def runner(stage):
        def run(ctx):
            clock.now += seconds[stage.name]
            if stage.name == "action model":
                cfg = ctx.config()
                seen.setdefault("epochs", []).append((cfg.train.epochs, cfg.data.train_crop))
                ctx.paths.train.mkdir(parents=True, exist_ok=True)
                if interrupt_training and interrupt_training.pop():
                    raise KeyboardInterrupt
            done = ctx.paths.root / stage.folder / "done"
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text("x")
        return run

    def outputs(stage):
        return lambda ctx: [ctx.paths.root / stage.folder / "done"]

    return tuple(Stage(s.name, s.folder, s.what, runner(s), outputs(s)) for s in STAGES)


def fake_summarize(ctx, quick, seconds):
    return demo_module.DemoSummary(ctx.paths.root, quick, ctx.seed, None, 0.8, {}, 0.0, 0.0, "", {}, {},
                                   {"x": ctx.paths.root}, seconds)


def test_budget_demo_plans_up_front_then_again_with_the_real_stage_times(tmp_path, monkeypatch):
    clock, seen = FakeClock(), {}
    took = {"toy data": 100.0, "detector": 200.0, "proposals": 50.0, "action model": 500.0, "evaluation": 40.0,
            "predict": 10.0}
    monkeypatch.setattr(demo_module, "STAGES", fake_stages(clock, took, seen, [True]))
    monkeypatch.setattr(demo_module, "summarize", fake_summarize)
    # A preset with a cheaper second recipe (96-px crops, 0.5x the step) for CPUs where 13 epochs do not fit.
    cheaper = Recipe("crop96", ("data.train_crop=96",), 13, ((6, 0.72),))
    monkeypatch.setattr(demo_module, "FULL", DemoPreset(
        detector_options=demo_module.FULL.detector_options, overrides=demo_module.FULL.overrides,
        recipes=(demo_module.FULL.recipes[0], cheaper)))
    lines: list[str] = []
    probe_calls = []
    slower = 2.0  # a CPU 2x slower than the reference one: the reference stage times scale by 2

    def probe(cfg, device):
        probe_calls.append(cfg.data.train_crop)
        return slower * REFERENCE_PROBE_SECONDS * (0.5 if cfg.data.train_crop == 96 else 1.0)

    with pytest.raises(KeyboardInterrupt):  # interrupted during training
        run_demo(tmp_path / "demo", budget_minutes=20, probe=probe, clock=clock, log=lines.append)
    epoch_s = slower * REFERENCE_PROBE_SECONDS * 0.5 * LOOP_OVERHEAD * 102
    others = slower * sum(REFERENCE_STAGE_SECONDS.values())
    overhead = slower * REFERENCE_TRAIN_OVERHEAD_SECONDS
    up_front = int((0.95 * 1200 - others - overhead) // epoch_s)
    later = slower * (REFERENCE_STAGE_SECONDS["evaluation"] + REFERENCE_STAGE_SECONDS["predict"])
    again = int((0.95 * 1200 - 100 - 200 - 50 - later - overhead) // epoch_s)
    assert 1 <= up_front < again < 13
    # 13 epochs of the default recipe do not fit: the cheaper one, as many epochs as fit.
    assert lines[0].startswith(f"plan: budget 20 min: the action model trains {up_front} epoch")
    assert "recipe 'crop96' (data.train_crop=96)" in lines[0]
    replanned = [line for line in lines if line.startswith("plan, again")]
    assert len(replanned) == 1 and f"trains {again} epochs of 13" in replanned[0]
    assert "toy data 100 s (took), detector 200 s (took), proposals 50 s (took)" in replanned[0]
    assert seen["epochs"] == [(again, 96)] and probe_calls == [DEFAULT_CROP, 96]  # each recipe probed once
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["plan"] == {"epochs": again, "recipe": "crop96"}
    # The resumed run keeps the interrupted training's recipe and schedule, whatever the new budget says.
    lines.clear()
    summary = run_demo(tmp_path / "demo", budget_minutes=5, probe=lambda cfg, device: 100.0, clock=clock,
                       log=lines.append)
    assert seen["epochs"] == [(again, 96), (again, 96)]
    assert not any(line.startswith("plan") for line in lines)
    assert set(summary.stage_seconds) == set(took)


def test_full_demo_fits_the_budget_on_the_reference_cpu():
    """At the reference CPU's speed (2-core AMD EPYC, fp32, torch limited to AVX2), the full preset's
    whole schedule fits 20 minutes: the first-run promise of the README."""
    recipe = demo_module.FULL.recipes[0]
    plan = plan_budget(1200.0, REFERENCE_PROBE_SECONDS, 102, dict(REFERENCE_STAGE_SECONDS),
                                   REFERENCE_TRAIN_OVERHEAD_SECONDS, recipe.max_epochs, (), recipe.expected_map,
                                   recipe)
    assert plan.epochs == recipe.max_epochs == 13 and plan.fits and plan.expected_map >= 0.80


def test_budget_demo_keeps_the_default_recipe_where_it_fits(tmp_path, monkeypatch):
    clock, seen = FakeClock(), {}
    monkeypatch.setattr(demo_module, "STAGES", fake_stages(clock, dict.fromkeys([s.name for s in STAGES], 1.0),
                                                           seen, []))
    monkeypatch.setattr(demo_module, "summarize", fake_summarize)
    lines: list[str] = []
    run_demo(tmp_path / "demo", budget_minutes=20, probe=lambda cfg, device: 0.3, clock=clock, log=lines.append)
    assert seen["epochs"] == [(13, DEFAULT_CROP)]
    expected = 100 * expected_map(13, demo_module.FULL.recipes[0].expected_map)
    assert f"expected action frame-mAP with the detector's boxes ~{expected:.1f}" in lines[0]
    assert "recipe" not in lines[0]


def test_no_budget_keeps_the_presets_epochs(tmp_path, monkeypatch):
    clock, seen = FakeClock(), {}
    monkeypatch.setattr(demo_module, "STAGES", fake_stages(clock, dict.fromkeys(
        [s.name for s in STAGES], 1.0), seen, []))
    monkeypatch.setattr(demo_module, "summarize", fake_summarize)
    lines: list[str] = []
    run_demo(tmp_path / "demo", clock=clock, log=lines.append)
    assert seen["epochs"] == [(13, DEFAULT_CROP)] and not any(line.startswith("plan") for line in lines)
    with pytest.raises(Exception, match="budget"):
        run_demo(tmp_path / "other", budget_minutes=0, clock=clock, log=lines.append)


def test_cli_budget_flag(monkeypatch):
    calls = []
    monkeypatch.setattr(demo_module, "run_demo", lambda *a, **k: calls.append(k["budget_minutes"]))
    assert main(["demo", "--out", "x"]) == 0 and main(["demo", "--quick", "--out", "x"]) == 0
    assert main(["demo", "--budget", "30", "--out", "x"]) == 0 and main(["demo", "--budget", "0", "--out", "x"]) == 0
    assert calls == [20.0, None, 30.0, None]
