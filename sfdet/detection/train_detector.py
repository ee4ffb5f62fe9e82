"""Fine-tune a person detector on the person boxes of an AVA-format dataset's GT.

Why: AVA-style action detection needs person proposals, and a COCO detector is neither
available offline nor good on every domain. The train split's keyframes (decoded once into
memory: a keyframe is small) train a one-class detector (person); the val split's keyframes
measure it with the person AP at IoU 0.5.

Person AP is VOC-style all-points AP (area under the monotone precision envelope, VOC 2010+),
computed by sfdet's AVA frame-mAP evaluator with a single class: GT = the val person boxes
(one per person and keyframe), detections = every box the model outputs on each val GT keyframe
(the model's own 0.01 score floor), excluded keyframes removed from both, greedy matching in
score order at IoU >= 0.5 per keyframe.

Starting points: `weights` = a torchvision COCO detector's state dict (its architecture named by
`arch`, e.g. fasterrcnn_mobilenet_v3_large_fpn), fine-tuned with the COCO person class
(label 1) as the target; or no weights: `tiny_fasterrcnn` from scratch (see `models.py`).
Augmentation: horizontal flip.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from sfdet.boxes import abs_to_norm, norm_to_abs
from sfdet.data.config import DataConfig
from sfdet.detection.keyframes import (
    Keyframe,
    Skipped,
    SplitKeyframes,
    boxes_by_key,
    iter_keyframes,
    read_split_keyframes,
    skipped_summary,
)
from sfdet.engine.config import TrainConfig
from sfdet.engine.solver import build_optimizer, build_scheduler
from sfdet.errors import CheckpointError, DataError, SfdetError
from sfdet.evaluation import frame_map_from_arrays
from sfdet.persons import (
    PERSON_LABEL,
    TINY_ARCH,
    build_detector_model,
    load_torchvision_detector_state,
    save_detector,
)

# A box narrower or shorter than this (pixels) is not a training target (degenerate after rounding).
MIN_BOX_SIZE = 2.0


@dataclass
class DetectorTrainOptions:
    """How to train. `min_size` None = the frames' native short side (capped at `max_native_size`)."""

    arch: str = TINY_ARCH
    weights: str | None = None  # torchvision COCO detector state dict (then `arch` must be its architecture)
    epochs: float = 6.0  # ~600 iterations of 8 on the default toy set (787 train keyframes)
    batch_size: int = 8
    lr: float = 0.02
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.25
    min_size: int | None = None
    scale_jitter: float = 0.0  # training short side drawn from (1 +- this) x min_size (0: fixed size)
    max_native_size: int = 800
    score_threshold: float = 0.5  # stored in the checkpoint: the default cut of its users
    max_iters: int | None = None  # stop early (tests, smoke runs)
    evaluate: bool = True
    device: str = "cpu"
    seed: int = 0
    progress: bool = True


@dataclass
class TrainSample:
    """One training keyframe: image (H, W, 3) uint8 RGB and its person boxes (N, 4) boxes_xyxy_abs."""

    image: torch.Tensor
    boxes_xyxy_abs: torch.Tensor


@dataclass
class DetectorTrainResult:
    out_path: Path
    iterations: int
    train_keyframes: int
    val_keyframes: int
    person_ap: float | None  # VOC all-points AP@0.5 on val; None when not evaluated
    seconds: float
    lines: list[str]


def training_samples(keyframes: list[Keyframe], boxes: dict) -> list[TrainSample]:
    """Keyframes with their person boxes in the (possibly downscaled) image's pixels; tiny boxes dropped."""
    samples = []
    for keyframe in keyframes:
        height, width = keyframe.image.shape[:2]
        boxes_norm = boxes.get((keyframe.video_id, keyframe.timestamp), np.zeros((0, 4), np.float32))
        boxes_abs = torch.from_numpy(norm_to_abs(boxes_norm, width, height, np.float32))
        big_enough = ((boxes_abs[:, 2] - boxes_abs[:, 0]) >= MIN_BOX_SIZE) & ((boxes_abs[:, 3] - boxes_abs[:, 1]) >= MIN_BOX_SIZE)
        samples.append(TrainSample(keyframe.image, boxes_abs[big_enough]))
    return samples


