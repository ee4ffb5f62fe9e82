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

`budget_minutes` (`sfdet demo --budget MINUTES`, 20 by default on the command line) plans the run: it
times a few training steps of the action model first, says up front what every stage will take and
what accuracy to expect, and trains the action model as many epochs as fit (`BudgetPlanner`).
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
class Recipe:
    """One schedule the budget planner may choose for the action model (overrides on top of the preset's)."""

    name: str
    overrides: tuple[str, ...] = ()
    max_epochs: int = 13  # its longest schedule (the planner shortens it to fit the budget)
    # Measured (epochs -> val frame-mAP with the fine-tuned detector's boxes): what the planner tells a user to
    # expect (linear in between; None outside the measured range).
    expected_map: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class DemoPreset:
    """How much work each stage does; the full demo takes every component's own defaults but the epochs."""

    detector_options: dict = field(default_factory=dict)  # `DetectorTrainOptions` fields
    proposal_score_thresh: float = 0.05  # proposals CSVs keep boxes >= this (`sfdet proposals`' default); the
    # action model's config cuts again (data.detection_score_thresh)
    overrides: tuple[str, ...] = ()  # dotted overrides of the action model's config
    # The budget planner's choices, in order: the first whose longest schedule fits the budget, else the
    # last one with as many epochs as fit. The first is the preset's own (what runs without a budget).
    recipes: tuple[Recipe, ...] = (Recipe("default"),)


# 13 of the toy config's 15 epochs: with every stage, that fits the 20-minute budget on 2 cores in fp32 with
# torch limited to AVX2 (issue 20; the README's first-run section has the times). The detector keeps its 6
# epochs: 4 saved 60 s there but its recall at the 0.8 score cut fell from 94.7 to 87.4 and the action
# frame-mAP with its boxes to 0.766. The trainer validates once, at the end (the demo's evaluation stage
# measures the detector's boxes anyway). Measured frame-mAP with the detector's boxes (fp32, AVX2 only, seed 0):
# FULL_EXPECTED_MAP. Where 13 epochs do not fit, the planner trains as many as do.
FULL_EXPECTED_MAP = ((13, 0.835),)
FULL = DemoPreset(
    overrides=("train.epochs=13", "train.eval_every=0"),
    recipes=(Recipe("default", (), 13, FULL_EXPECTED_MAP),),
)
# A smoke run of every stage. A detector this briefly trained scores its boxes low: every box it finds is kept.
QUICK = DemoPreset(
    detector_options={"epochs": 1.0, "batch_size": 4},
    proposal_score_thresh=0.0,
    overrides=("data.detection_score_thresh=0.0", "train.epochs=2", "train.max_iters=4", "train.batch_size=4",
               "train.val_batch_size=4", "train.num_workers=0", "train.log_every=1", "train.tensorboard=false"),
    recipes=(Recipe("quick", (), 2),),
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
        self.plan: dict = {}  # the budget planner's choice for the action model ({"epochs": N}), kept for resumes
        if self.path.is_file():
            try:
                stored = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                stored = {}
            if stored.get("settings", self.settings) != self.settings:
                raise DataError(f"{root} holds a demo run with other settings ({stored['settings']}); "
                                "pass --overwrite to start over or choose another --out")
            self.finished = dict(stored.get("finished", {}))
            self.plan = dict(stored.get("plan", {}))

    def done(self, stage: str) -> bool:
        return stage in self.finished

    def forget(self, stages: list[str]) -> None:
        """These stages must run again (their inputs are about to change)."""
        for stage in stages:
            self.finished.pop(stage, None)
        self._write()

    def set_plan(self, plan: dict) -> None:
        self.plan = dict(plan)
        self._write()

    def finish(self, stage: str, seconds: float) -> None:
        self.finished[stage] = round(seconds, 1)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "finished": self.finished,
                                   **({"plan": self.plan} if self.plan else {})}, indent=2) + "\n",
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
    epochs: int | None = None  # the action model's epochs (the budget planner's), else the preset's
    recipe: Recipe | None = None  # the budget planner's recipe (its overrides), else the preset's own

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
            *(self.recipe.overrides if self.recipe is not None else ()),
            *([f"train.epochs={self.epochs}"] if self.epochs is not None else []),
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
# The budget planner (`sfdet demo --budget MINUTES`)
#
# Up front, the demo times a few training steps of the action model on a synthetic batch of its training
# shape (the probe: compute only, no data), estimates every stage from it and picks the number of epochs
# whose training fits the budget with the other stages. When the action model's stage starts, it plans
# again with the seconds the earlier stages really took, so a slow detector stage shortens the training,
# never lengthens the run. The cosine schedule is laid out over the planned epochs (a complete schedule,
# not a cut one).

