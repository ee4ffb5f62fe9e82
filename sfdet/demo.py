"""`sfdet demo`: the whole story offline, in one command, from the library functions of each stage.

Why: the README's first command must show, on a fresh machine with no network, that every part of
sfdet works together and what it is worth: a person detector fine-tuned on the synthetic
AVA-format dataset, proposals made with it, a SlowFast trained on them, its frame-mAP on val with
the detector's own boxes (and, for comparison, with the dataset's simulated proposals), and a
rendered prediction video.

Stages (each skipped on a re-run when its outputs are complete, so an interrupted demo resumes):
    1 toy data        `sfdet.data.toy.generate_toy_dataset`              -> OUT/data/
    2 detector        `sfdet.detection.train_detector.train_detector`    -> OUT/detector/detector.pt
    3 proposals       the detector over the train and val keyframes      -> OUT/proposals/{train,val}.csv
    4 action model    `sfdet.engine.trainer.train` (slowfast_tiny.yaml)  -> OUT/train/
    5 evaluation      `sfdet predict` over the val videos with each box set, `frame_map` of the CSVs
                                                                         -> OUT/eval/{detector,simulated}/
    6 predict         `sfdet predict` with the live detector, rendered   -> OUT/predict/<video>.pred.mp4
then figures (OUT/figures/) and the summary (OUT/summary.txt).

`quick=True` runs the same story on the toy generator's quick preset with a handful of
iterations per model (the test suite's smoke run: no accuracy target).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from sfdet.errors import ConfigError, DataError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "toy" / "slowfast_tiny.yaml"
STATE_NAME = "demo.json"
SUMMARY_NAME = "summary.txt"
# Everything the demo writes under OUT (and all that --overwrite removes: never a user's other files).
OUTPUT_ENTRIES = ("data", "detector", "proposals", "train", "eval", "predict", "figures", STATE_NAME, SUMMARY_NAME)
# The val boxes frame-mAP is measured with: the fine-tuned detector's proposals, the toy set's simulated ones.
BOX_SOURCES = {"detector": "fine-tuned detector", "simulated": "simulated detector"}


@dataclass(frozen=True)
class DemoPreset:
    """How much work each stage does; the full demo takes every component's own defaults but the epochs."""

    detector_options: dict = field(default_factory=dict)  # `DetectorTrainOptions` fields
    proposal_score_thresh: float = 0.05  # proposals CSVs keep boxes >= this (`sfdet proposals`' default); the
    # action model's config cuts again (data.detection_score_thresh)
    overrides: tuple[str, ...] = ()  # dotted overrides of the action model's config


# 13 of the toy config's 15 epochs: with the detector stages, 15 would pass the 20-minute budget on 2 cores.
FULL = DemoPreset(overrides=("train.epochs=13",))
# A smoke run of every stage. A detector this briefly trained scores its boxes low: every box it finds is kept.
QUICK = DemoPreset(
    detector_options={"epochs": 1.0, "batch_size": 4},
    proposal_score_thresh=0.0,
    overrides=("data.detection_score_thresh=0.0", "train.epochs=2", "train.max_iters=4", "train.batch_size=4",
               "train.val_batch_size=4", "train.num_workers=0", "train.log_every=1", "train.tensorboard=false"),
)