def flip_horizontally(image_chw: torch.Tensor, boxes_xyxy_abs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) image and (N, 4) boxes_xyxy_abs mirrored left-right."""
    width = image_chw.shape[-1]
    flipped = boxes_xyxy_abs[:, [2, 1, 0, 3]] * torch.tensor([-1.0, 1.0, -1.0, 1.0]) + torch.tensor([width, 0.0, width, 0.0])
    return image_chw.flip(-1), flipped


def _batch(samples: list[TrainSample], device: torch.device, rng: random.Random):
    images, targets = [], []
    for sample in samples:
        image = sample.image.permute(2, 0, 1).float().div(255.0)
        boxes = sample.boxes_xyxy_abs
        if rng.random() < 0.5:
            image, boxes = flip_horizontally(image, boxes)
        images.append(image.to(device))
        targets.append({"boxes": boxes.to(device),
                        "labels": torch.full((len(boxes),), PERSON_LABEL, dtype=torch.int64, device=device)})
    return images, targets


def input_size_for(keyframes: list[Keyframe], min_size: int | None, cap: int) -> tuple[int, int]:
    """(min_size, max_size) of the model's resize: short side `min_size` (default: the frames' native short
    side, at most `cap`), long side allowed up to what the widest frame needs."""
    short_side = min_size or min(min(min(k.image.shape[:2]) for k in keyframes), cap)
    widest = max(max(k.image.shape[:2]) / min(k.image.shape[:2]) for k in keyframes)
    return short_side, math.ceil(short_side * widest - 1e-6)


def set_training_sizes(model: torch.nn.Module, input_size: tuple[int, int], jitter: float) -> None:
    """Multi-scale training through torchvision's own resize: it draws the short side from `min_size`
    in train mode (and uses `min_size[-1]` in eval mode, so the native size stays last)."""
    short_side, long_side = input_size
    steps = np.linspace(1.0 - jitter, 1.0 + jitter, 5) if jitter > 0 else np.ones(1)
    sizes = sorted({max(1, round(short_side * f)) for f in steps} - {short_side})
    model.transform.min_size = (*sizes, short_side)
    model.transform.max_size = math.ceil(long_side * (1.0 + jitter))


def build_start_model(options: DetectorTrainOptions, input_size: tuple[int, int]) -> tuple[torch.nn.Module, dict]:
    """(model, arch_params): from a COCO state dict when `options.weights` is given, else from scratch."""
    if options.weights is None:
        arch_params = {} if options.arch == TINY_ARCH else {"num_classes": 2}
        return build_detector_model(options.arch, arch_params, input_size), arch_params
    if options.arch == TINY_ARCH:
        raise CheckpointError("--weights needs --arch NAME of the torchvision detector the weights belong to "
                              "(e.g. fasterrcnn_mobilenet_v3_large_fpn)")
    state = load_torchvision_detector_state(options.arch, options.weights)
    arch_params = {"num_classes": _num_classes(state)}
    model = build_detector_model(options.arch, arch_params, input_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{options.weights}: does not fit torchvision '{options.arch}' ({first_line}); "
                              "pass --arch of the architecture these weights belong to") from None
    return model, arch_params


def _num_classes(state: dict) -> int:
    """Classes of a torchvision detector's state dict: the R-CNN classifier's size, else COCO's 91."""
    bias = state.get("roi_heads.box_predictor.cls_score.bias")
    return int(bias.shape[0]) if bias is not None else 91


def person_ap(model: torch.nn.Module, keyframes: list[Keyframe], split: SplitKeyframes, device: torch.device,
              batch_size: int = 8, progress: bool = True) -> float:
    """VOC all-points person AP@0.5 of `model` on `keyframes` (see the module docstring)."""
    video_ids, timestamps, boxes_norm, scores = [], [], [], []
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(keyframes), batch_size), desc="val", unit="batch", disable=not progress,
                          leave=False):
            chunk = keyframes[start:start + batch_size]
            images = [k.image.permute(2, 0, 1).float().div(255.0).to(device) for k in chunk]
            for keyframe, output in zip(chunk, model(images)):
                height, width = keyframe.image.shape[:2]
                person = output["labels"] == PERSON_LABEL
                boxes = abs_to_norm(output["boxes"][person].float().cpu().numpy(), width, height, np.float64)
                video_ids += [keyframe.video_id] * len(boxes)
                timestamps += [keyframe.timestamp] * len(boxes)
                boxes_norm.append(boxes)
                scores.append(output["scores"][person].float().cpu().numpy())
    decoded = {(k.video_id, k.timestamp) for k in keyframes}
    persons = split.persons
    gt = persons[[key in decoded for key in zip(persons["video_id"].astype(str), persons["timestamp"].astype(float))]]
    gt = gt.assign(action_id=PERSON_LABEL)
    result = frame_map_from_arrays(
        video_ids, timestamps,
        np.concatenate(boxes_norm) if boxes_norm else np.zeros((0, 4)),
        np.concatenate(scores)[:, None] if scores else np.zeros((0, 1)),
        [PERSON_LABEL], gt, {PERSON_LABEL: "person"}, exclusions=split.exclusions,
    )
    return float(result.per_class_ap[PERSON_LABEL])