# Seconds of the stages other than the training iterations, measured on the reference CPU (a 2-core AMD
# EPYC, fp32 with torch limited to AVX2, idle: issue 20's full demo, 1098 s), where the probe took
# REFERENCE_PROBE_SECONDS per step (the full preset's recipe). Another CPU's estimates scale these by its own
# probe time.
REFERENCE_PROBE_SECONDS = 0.43
REFERENCE_STAGE_SECONDS = {"toy data": 58.0, "detector": 202.0, "proposals": 28.0, "evaluation": 35.0,
                           "predict": 6.0}
REFERENCE_TRAIN_OVERHEAD_SECONDS = 25.0  # the action model's stage besides its iterations: RAM cache, validation
QUICK_REFERENCE_STAGE_SECONDS = {"toy data": 5.0, "detector": 5.0, "proposals": 2.0, "evaluation": 4.0,
                                 "predict": 2.0}
QUICK_REFERENCE_TRAIN_OVERHEAD_SECONDS = 5.0
LOOP_OVERHEAD = 1.3  # the training loop's seconds per iteration over the probe's (data, logging, checkpoints)
BUDGET_SAFETY = 0.95  # plan for this share of the budget
TRAIN_STAGE = "action model"
DEFAULT_BUDGET_MINUTES = 20.0  # `sfdet demo`'s (the issue's first-run target on 2 CPU cores)