@dataclass
class DemoPaths:
    """Where every stage writes, under the demo's output folder."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def detector(self) -> Path:
        return self.root / "detector" / "detector.pt"

    def proposals(self, split: str) -> Path:
        return self.root / "proposals" / f"{split}.csv"

    def simulated_proposals(self, split: str) -> Path:
        return self.data / "annotations" / f"{split}_predicted_boxes.csv"

    @property
    def train(self) -> Path:
        return self.root / "train"

    def eval_dir(self, boxes: str) -> Path:
        return self.root / "eval" / boxes

    def predictions(self, boxes: str) -> Path:
        """The val predictions CSV (all val videos) made with `boxes` ("detector" or "simulated")."""
        return self.eval_dir(boxes) / "val_predictions.csv"

    @property
    def predict(self) -> Path:
        return self.root / "predict"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


@dataclass
class DemoSummary:
    """What the demo measured and where its outputs are; `text()` is the summary it prints."""

    out_dir: Path
    quick: bool
    seed: int
    detector_ap: float | None  # person AP@0.5 on val (VOC all-points)
    score_thresh: float  # the action model's cut on proposal scores (data.detection_score_thresh)
    proposal_recall: dict[str, float]  # recall@0.5 of the val GT persons by the boxes >= score_thresh, per box source
    frame_map: float  # action frame-mAP@0.5 on val with the fine-tuned detector's boxes
    frame_map_simulated: float  # ... with the simulated detector's proposals
    table: str  # per-class AP (%) with each box source
    per_class_ap: dict[str, float]  # class name -> AP (detector boxes)
    per_class_ap_simulated: dict[str, float]
    artifacts: dict[str, Path]
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"

        loss = self.frame_map_simulated - self.frame_map
        lines = [
            f"sfdet demo{' --quick' if self.quick else ''} (seed {self.seed}): {self.out_dir}",
            f"  person detector       AP@0.5 {pct(self.detector_ap)} on val (fine-tuned on the train split's boxes)",
            f"  val person recall     IoU 0.5, boxes scoring >= {self.score_thresh:g}: "
            + ", ".join(f"{name} {pct(r)}" for name, r in self.proposal_recall.items()),
            f"  action frame-mAP@0.5  {pct(self.frame_map)} with the fine-tuned detector's boxes",
            f"                        {pct(self.frame_map_simulated)} with the simulated detector's proposals "
            f"(the fine-tuned detector {'loses' if loss >= 0 else 'gains'} {100 * abs(loss):.2f} points)",
            "",
            "Per-class AP@0.5 (%) on val, by the boxes the action model scored:",
            self.table,
            "",
        ]
        width = max(len(name) for name in self.artifacts)
        lines += [f"  {name:<{width}}  {path}" for name, path in self.artifacts.items()]
        if self.stage_seconds:
            lines.append("  time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.stage_seconds.items())
                         + f" (total {sum(self.stage_seconds.values()):.0f} s)")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The run's state: which stages are finished (resume), with which settings


class DemoState:
    """`OUT/demo.json`: the settings of the run and the seconds each finished stage took."""

    def __init__(self, root: Path, quick: bool, seed: int, config: Path):
        self.path = root / STATE_NAME
        self.settings = {"quick": quick, "seed": seed, "config": str(config)}
        self.finished: dict[str, float] = {}
        if self.path.is_file():
            try:
                stored = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                stored = {}
            if stored.get("settings", self.settings) != self.settings:
                raise DataError(f"{root} holds a demo run with other settings ({stored['settings']}); "
                                "pass --overwrite to start over or choose another --out")
            self.finished = dict(stored.get("finished", {}))

    def done(self, stage: str) -> bool:
        return stage in self.finished

    def forget(self, stages: list[str]) -> None:
        """These stages must run again (their inputs are about to change)."""
        for stage in stages:
            self.finished.pop(stage, None)
        self._write()

    def finish(self, stage: str, seconds: float) -> None:
        self.finished[stage] = round(seconds, 1)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "finished": self.finished}, indent=2) + "\n",
                       encoding="utf-8")
        tmp.replace(self.path)


def _prepare_out_dir(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a directory; choose another --out")
    if root.is_dir() and any(root.iterdir()) and not (root / STATE_NAME).is_file() and not overwrite:
        raise DataError(f"{root} is not empty and holds no demo run; choose another --out or pass --overwrite")
    if overwrite:
        for name in OUTPUT_ENTRIES:
            _remove(root / name)
    root.mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# --------------------------------------------------------------------------------------------------
# The stages


@dataclass
class DemoContext:
    """What every stage needs: where to write, how much to do, the resolved config, the device."""

    paths: DemoPaths
    quick: bool
    seed: int
    config_path: Path
    device: torch.device
    log: Callable[[str], None]

    @property
    def preset(self) -> DemoPreset:
        return QUICK if self.quick else FULL

    def config(self):
        """The action model's config, pointed at the demo's data, detector proposals and run folder."""
        from sfdet.config import load_config

        overrides = [
            f"data.root={self.paths.data}",
            f"data.train_proposals={self.paths.proposals('train').resolve()}",
            f"data.val_proposals={self.paths.proposals('val').resolve()}",
            f"output_dir={self.paths.train}",
            f"seed={self.seed}",
            f"train.device={self.device.type}",
            *self.preset.overrides,
        ]
        return load_config(self.config_path, overrides)

    @property
    def weights(self) -> Path:
        """The action model's final weights (no checkpoint selection on val: val measures)."""
        from sfdet.engine.checkpointing import LAST_NAME
        from sfdet.engine.trainer import CHECKPOINT_DIR

        return self.paths.train / CHECKPOINT_DIR / LAST_NAME


