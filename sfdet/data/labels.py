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

Class subsets (`data.classes`, `select_classes`): the label map is cut down to the listed classes, their
ids kept, so labels have one column per kept class and a checkpoint's label map names the original ids.
As MMAction2's `custom_classes`, GT rows of the other classes are dropped before boxes are merged: a box
whose actions are all outside the subset is no box at all (not a negative), and a keyframe left without
boxes is no training sample.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sfdet.boxes import box_iou
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
    iou = box_iou(proposals_norm, gt.boxes_norm)  # (P, G) float64
    best = iou.argmax(axis=1)  # the first best-overlapping GT box
    matched = iou[np.arange(num), best] >= iou_thresh
    labels = gt.labels[best] * matched[:, None]
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


def select_classes(label_map: dict[int, str], classes: Sequence[int | str] | None,
                   what: str = "config key 'data.classes'", source: object = None) -> dict[int, str]:
    """The part of `label_map` that `classes` (names or ids, any order) lists, in label-map order, ids kept.

    Empty or None: the whole label map. An entry is an id when it is an int (or a string of digits that
    is no class name), else a class name (exact). Unknown entries raise one ConfigError naming each with
    the closest valid names or ids; `what` names the setting, `source` the label map file.
    """
    if not classes:
        return dict(label_map)
    ids_of = {name: class_id for class_id, name in label_map.items()}
    wanted: set[int] = set()
    unknown: list[str] = []
    for entry in classes:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            unknown.append(f"{entry!r} (expected a class name or id)")
            continue
        text = entry.strip() if isinstance(entry, str) else entry
        if isinstance(text, str) and text in ids_of:
            wanted.add(ids_of[text])
        elif isinstance(text, int) or (isinstance(text, str) and text.isdigit()):
            class_id = int(text)
            if class_id in label_map:
                wanted.add(class_id)
            else:
                unknown.append(f"{class_id} ({_closest_ids(class_id, label_map)})")
        else:
            unknown.append(f"{text!r} ({_closest_names(text, label_map)})")
    if unknown:
        where = f" {source}" if source else ""
        raise ConfigError(f"{what}: not in the label map{where} ({len(label_map)} classes): {'; '.join(unknown)}")
    return {class_id: name for class_id, name in label_map.items() if class_id in wanted}


def _closest_names(text: str, label_map: dict[int, str]) -> str:
    names = list(label_map.values())
    folded = {name.casefold().replace("_", " "): name for name in names}
    key = text.casefold().replace("_", " ")
    close = [key] if key in folded else difflib.get_close_matches(key, list(folded), n=2, cutoff=0.6)
    if not close:
        return "no close name; names are " + ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return "closest: " + ", ".join(f"{folded[c]!r} = {_id_of(folded[c], label_map)}" for c in close)


def _closest_ids(class_id: int, label_map: dict[int, str]) -> str:
    below, above = [i for i in label_map if i < class_id], [i for i in label_map if i > class_id]
    nearest = ([max(below)] if below else []) + ([min(above)] if above else [])  # the neighbours on each side
    return f"ids are {min(label_map)}..{max(label_map)}; closest: " + ", ".join(
        f"{i} = {label_map[i]!r}" for i in sorted(nearest))


def _id_of(name: str, label_map: dict[int, str]) -> int:
    return next(i for i, n in label_map.items() if n == name)


def flip_label_columns(label_ids: Sequence[int], pairs: Sequence[Sequence[int]],
                       left_out: Sequence[int] = ()) -> torch.Tensor | None:
    """Column order of a flipped clip's labels: `labels[:, order]` swaps the columns of each pair of action ids.

    None when there is nothing to swap. An id that is not in the label map is a ConfigError. `left_out`:
    ids of the full label map that `data.classes` leaves out; a pair of two of them is ignored, a pair of
    one kept and one left-out class is a ConfigError (a flipped clip would need the missing class).
    """
    left = {int(i) for i in left_out}
    pairs = [pair for pair in pairs if not (int(pair[0]) in left and int(pair[1]) in left)]
    for a, b in pairs:
        if (a in left) != (b in left):
            kept, dropped = (b, a) if a in left else (a, b)
            raise ConfigError(f"config key 'data.flip_label_pairs': [{a}, {b}] pairs class {kept}, which "
                              f"data.classes keeps, with {dropped}, which it leaves out; keep both or neither")
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