def probe_seconds_per_iteration(cfg, device: torch.device, steps: int = 3,
                                clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of `steps` training steps (forward, BCE, backward, SGD) of cfg's action model on a
    synthetic batch of its training shape (train.batch_size clips, the configured frames and crop, two
    boxes each), after one warm-up step, in the configured precision and memory format."""
    import torch.nn.functional as F

    from sfdet.devices import resolve_precision
    from sfdet.engine.precision import autocast_context
    from sfdet.models import build_model

    mc, dc, tc = cfg.model, cfg.data, cfg.train
    generator = torch.Generator().manual_seed(0)
    model = build_model(mc).to(device)
    memory_format = torch.channels_last_3d if tc.channels_last else torch.contiguous_format
    if tc.channels_last:
        model = model.to(memory_format=memory_format)
    model.train()
    precision = resolve_precision(tc.precision, device)
    batch, crop, frames = tc.batch_size, dc.train_crop, dc.num_frames
    shapes = [(batch, 3, frames // mc.alpha, crop, crop), (batch, 3, frames, crop, crop)] \
        if mc.arch == "slowfast" else [(batch, 3, frames, crop, crop)]
    inputs = [torch.randn(shape, generator=generator).to(device).contiguous(memory_format=memory_format)
              for shape in shapes]
    person = torch.tensor([[0.1, 0.1, 0.5, 0.9], [0.45, 0.15, 0.85, 0.95]]) * crop
    boxes = [person.to(device) for _ in range(batch)]
    targets = (torch.rand(2 * batch, mc.num_classes, generator=generator) > 0.8).float().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    times = []
    for step in range(steps + 1):
        start = clock()
        with autocast_context(precision, device):
            logits = model(inputs, boxes)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:  # the first step is the warm-up (allocations, kernel selection)
            times.append(clock() - start)
    return sorted(times)[len(times) // 2]


def expected_map(epochs: int, table: tuple[tuple[int, float], ...]) -> float | None:
    """The measured frame-mAP for `epochs` (linear between measured points); None outside the measured range."""
    points = sorted(table)
    for (e0, m0), (e1, m1) in zip(points, points[1:]):
        if e0 <= epochs <= e1:
            return m0 + (m1 - m0) * (epochs - e0) / (e1 - e0)
    return next((m for e, m in points if e == epochs), None)


@dataclass
class BudgetPlan:
    """What the demo will do in `budget_s` and what it expects: the action model's epochs, every stage's seconds."""

    budget_s: float
    probe_s: float  # one training step on a synthetic batch (compute only)
    iteration_s: float  # the training loop's estimated seconds per iteration
    iterations_per_epoch: int
    epochs: int
    max_epochs: int
    stage_seconds: dict[str, float]  # every stage, estimated or (in `measured`) as it took
    measured: tuple[str, ...] = ()
    expected_map: float | None = None
    table: tuple[tuple[int, float], ...] = ()
    recipe: Recipe | None = None

    @property
    def total_s(self) -> float:
        return sum(self.stage_seconds.values())

    @property
    def fits(self) -> bool:
        return self.total_s <= self.budget_s

    def text(self) -> str:
        def stage(name: str) -> str:
            return f"{name} {self.stage_seconds[name]:.0f} s" + (" (took)" if name in self.measured else "")

        lines = [
            f"budget {self.budget_s / 60:g} min: the action model trains {self.epochs} epoch"
            f"{'s' if self.epochs != 1 else ''} of {self.max_epochs} ({self.epochs * self.iterations_per_epoch} "
            f"iterations at ~{self.iteration_s:.2f} s; probe step {self.probe_s:.2f} s)"
            + (f", recipe '{self.recipe.name}' ({' '.join(self.recipe.overrides)})" if self.recipe is not None
               and self.recipe.overrides else ""),
            "      estimate: " + ", ".join(stage(name) for name in self.stage_seconds)
            + f" (total ~{self.total_s / 60:.1f} min)",
        ]
        measured = ", ".join(f"{e} epochs {100 * m:.1f}" for e, m in sorted(self.table))
        if self.expected_map is not None:
            lines.append(f"      expected action frame-mAP with the detector's boxes ~{100 * self.expected_map:.1f} "
                         f"(measured: {measured})")
        elif self.table:
            lines.append(f"      expected action frame-mAP: not measured at {self.epochs} epochs "
                         f"(measured: {measured}); a larger --budget trains longer")
        if not self.fits:
            lines.append(f"      warning: even {self.epochs} epoch{'s' if self.epochs != 1 else ''} take"
                         f"{'s' if self.epochs == 1 else ''} ~{self.total_s / 60:.1f} min, over the "
                         f"{self.budget_s / 60:g}-minute budget")
        return "\n".join(lines)


def plan_budget(budget_s: float, probe_s: float, iterations_per_epoch: int, stage_seconds: dict[str, float],
                train_overhead_s: float, max_epochs: int, measured: tuple[str, ...] = (),
                table: tuple[tuple[int, float], ...] = (), recipe: Recipe | None = None) -> BudgetPlan:
    """The most epochs (1 .. max_epochs) whose training fits `BUDGET_SAFETY` of the budget with the other stages.

    stage_seconds: every stage but the action model's (estimated, or measured for the finished ones).
    """
    iteration_s = probe_s * LOOP_OVERHEAD
    epoch_s = iteration_s * iterations_per_epoch
    others = sum(seconds for name, seconds in stage_seconds.items() if name != TRAIN_STAGE)
    room = budget_s * BUDGET_SAFETY - others - train_overhead_s
    epochs = max(1, min(max_epochs, int(room // epoch_s) if epoch_s > 0 else max_epochs))
    seconds = {name: stage_seconds.get(name, 0.0) for name in (s.name for s in STAGES) if name != TRAIN_STAGE}
    ordered = {}
    for stage in STAGES:
        ordered[stage.name] = train_overhead_s + epochs * epoch_s if stage.name == TRAIN_STAGE else seconds[stage.name]
    return BudgetPlan(budget_s, probe_s, iteration_s, iterations_per_epoch, epochs, max_epochs, ordered,
                      measured=measured, expected_map=expected_map(epochs, table), table=table, recipe=recipe)


def _iterations_per_epoch(ctx: DemoContext) -> int:
    """The trainer's iterations per epoch: the train keyframes (estimated from the GT CSV when the data exists,
    else the default toy set's 820 clips) over the global batch."""
    cfg = ctx.config()
    clips = 820 if not ctx.quick else 4 * cfg.train.batch_size
    gt_path = cfg.data.split_files("train")[0] if (ctx.paths.data / "meta.json").is_file() else None
    if gt_path is not None and Path(gt_path).is_file():
        from sfdet.data import ava

        gt = ava.read_gt_csv(gt_path)
        clips = len(gt[["video_id", "timestamp"]].drop_duplicates()) or clips
    return max(1, clips // cfg.train.batch_size)


class BudgetPlanner:
    """Plans the action model's recipe and epochs for `budget_s` (see the section's comment).

    `probe` (cfg, device -> seconds per training step) is injectable (tests); each recipe is probed once.
    """

    def __init__(self, ctx: DemoContext, budget_s: float, probe: Callable | None = None):
        self.ctx, self.budget_s = ctx, budget_s
        self.probe = probe or probe_seconds_per_iteration
        self.probe_s: dict[str, float] = {}

    def _reference(self) -> tuple[dict[str, float], float]:
        if self.ctx.quick:
            return QUICK_REFERENCE_STAGE_SECONDS, QUICK_REFERENCE_TRAIN_OVERHEAD_SECONDS
        return REFERENCE_STAGE_SECONDS, REFERENCE_TRAIN_OVERHEAD_SECONDS

    def _probe(self, recipe: Recipe) -> float:
        if recipe.name not in self.probe_s:
            previous = self.ctx.recipe
            self.ctx.recipe = recipe
            try:
                self.probe_s[recipe.name] = float(self.probe(self.ctx.config(), self.ctx.device))
            finally:
                self.ctx.recipe = previous
        return self.probe_s[recipe.name]

    def plan(self, finished: dict[str, float]) -> BudgetPlan:
        """Measured seconds for the `finished` stages, the reference scaled by the first recipe's probe for the
        others; the first recipe whose longest schedule fits, else the last one's most epochs that fit."""
        reference, overhead = self._reference()
        recipes = self.ctx.preset.recipes
        scale = self._probe(recipes[0]) / REFERENCE_PROBE_SECONDS
        seconds = {name: finished.get(name, reference.get(name, 0.0) * scale) for name in reference}
        measured = tuple(name for name in seconds if name in finished)
        iterations = _iterations_per_epoch(self.ctx)
        for recipe in recipes:
            plan = plan_budget(self.budget_s, self._probe(recipe), iterations, seconds, overhead * scale,
                               recipe.max_epochs, measured, recipe.expected_map, recipe)
            if plan.epochs == recipe.max_epochs and plan.fits:
                break
        return plan


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
    budget_minutes: float | None = None,
    probe: Callable | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> DemoSummary:
    """Run (or resume) the six stages into `out_dir`; print and return the summary.

    Re-running skips finished stages (their outputs exist and `demo.json` records them);
    `overwrite=True` starts over. `config`: the action model's YAML (default configs/toy/slowfast_tiny.yaml).
    `budget_minutes`: plan the action model's epochs so that the whole run fits (see `BudgetPlanner`; None:
    the preset's epochs). `probe` (cfg, device -> seconds per training step) and `clock` are for tests.
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
    if budget_minutes is not None and budget_minutes <= 0:
        raise ConfigError(f"--budget must be a positive number of minutes, got {budget_minutes:g}")
    planner = BudgetPlanner(ctx, 60.0 * budget_minutes, probe) if budget_minutes is not None else None
    recipes = {recipe.name: recipe for recipe in ctx.preset.recipes}
    if state.plan.get("epochs") is not None and state.done(STAGES[0].name):
        # an interrupted run's training resumes with its own recipe and schedule
        ctx.epochs, ctx.recipe = int(state.plan["epochs"]), recipes.get(state.plan.get("recipe"))
    elif planner is not None:
        log("plan: " + planner.plan(dict(state.finished)).text())
    earlier_stage_ran = False  # then the later stages' previous outputs are stale: they start over
    for number, stage in enumerate(STAGES, start=1):
        prefix = f"[{number}/{len(STAGES)}] {stage.name}:"
        if not earlier_stage_ran and state.done(stage.name) and all(p.exists() for p in stage.outputs(ctx)):
            log(f"{prefix} done in a previous run, skipped")
            continue
        state.forget([s.name for s in STAGES[number - 1:]])
        if earlier_stage_ran:
            _remove(root / stage.folder)
        if stage.name == TRAIN_STAGE:
            resuming = not earlier_stage_ran and state.plan.get("epochs") is not None and ctx.paths.train.is_dir()
            if planner is not None and not resuming:
                plan = planner.plan(dict(state.finished))  # the earlier stages' real seconds
                ctx.epochs, ctx.recipe = plan.epochs, plan.recipe
                log("plan, again with the stages' real times: " + plan.text())
            elif not resuming:
                ctx.epochs, ctx.recipe = None, None
            state.set_plan({"epochs": ctx.epochs, "recipe": ctx.recipe.name if ctx.recipe else None}
                           if ctx.epochs is not None else {})
        log(f"{prefix} {stage.what}")
        started = clock()
        stage.run(ctx)
        state.finish(stage.name, clock() - started)
        earlier_stage_ran = True
    summary = summarize(ctx, quick, dict(state.finished))
    text = summary.text()
    (root / SUMMARY_NAME).write_text(text + "\n", encoding="utf-8")
    log("")
    log(text)
    return summary
