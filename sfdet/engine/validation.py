"""Periodic validation: frame-mAP of the model on the val proposals, gathered from every process.

Each process scores every `world_size`-th val keyframe; the per-keyframe
results are gathered and put back in dataset order before evaluation, so the
mAP does not depend on the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from sfdet.data.workers import iterate
from sfdet.engine import distributed as dist_utils
from sfdet.engine.data_order import shard_indices, unshard
from sfdet.engine.precision import autocast_context
from sfdet.evaluation import FrameMapResult, frame_map_from_arrays


@dataclass
class ValidationData:
    """The val clips (proposal boxes) and what frame-mAP compares them with."""

    dataset: torch.utils.data.Dataset  # sfdet.data.dataset.AvaDataset, split "val"
    gt: pd.DataFrame
    exclusions: pd.DataFrame | None
    label_map: dict[int, str]


@dataclass
class KeyframeScores:
    """Model output for one keyframe: `boxes_norm` (N, 4), `scores` (N, C) sigmoid probabilities."""

    video_id: str
    timestamp: float
    boxes_norm: np.ndarray
    scores: np.ndarray


@torch.no_grad()
def score_keyframes(model: torch.nn.Module, dataset, indices: list[int], batch_size: int, num_workers: int,
                    device: torch.device, precision: str = "fp32", progress: bool = False) -> list[KeyframeScores]:
    """Eval-mode scores for `dataset[i]`, i in `indices`, in that order."""
    from sfdet.data.dataset import collate_fn

    was_training = model.training
    model.eval()
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_fn, pin_memory=device.type == "cuda")
    results = []
    try:
        for batch in tqdm(iterate(loader), total=len(loader), desc="val", unit="batch", leave=False,
                          disable=not progress):
            inputs = [x.to(device) for x in batch["inputs"]]
            boxes = [b.to(device) for b in batch["boxes"]]
            with autocast_context(precision, device):
                scores = model(inputs, boxes).float().cpu()
            counts = [len(b) for b in boxes]
            for (video_id, timestamp), clip_scores, clip_boxes in zip(
                    batch["keys"], scores.split(counts), batch["boxes_norm"].split(counts)):
                results.append(KeyframeScores(video_id, float(timestamp), clip_boxes.numpy(), clip_scores.numpy()))
    finally:
        model.train(was_training)
    return results


def evaluate_keyframes(keyframes: list[KeyframeScores], data: ValidationData) -> FrameMapResult:
    """Frame-mAP (official AVA evaluator semantics) of per-keyframe scores."""
    class_ids = list(data.label_map)
    counts = [len(k.boxes_norm) for k in keyframes]
    boxes = np.concatenate([k.boxes_norm for k in keyframes]) if keyframes else np.zeros((0, 4))
    scores = np.concatenate([k.scores for k in keyframes]) if keyframes else np.zeros((0, len(class_ids)))
    video_ids = np.repeat(np.array([k.video_id for k in keyframes], dtype=object), counts)
    timestamps = np.repeat(np.array([k.timestamp for k in keyframes], dtype=np.float64), counts)
    return frame_map_from_arrays(video_ids, timestamps, boxes, scores, class_ids, data.gt, data.label_map,
                                 exclusions=data.exclusions)


def validate(model: torch.nn.Module, data: ValidationData | None, cfg, ctx: dist_utils.DistContext,
             progress: bool = True) -> FrameMapResult | None:
    """Frame-mAP of `model` on the val set; every process takes part and gets the result."""
    if data is None:
        return None
    num = len(data.dataset)
    mine = score_keyframes(model, data.dataset, shard_indices(num, ctx.rank, ctx.world_size),
                           cfg.train.val_batch_size, cfg.train.num_workers, ctx.device, cfg.train.precision,
                           progress=progress and ctx.is_main)
    keyframes = unshard(dist_utils.all_gather_objects(mine), num)
    result = evaluate_keyframes(keyframes, data) if ctx.is_main else None
    return dist_utils.broadcast_object(result)