def make_dataset(ctx: DemoContext) -> None:
    from sfdet.toy import generate_toy_dataset

    # overwrite: an interrupted generation leaves a partial dataset behind; make it again.
    generate_toy_dataset(ctx.paths.data, seed=ctx.seed, quick=ctx.quick, overwrite=True, progress=True)


def train_person_detector(ctx: DemoContext) -> None:
    from sfdet.detection.train_detector import DetectorTrainOptions, train_detector

    options = DetectorTrainOptions(**ctx.preset.detector_options, seed=ctx.seed, device=str(ctx.device))
    result = train_detector(ctx.config().data, ctx.paths.detector, options, print_line=ctx.log)
    ap = "not measured" if result.person_ap is None else f"{100 * result.person_ap:.2f}"
    ctx.log(f"      person AP@0.5 on val {ap} after {result.iterations} iterations ({result.seconds:.0f} s)")


def write_detector_proposals(ctx: DemoContext) -> None:
    from sfdet.data import ava
    from sfdet.detection.proposals import make_proposals
    from sfdet.persons import build_person_detector

    cfg = ctx.config().data
    detector = build_person_detector(ctx.paths.detector, score_threshold=ctx.preset.proposal_score_thresh,
                                     device=ctx.device)
    for split in ("train", "val"):
        result = make_proposals(cfg, split, detector)
        ava.write_proposals_csv(ctx.paths.proposals(split), result.proposals)
        ctx.log(f"      {split}: {len(result.proposals)} boxes on {result.detected} keyframes, GT person recall "
                + ", ".join(f"{r:.3f} at IoU {iou:g}" for iou, r in result.recall.items()))


def train_action_model(ctx: DemoContext) -> None:
    from sfdet.engine.trainer import train

    # The trainer resumes from its last checkpoint by itself when a previous demo was interrupted.
    train(ctx.config(), progress=True, log=ctx.log)


def val_videos(ctx: DemoContext) -> list[Path]:
    """The val split's videos, in GT order."""
    from sfdet.data import ava
    from sfdet.data.dataset import find_video

    cfg = ctx.config().data
    gt_path, _, _ = cfg.split_files("val")
    video_ids = list(dict.fromkeys(ava.read_gt_csv(gt_path)["video_id"].astype(str)))
    videos = [find_video(cfg, video_id) for video_id in video_ids]
    missing = [v for v, path in zip(video_ids, videos) if path is None]
    if missing or not videos:
        raise DataError(f"{cfg.path(cfg.video_dir)}: val video(s) {', '.join(missing) or '(none)'} not found; "
                        "re-run the demo with --overwrite")
    return videos


def predict_val_videos(ctx: DemoContext, boxes: str) -> Path:
    """`sfdet predict` over every val video with the `boxes` proposals; their CSVs joined into one."""
    from sfdet.persons import build_person_detector
    from sfdet.predict.actions import load_action_predictor
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    cfg = ctx.config().data
    proposals = ctx.paths.proposals("val") if boxes == "detector" else ctx.paths.simulated_proposals("val")
    videos = val_videos(ctx)
    predictor = load_action_predictor(str(ctx.weights), ctx.device)
    detector = build_person_detector(boxes_path=proposals, score_threshold=cfg.detection_score_thresh)
    per_video = ctx.paths.eval_dir(boxes) / "videos"
    results = predict_videos(videos, predictor, detector, PredictOptions(), out_dir=per_video, resume=True)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise DataError(f"sfdet predict failed on {failed[0].video}: {failed[0].error}")
    out = ctx.paths.predictions(boxes)
    part = out.with_name(out.name + ".part")
    part.write_text("".join((per_video / f"{path.stem}.csv").read_text() for path in videos))
    part.replace(out)
    return out


def evaluate(ctx: DemoContext) -> None:
    for boxes in BOX_SOURCES:
        ctx.log(f"      val predictions with the {BOX_SOURCES[boxes]}'s boxes")
        predict_val_videos(ctx, boxes)


def predict_and_render(ctx: DemoContext) -> None:
    from sfdet.persons import build_person_detector
    from sfdet.predict.actions import load_action_predictor
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    cfg = ctx.config().data
    predictor = load_action_predictor(str(ctx.weights), ctx.device)
    detector = build_person_detector(ctx.paths.detector, score_threshold=cfg.detection_score_thresh,
                                     device=ctx.device)
    results = predict_videos(val_videos(ctx)[:1], predictor, detector, PredictOptions(render=True),
                             out_dir=ctx.paths.predict, resume=True)
    if results[0].error is not None:
        raise DataError(f"sfdet predict failed on {results[0].video}: {results[0].error}")


