"""Boxes and multi-hot labels of each keyframe, as PySlowFast builds them (`ava_helper.load_boxes_and_labels`).

GT rows are one (box, action) pair each; rows of a keyframe with the same box coordinates are
one person box whose labels are the union of the rows' actions. Training adds the person
proposals (score >= `data.detection_score_thresh`) that overlap a GT box with IoU >= 0.9
(`data.train_proposal_iou`): they take the labels of the GT box they overlap most (the first
such box on ties); a proposal identical to a GT box is that box, not a second one. PySlowFast's
`*_include_negative` box lists also train on the other proposals with no label; that is
`negatives=True`. Validation and test clips use the proposals above the threshold, whose
labels (by the same matching) only serve for a validation loss: the AVA evaluator reads GT itself.

Labels are multi-hot over the label map: column `j` is class `label_ids[j]` (label map order).
A horizontally flipped training clip swaps the columns of direction classes (`data.flip_label_pairs`,
e.g. clockwise / counter-clockwise): `flip_label_columns`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou

from sfdet.data.ava import BOX_COLUMNS
from sfdet.errors import ConfigError

Key = tuple[str, float]  # (video_id, timestamp)


@dataclass
class KeyframeBoxes:
    """The boxes of one keyframe: `boxes_norm` `(N, 4)` float32 xyxy in [0, 1], `labels` `(N, C)` float32 multi-hot."""

    boxes_norm: np.ndarray
    labels: np.ndarray


def merge_gt_boxes(gt: pd.DataFrame, label_ids: Sequence[int]) -> dict[Key, KeyframeBoxes]:
    """GT rows -> one box per (keyframe, coordinates) with the union of its actions; unknown action ids are ignored."""
    column_of = {int(label_id): j for j, label_id in enumerate(label_ids)}
    gt = gt[gt["action_id"].isin(list(column_of))]
    box_keys = ["video_id", "timestamp", *BOX_COLUMNS]
    box_number = gt.groupby(box_keys, sort=False).ngroup().to_numpy()
    boxes = gt.drop_duplicates(box_keys)  # first appearance order, as ngroup(sort=False) numbers them
    labels = np.zeros((len(boxes), len(label_ids)), dtype=np.float32)
    labels[box_number, gt["action_id"].map(column_of).to_numpy()] = 1.0
    coordinates = boxes[BOX_COLUMNS].to_numpy(dtype=np.float32)
    return {
        (str(video_id), float(timestamp)): KeyframeBoxes(coordinates[rows], labels[rows])
        for (video_id, timestamp), rows in boxes.groupby(["video_id", "timestamp"], sort=False).indices.items()
    }


def _proposals_by_keyframe(proposals: pd.DataFrame, score_thresh: float) -> dict[Key, np.ndarray]:
    kept = proposals[proposals["score"] >= score_thresh]
    coordinates = kept[BOX_COLUMNS].to_numpy(dtype=np.float32)
    return {
        (str(video_id), float(timestamp)): coordinates[rows]
        for (video_id, timestamp), rows in kept.groupby(["video_id", "timestamp"], sort=False).indices.items()
    }


def match_proposals(proposals_norm: np.ndarray, gt: KeyframeBoxes | None, num_classes: int, iou_thresh: float):
    """Labels of each proposal from the GT box it overlaps most if IoU >= `iou_thresh`, else none.

    Returns `labels` `(P, C)`, `matched` `(P,)` bool and `is_gt` `(P,)` bool (the proposal equals a GT box).
    """
    num = len(proposals_norm)
    if gt is None or len(gt.boxes_norm) == 0 or num == 0:
        return np.zeros((num, num_classes), np.float32), np.zeros(num, bool), np.zeros(num, bool)
    iou = box_iou(torch.from_numpy(proposals_norm).double(), torch.from_numpy(gt.boxes_norm).double())
    best_iou, best = iou.max(dim=1)
    matched = (best_iou >= iou_thresh).numpy()
    labels = gt.labels[best.numpy()] * matched[:, None]
    is_gt = (proposals_norm[:, None, :] == gt.boxes_norm[None, :, :]).all(axis=2).any(axis=1)
    return labels.astype(np.float32), matched, is_gt


def training_targets(gt: pd.DataFrame, proposals: pd.DataFrame | None, label_ids: Sequence[int],
                     score_thresh: float = 0.8, iou_thresh: float = 0.9,
                     negatives: bool = False) -> dict[Key, KeyframeBoxes]:
    """Every keyframe with GT: its GT boxes, then the proposals that match one (and, with `negatives`, the rest)."""
    targets = merge_gt_boxes(gt, label_ids)
    if proposals is None:
        return targets
    for key, proposals_norm in _proposals_by_keyframe(proposals, score_thresh).items():
        target = targets.get(key)
        if target is None:
            continue
        labels, matched, is_gt = match_proposals(proposals_norm, target, len(label_ids), iou_thresh)
        extra = (matched | negatives) & ~is_gt
        targets[key] = KeyframeBoxes(
            np.concatenate([target.boxes_norm, proposals_norm[extra]]),
            np.concatenate([target.labels, labels[extra]]),
        )
    return targets


def detection_boxes(proposals: pd.DataFrame, gt: pd.DataFrame | None, label_ids: Sequence[int],
                    score_thresh: float = 0.8, iou_thresh: float = 0.9) -> dict[Key, KeyframeBoxes]:
    """Val/test: every keyframe with a proposal above the threshold; labels from GT matching (zeros without GT)."""
    gt_boxes = merge_gt_boxes(gt, label_ids) if gt is not None else {}
    out = {}
    for key, proposals_norm in _proposals_by_keyframe(proposals, score_thresh).items():
        labels, _, _ = match_proposals(proposals_norm, gt_boxes.get(key), len(label_ids), iou_thresh)
        out[key] = KeyframeBoxes(proposals_norm, labels)
    return out


def flip_label_columns(label_ids: Sequence[int], pairs: Sequence[Sequence[int]]) -> torch.Tensor | None:
    """Column order of a flipped clip's labels: `labels[:, order]` swaps the columns of each pair of action ids.

    None when there is nothing to swap. An id that is not in the label map is a ConfigError.
    """
    if not pairs:
        return None
    column_of = {int(label_id): j for j, label_id in enumerate(label_ids)}
    order = list(range(len(label_ids)))
    for a, b in pairs:
        for action_id in (a, b):
            if action_id not in column_of:
                raise ConfigError(f"config key 'data.flip_label_pairs': action id {action_id} is not in the label map")
        order[column_of[a]], order[column_of[b]] = column_of[b], column_of[a]
    return torch.tensor(order)