def _load_split(cfg: DataConfig, split: str, short_side: int | None, progress: bool, lines: list[str]):
    info = read_split_keyframes(cfg, split)
    keys = [key for key in info.keys if key not in info.excluded]
    skipped: list[Skipped] = []
    keyframes = list(iter_keyframes(cfg, keys, skipped, short_side, progress, desc=f"decode {split}"))
    lines += skipped_summary(skipped)
    return info, keyframes


def train_detector(cfg: DataConfig, out_path: str | Path, options: DetectorTrainOptions,
                   print_line: Callable[[str], None] = print) -> DetectorTrainResult:
    """Train on the train split, measure person AP on val, write the checkpoint to `out_path`."""
    start_time = time.perf_counter()
    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    device = torch.device(options.device)
    lines: list[str] = []
    short_side = options.min_size or options.max_native_size
    train_info, train_keyframes = _load_split(cfg, "train", short_side, options.progress, lines)
    if not train_keyframes:
        raise DataError(f"train: no keyframe could be decoded from {cfg.path(cfg.video_dir if cfg.source == 'video' else cfg.frames_dir)}; "
                        "run `sfdet data check` to see what does not line up")
    samples = training_samples(train_keyframes, boxes_by_key(train_info.persons))
    val_info, val_keyframes = (None, [])
    if options.evaluate and cfg.val_gt:
        val_info, val_keyframes = _load_split(cfg, "val", short_side, options.progress, lines)
    input_size = input_size_for(train_keyframes, options.min_size, options.max_native_size)
    for line in lines:
        print_line(line)
    print_line(f"train-detector: {len(samples)} train keyframes ({sum(len(s.boxes_xyxy_abs) for s in samples)} person "
               f"boxes), {len(val_keyframes)} val keyframes; {options.arch} "
               f"{'from ' + str(options.weights) if options.weights else 'from scratch'}, input short side {input_size[0]}")

    model, arch_params = build_start_model(options, input_size)
    model.to(device).train()
    set_training_sizes(model, input_size, options.scale_jitter)
    iters_per_epoch = max(1, math.ceil(len(samples) / options.batch_size))
    total_iters = max(1, round(options.epochs * iters_per_epoch))
    if options.max_iters is not None:
        total_iters = min(total_iters, options.max_iters)
    solver_cfg = TrainConfig(lr=options.lr, momentum=0.9, weight_decay=options.weight_decay, bn_weight_decay=0.0,
                             schedule="cosine", warmup_epochs=options.warmup_epochs,
                             warmup_start_lr=options.lr * 0.01, cosine_end_lr=0.0)
    optimizer = build_optimizer(model, solver_cfg)
    scheduler = build_scheduler(optimizer, solver_cfg, iters_per_epoch, total_iters)

    order: list[int] = []
    with tqdm(total=total_iters, desc="train-detector", unit="it", disable=not options.progress) as bar:
        for iteration in range(total_iters):
            if len(order) < options.batch_size:
                order += rng.sample(range(len(samples)), len(samples))
            batch, order = order[:options.batch_size], order[options.batch_size:]
            images, targets = _batch([samples[i] for i in batch], device, rng)
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise SfdetError(f"train-detector: the loss became {loss.item()} at iteration {iteration}; "
                                 "lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update()

    set_training_sizes(model, input_size, 0.0)
    ap = person_ap(model, val_keyframes, val_info, device, options.batch_size, options.progress) if val_keyframes else None
    seconds = time.perf_counter() - start_time
    info = {"dataset": str(cfg.root), "train_keyframes": len(samples), "val_keyframes": len(val_keyframes),
            "iterations": total_iters, "person_ap50_val": ap, "train_seconds": round(seconds, 1),
            "options": {k: v for k, v in asdict(options).items() if k not in ("progress",)}}
    save_detector(out_path, model, options.arch, arch_params, input_size, options.score_threshold, info)
    return DetectorTrainResult(Path(out_path), total_iters, len(samples), len(val_keyframes), ap, seconds, lines)