def rendered_video(ctx: DemoContext) -> Path:
    return ctx.paths.predict / f"{val_videos(ctx)[0].stem}.pred.mp4"  # `sfdet predict --render`'s name


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str  # everything it writes, under OUT (removed before it runs again after an earlier stage did)
    what: str  # the progress line
    run: Callable[[DemoContext], None]
    outputs: Callable[[DemoContext], list[Path]]  # must all exist for a finished stage to be skipped


STAGES = (
    Stage("toy data", "data", "generating the synthetic AVA-format dataset", make_dataset,
          lambda c: [c.paths.data / "meta.json"]),
    Stage("detector", "detector", "fine-tuning a person detector on the train split's person boxes",
          train_person_detector, lambda c: [c.paths.detector]),
    Stage("proposals", "proposals", "person proposals with the fine-tuned detector (train and val keyframes)",
          write_detector_proposals, lambda c: [c.paths.proposals("train"), c.paths.proposals("val")]),
    Stage("action model", "train", "training the action model (SlowFast) on the detector's proposals",
          train_action_model, lambda c: [c.weights]),
    Stage("evaluation", "eval", "frame-mAP on val: the fine-tuned detector's boxes vs the simulated proposals",
          evaluate, lambda c: [c.paths.predictions(b) for b in BOX_SOURCES]),
    Stage("predict", "predict", "sfdet predict on a held-out val video with the fine-tuned detector, rendered",
          predict_and_render, lambda c: [rendered_video(c)]),
)


# --------------------------------------------------------------------------------------------------
# Figures and the summary


def comparison_table(results: dict) -> str:
    """Per-class AP (%) of the val predictions with each box source, side by side, then the mAPs."""
    def pct(value: float) -> str:
        return "   n/a" if math.isnan(value) else f"{100 * value:6.2f}"

    first = results["detector"]
    width = max([len("class")] + [len(name) for name in first.label_map.values()])
    header = f"{'id':>3}  {'class':<{width}}  {'GT':>5}  " + "  ".join(f"{label:>19}" for label in BOX_SOURCES.values())
    lines = [header, "-" * len(header)]
    for class_id, name in first.label_map.items():
        aps = "  ".join(f"{pct(results[b].per_class_ap[class_id]):>19}" for b in BOX_SOURCES)
        lines.append(f"{class_id:>3}  {name:<{width}}  {first.gt_counts[class_id]:>5}  {aps}")
    lines.append("-" * len(header))
    lines.append(f"{'':>3}  {'mAP':<{width}}  {'':>5}  " + "  ".join(f"{pct(results[b].map):>19}" for b in BOX_SOURCES))
    return "\n".join(lines)


def save_demo_frame(rendered: Path, jsonl: Path, out: Path) -> Path:
    """One frame of the rendered video as PNG: the keyframe with the most action labels drawn."""
    from PIL import Image

    from sfdet.data.video import VideoReader
    from sfdet.predict.writers import read_jsonl

    records = read_jsonl(jsonl)
    header = next(r for r in records if r["type"] == "video")
    keyframes = [r for r in records if r["type"] == "keyframe"]
    if not keyframes:
        raise DataError(f"{jsonl}: no keyframe was predicted; re-run the demo with --overwrite")

    def labels_drawn(keyframe: dict) -> int:
        return sum(1 for person in keyframe["persons"] for a in person["actions"] if a["score"] >= 0.5)

    best = max(keyframes, key=lambda k: (labels_drawn(k), len(k["persons"]), -k["timestamp"]))
    reader = VideoReader(rendered)
    try:
        frame = reader.read_clip(best["frame_index"] / header["fps"], [0])[0]
    finally:
        reader.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.numpy() if hasattr(frame, "numpy") else frame).save(out, optimize=True)
    return out


