"""`sfdet demo --quick`: every stage runs, every artifact exists and is valid, re-runs resume.

One quick demo (module fixture, about 30 s on an idle 2-core machine) feeds most tests; the full
demo (accuracy target: frame-mAP >= 0.70 with the fine-tuned detector's boxes) is `slow`.
"""

from __future__ import annotations

import shutil

import av
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