def summarize(ctx: DemoContext, quick: bool, stage_seconds: dict[str, float]) -> DemoSummary:
    """Evaluate the val CSVs (cheap), draw the figures, collect the numbers and paths."""
    from sfdet.data import ava
    from sfdet.data.check import proposal_recall
    from sfdet.engine.plots import plot_run
    from sfdet.evaluation import frame_map
    from sfdet.evaluation.report import write_json, write_plot
    from sfdet.persons import read_detector_checkpoint

    paths, cfg = ctx.paths, ctx.config().data
    gt_path, exclusions_path, _ = cfg.split_files("val")
    label_map = ava.read_label_map(cfg.path(cfg.label_map))
    gt = ava.read_gt_csv(gt_path)
    results, recall = {}, {}
    for boxes in BOX_SOURCES:
        result = frame_map(gt, paths.predictions(boxes), label_map, exclusions=exclusions_path)
        write_json(result, paths.eval_dir(boxes) / "val_predictions_eval.json")
        write_plot(result, paths.eval_dir(boxes) / "val_predictions_eval.png")
        results[boxes] = result
        proposals = ava.read_proposals(paths.proposals("val") if boxes == "detector" else
                                       paths.simulated_proposals("val"))
        recall[BOX_SOURCES[boxes]] = proposal_recall(gt, proposals, list(label_map), cfg.detection_score_thresh)[0.5]

    figures = paths.figures
    figures.mkdir(parents=True, exist_ok=True)
    eval_figure = shutil.copyfile(paths.eval_dir("detector") / "val_predictions_eval.png",
                                  figures / "demo_val_ap.png")
    curves = plot_run(paths.train, figures / "demo_training_curves.png")
    rendered = rendered_video(ctx)
    frame = save_demo_frame(rendered, rendered.with_name(rendered.name.replace(".pred.mp4", ".jsonl")),
                            figures / "demo_frame.png")

    detector_info = read_detector_checkpoint(paths.detector).get("info", {})
    names = {boxes: {label_map[c]: ap for c, ap in results[boxes].per_class_ap.items()} for boxes in BOX_SOURCES}
    artifacts = {
        "rendered video": rendered,
        "frame": frame,
        "per-class AP / PR plot": Path(eval_figure),
        "training curves": curves,
        "val predictions CSV": paths.predictions("detector"),
        "  (simulated boxes)": paths.predictions("simulated"),
        "proposals CSVs": paths.proposals("train").parent,
        "detector": paths.detector,
        "action model": ctx.weights,
    }
    return DemoSummary(
        out_dir=paths.root, quick=quick, seed=ctx.seed, detector_ap=detector_info.get("person_ap50_val"),
        score_thresh=cfg.detection_score_thresh, proposal_recall=recall, frame_map=results["detector"].map, frame_map_simulated=results["simulated"].map,
        table=comparison_table(results), per_class_ap=names["detector"],
        per_class_ap_simulated=names["simulated"], artifacts=artifacts, stage_seconds=stage_seconds,
    )


# --------------------------------------------------------------------------------------------------
# The demo


def run_demo(
    out_dir: str | Path = "runs/demo",
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    config: str | Path | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Run (or resume) the six stages into `out_dir`; print and return the summary.

    Re-running skips finished stages (their outputs exist and `demo.json` records them);
    `overwrite=True` starts over. `config`: the action model's YAML (default configs/toy/slowfast_tiny.yaml).
    """
    from sfdet.devices import pick_device

    def default_log(line: str) -> None:
        print(line, flush=True)

    log = log or default_log
    config_path = Path(config) if config is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        raise ConfigError(f"action model config {config_path} not found; pass --config configs/toy/slowfast_tiny.yaml "
                          "from an sfdet checkout")
    root = Path(out_dir)
    _prepare_out_dir(root, overwrite)
    state = DemoState(root, quick, seed, config_path.resolve())
    ctx = DemoContext(DemoPaths(root), quick, seed, config_path, pick_device(device), log)
    earlier_stage_ran = False  # then the later stages' previous outputs are stale: they start over
    for number, stage in enumerate(STAGES, start=1):
        prefix = f"[{number}/{len(STAGES)}] {stage.name}:"
        if not earlier_stage_ran and state.done(stage.name) and all(p.exists() for p in stage.outputs(ctx)):
            log(f"{prefix} done in a previous run, skipped")
            continue
        state.forget([s.name for s in STAGES[number - 1:]])
        if earlier_stage_ran:
            _remove(root / stage.folder)
        log(f"{prefix} {stage.what}")
        started = time.perf_counter()
        stage.run(ctx)
        state.finish(stage.name, time.perf_counter() - started)
        earlier_stage_ran = True
    summary = summarize(ctx, quick, dict(state.finished))
    text = summary.text()
    (root / SUMMARY_NAME).write_text(text + "\n", encoding="utf-8")
    log("")
    log(text)
    return summary
