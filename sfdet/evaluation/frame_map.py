"""AVA frame-mAP, exactly as the official evaluator computes it, vectorised over rows.

The reference is the ActivityNet/TF-object-detection `PascalDetectionEvaluator` behind the AVA
`ava_eval` CSV path (MMAction2 0.24.1 `ava_eval(..., verbose=True)`). sfdet reproduces every step
that decides a number, including the ones that only matter on ties:

- keyframe key = (video_id, timestamp); rows whose action id is not evaluated are dropped first;
- within a keyframe, GT rows are stably ordered by descending 8th column (person id; 1.0 when absent)
  and detections by descending score (file order breaks ties);
- excluded keyframes are removed from GT and detections;
- detections whose box is not strictly x1<x2 and y1<y2 (zero area, inverted, NaN) are dropped;
- per keyframe and class, each detection (in order) takes its first-argmax-IoU GT (a NaN IoU counts as
  the maximum, as `np.argmax` does); it is a TP if IoU >= threshold and that GT is still free, else an FP
  (no fallback to another GT); a keyframe without GT makes all its detections FPs;
- a class's scores are concatenated over keyframes in order of first appearance in the detections and
  ranked with the same `np.argsort(scores)[::-1]` call, so score ties resolve identically;
- AP = area under the monotone precision envelope (all points); NaN for a class without GT, 0 for a
  class with GT and no detections; mAP = nanmean.

Nothing is a loop over rows or keyframes: IoUs are computed only for (detection, GT) pairs of the same
keyframe and class, built with repeat/offset indexing, and the greedy matching reduces to "first
candidate per GT" because a detection's target never depends on earlier matches.

Protocols (`protocol=`):
- "activitynet" (default): as above.
- "pyslowfast": PySlowFast's in-memory evaluation (`ava_eval_helper.run_evaluation` fed by
  `get_ava_eval_data`): detections and GT are matched in the order they are given (file order; for
  `frame_map_from_arrays` box-major then class order, as PySlowFast builds them), not by score.
- "mmaction2-1.x": MMAction2 1.x `ava_eval(ignore_empty_frames=True)`: detections on keyframes without
  GT are ignored (not FPs); boxes and scores are float32; a class's scores are concatenated in GT
  keyframe order; GT counts include excluded keyframes; classes with GT but no detection on a GT
  keyframe are left out of the mean (AP reported as NaN).

`max_per_frame=K` keeps the K highest-scoring evaluated detections of each keyframe before anything
else, as the ActivityNet 2019 challenge evaluator did (`read_csv(..., capacity=50)`). Its heap keeps an
arbitrary subset of detections tied with the K-th score; sfdet keeps the earliest in file order.

Input quirks follow the reference, or raise a `DataError` naming FILE:LINE where the reference would
crash: a prediction row without score gets score 1.0; non-numbers, wrong column counts and NaN scores
are errors; NaN and out-of-range boxes are used as given; an inverted GT box is an error only where a
detection of its class and keyframe makes the reference crash. Class ids outside the label map and
prediction videos absent from the GT are counted in `result.notes`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from sfdet.data.ava import (
    read_exclusions,
    read_gt_csv,
    read_label_map,
    read_predictions_csv,
)
from sfdet.errors import DataError

PROTOCOLS = ("activitynet", "pyslowfast", "mmaction2-1.x")

# MMAction2's AVA category groups, by action id.
CATEGORY_GROUPS = {
    "person_movement": (1, 14),
    "object_manipulation": (15, 63),
    "person_interaction": (64, 10**9),
}


@dataclass
class FrameMapResult:
    """Frame-mAP and everything needed to report it.

    `per_class_ap[id]` is NaN for a class without GT. `pr_curves[id]` = (precision, recall) arrays in
    ranking order. `notes` counts input oddities (unknown class ids, videos without GT, dropped boxes).
    """

    map: float
    per_class_ap: dict[int, float]
    metrics: dict[str, float]
    label_map: dict[int, str]
    gt_counts: dict[int, int]
    det_counts: dict[int, int]
    pr_curves: dict[int, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    notes: dict = field(default_factory=dict)
    iou: float = 0.5
    protocol: str = "activitynet"

    def category_maps(self) -> dict[str, float]:
        """nanmean AP per MMAction2 category group (NaN for an empty group)."""
        out = {}
        for name, (low, high) in CATEGORY_GROUPS.items():
            aps = [ap for cid, ap in self.per_class_ap.items() if low <= cid <= high]
            out[name] = _nanmean(np.array(aps, dtype=np.float64))
        return out


def metric_names(iou: float) -> tuple[str, str]:
    """The names the reference prints: the mAP key and the per-class prefix (`.../<class name>`)."""
    return f"PascalBoxes_Precision/mAP@{iou}IOU", f"PascalBoxes_PerformanceByCategory/AP@{iou}IOU/"


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")


# ----------------------------------------------------------------------------------------------------
# Inputs


def _as_table(data, what: str, reader) -> tuple[pd.DataFrame, str]:
    """A path is read with the lenient evaluator settings; a DataFrame is used as given."""
    if isinstance(data, pd.DataFrame):
        return data, f"<{what} table>"
    if isinstance(data, (str, os.PathLike)):
        return reader(data), os.fspath(data)
    raise TypeError(f"{what} must be a path or a DataFrame, got {type(data).__name__}")


def _row_location(table: pd.DataFrame, source: str, row: int) -> str:
    if "line" in table.columns:
        return f"{source}:{int(table['line'].iloc[row])}"
    return f"{source} (row {row + 1})"


def _check_columns(table: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}")


# ----------------------------------------------------------------------------------------------------
# The evaluator


def frame_map(
    gt,
    pred,
    label_map,
    exclusions=None,
    iou: float = 0.5,
    max_per_frame: int | None = None,
    classes=None,
    protocol: str = "activitynet",
) -> FrameMapResult:
    """AVA frame-mAP of `pred` against `gt` (paths or DataFrames as `sfdet.data.ava` reads them).

    label_map: path or {id: name}; classes: optional subset of its ids to evaluate (as MMAction2's
    `custom_classes`); exclusions: path, DataFrame[video_id, timestamp] or None.
    GT rows of a keyframe are ordered by descending `person_id`, as the reference orders them by the
    8th column; a GT file read here treats a missing 8th column as 1 (the reference's default score).
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not 0.0 < float(iou) <= 1.0:
        raise DataError(f"iou threshold must be in (0, 1], got {iou}")
    if max_per_frame is not None and int(max_per_frame) < 1:
        raise DataError(f"max_per_frame must be >= 1, got {max_per_frame}")
    if not isinstance(label_map, Mapping):
        label_map = read_label_map(label_map)
    label_map = {int(k): str(v) for k, v in sorted(label_map.items())}
    evaluated = np.array(sorted(label_map), dtype=np.int64)
    if classes is not None:
        classes = sorted({int(c) for c in classes})
        unknown = [c for c in classes if c not in label_map]
        if unknown:
            raise DataError(f"--classes {unknown} are not in the label map")
        evaluated = np.array(classes, dtype=np.int64)
    if evaluated.size == 0 or evaluated.min() < 1:
        raise DataError("the label map must hold class ids >= 1")

    gt_table, gt_source = _as_table(
        gt, "GT", lambda p: read_gt_csv(p, check_boxes=False, missing_person_id=1, line_numbers=True))
    pred_table, pred_source = _as_table(
        pred, "predictions", lambda p: read_predictions_csv(p, check_boxes=False, line_numbers=True))
    _check_columns(gt_table, ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id"], gt_source)
    _check_columns(pred_table, ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"], pred_source)
    if exclusions is not None:
        exclusions, _ = _as_table(exclusions, "exclusions", read_exclusions)
    else:
        exclusions = pd.DataFrame({"video_id": pd.Series([], dtype=object), "timestamp": np.zeros(0)})

    scores_all = pred_table["score"].to_numpy(dtype=np.float64)
    if np.isnan(scores_all).any():
        row = int(np.flatnonzero(np.isnan(scores_all))[0])
        raise DataError(f"{_row_location(pred_table, pred_source, row)}: score is NaN (ranking undefined)")

    return _evaluate(gt_table, gt_source, pred_table, pred_source, exclusions, label_map, evaluated,
                     float(iou), max_per_frame, protocol)


def frame_map_from_arrays(
    video_ids,
    timestamps,
    boxes_norm,
    scores,
    class_ids,
    gt,
    label_map,
    exclusions=None,
    **options,
) -> FrameMapResult:
    """Evaluate model outputs without a CSV round trip (the trainer's hook).

    video_ids (N,), timestamps (N,), boxes_norm (N, 4) normalised xyxy, scores (N, C) per class in
    `class_ids` (C,). Rows are laid out box-major then class (as a full-precision CSV written by
    `write_predictions_csv` would be), so the result equals evaluating that CSV.
    """
    boxes_norm = np.asarray(boxes_norm, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    n, c = len(boxes_norm), len(class_ids)
    if scores.shape != (n, c):
        raise ValueError(f"scores must be (N={n}, C={c}), got {scores.shape}")
    pred = pd.DataFrame({
        "video_id": np.repeat(np.asarray(video_ids, dtype=object), c),
        "timestamp": np.repeat(np.asarray(timestamps, dtype=np.float64), c),
        "x1": np.repeat(boxes_norm[:, 0], c),
        "y1": np.repeat(boxes_norm[:, 1], c),
        "x2": np.repeat(boxes_norm[:, 2], c),
        "y2": np.repeat(boxes_norm[:, 3], c),
        "action_id": np.tile(class_ids, n),
        "score": scores.reshape(-1),
    })
    return frame_map(gt, pred, label_map, exclusions=exclusions, **options)


def _evaluate(gt, gt_source, pred, pred_source, exclusions, label_map, evaluated, iou, max_per_frame,
              protocol) -> FrameMapResult:
    notes: dict = {}
    float_dtype = np.float32 if protocol == "mmaction2-1.x" else np.float64

    # Keyframe keys shared by GT, detections and exclusions: dense ints.
    n_gt, n_pred = len(gt), len(pred)
    videos, video_names = pd.factorize(
        np.concatenate([gt["video_id"].to_numpy(object), pred["video_id"].to_numpy(object),
                        exclusions["video_id"].to_numpy(object)]))
    times, _ = pd.factorize(
        np.concatenate([gt["timestamp"].to_numpy(np.float64), pred["timestamp"].to_numpy(np.float64),
                        exclusions["timestamp"].to_numpy(np.float64)]))
    keys, _ = pd.factorize(videos.astype(np.int64) * (int(times.max(initial=0)) + 1) + times)
    gt_key, pred_key, excluded_key = keys[:n_gt], keys[n_gt:n_gt + n_pred], keys[n_gt + n_pred:]

    # Class filter (the reference's whitelist), with unknown ids counted rather than silently dropped.
    gt_class = gt["action_id"].to_numpy(np.int64)
    pred_class = pred["action_id"].to_numpy(np.int64)
    known = np.array(sorted(label_map), dtype=np.int64)
    for name, cls in (("gt", gt_class), ("pred", pred_class)):
        ids, counts = np.unique(cls[~np.isin(cls, known)], return_counts=True)
        notes[f"{name}_rows_with_class_not_in_label_map"] = {int(i): int(n) for i, n in zip(ids, counts)}
        notes[f"{name}_rows_not_in_classes"] = int((np.isin(cls, known) & ~np.isin(cls, evaluated)).sum())
    gt_keep = np.isin(gt_class, evaluated)
    pred_keep = np.isin(pred_class, evaluated)

    # Scores and boxes as the protocol sees them.
    pred_scores = pred["score"].to_numpy(np.float64)
    if max_per_frame is not None:
        pred_keep &= _top_k_per_key(pred_key, pred_scores, pred_keep, int(max_per_frame))
        notes["dropped_by_max_per_frame"] = int(np.isin(pred_class, evaluated).sum() - pred_keep.sum())

    videos_without_gt = np.setdiff1d(videos[n_gt:n_gt + n_pred][pred_keep], videos[:n_gt][gt_keep])
    notes["pred_videos_without_gt"] = sorted(str(video_names[v]) for v in videos_without_gt)

    # Key order: the detections' first appearance (after the class filter), or GT's for MMAction2 1.x.
    first_key_source = gt_key[gt_keep] if protocol == "mmaction2-1.x" else pred_key[pred_keep]
    key_rank = np.full(int(keys.max(initial=-1)) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    uniq_keys, first_index = np.unique(first_key_source, return_index=True)
    key_rank[uniq_keys] = np.argsort(np.argsort(first_index, kind="stable"), kind="stable")

    # GT instance counts per class (1.x counts excluded keyframes too), then apply exclusions.
    is_excluded = np.zeros(int(keys.max(initial=-1)) + 1, dtype=bool)
    is_excluded[excluded_key] = True
    gt_counted = gt_keep if protocol == "mmaction2-1.x" else gt_keep & ~is_excluded[gt_key]
    notes["excluded_gt_rows"] = int((gt_keep & is_excluded[gt_key]).sum())
    notes["excluded_pred_rows"] = int((pred_keep & is_excluded[pred_key]).sum())
    gt_keep &= ~is_excluded[gt_key]
    pred_keep &= ~is_excluded[pred_key]

    has_gt = np.zeros_like(is_excluded)
    has_gt[gt_key[gt_keep]] = True
    notes["pred_rows_on_keyframes_without_gt"] = int((pred_keep & ~has_gt[pred_key]).sum())
    if protocol == "mmaction2-1.x":
        pred_keep &= has_gt[pred_key]

    # Boxes in the reference's [y1, x1, y2, x2] order and dtype.
    gt_boxes = gt[["y1", "x1", "y2", "x2"]].to_numpy(np.float64).astype(float_dtype)
    pred_boxes = pred[["y1", "x1", "y2", "x2"]].to_numpy(np.float64).astype(float_dtype)
    valid = (pred_boxes[:, 0] < pred_boxes[:, 2]) & (pred_boxes[:, 1] < pred_boxes[:, 3])
    inverted_pred = (pred_boxes[:, 0] > pred_boxes[:, 2]) | (pred_boxes[:, 1] > pred_boxes[:, 3])
    if protocol == "mmaction2-1.x":
        _raise_on_first(pred_keep & inverted_pred, pred, pred_source,
                        "inverted box (x1 > x2 or y1 > y2): the reference evaluator crashes on it")
    else:
        notes["invalid_pred_boxes_dropped"] = int((pred_keep & ~valid).sum())
        pred_keep &= valid
    notes["out_of_range_boxes"] = {
        "gt": int((gt_keep & _out_of_range(gt_boxes)).sum()),
        "pred": int((pred_keep & _out_of_range(pred_boxes)).sum()),
    }

    # Dense class index over the evaluated ids.
    gt_rows = np.flatnonzero(gt_keep)
    det_rows = np.flatnonzero(pred_keep)
    gt_cls = np.searchsorted(evaluated, gt_class[gt_rows])
    det_cls = np.searchsorted(evaluated, pred_class[det_rows])
    n_classes = len(evaluated)

    # GT order within a keyframe: descending 8th column (stable), or file order for PySlowFast.
    if protocol == "pyslowfast" or "person_id" not in gt.columns:
        gt_order_key = np.zeros(len(gt_rows))
    else:
        gt_order_key = -gt["person_id"].to_numpy(np.float64)[gt_rows]
    gt_sort = np.lexsort((gt_rows, gt_order_key, gt_cls, gt_key[gt_rows]))
    gt_rows, gt_cls = gt_rows[gt_sort], gt_cls[gt_sort]
    gt_group = gt_key[gt_rows] * n_classes + gt_cls

    # Detection order: keyframe rank, then descending score (stable) or given order.
    det_keys = pred_key[det_rows]
    det_order_key = np.zeros(len(det_rows)) if protocol == "pyslowfast" else -pred_scores[det_rows]
    det_sort = np.lexsort((det_rows, det_order_key, key_rank[det_keys]))
    det_rows, det_cls, det_keys = det_rows[det_sort], det_cls[det_sort], det_keys[det_sort]
    det_group = det_keys * n_classes + det_cls

    # (detection, GT) pairs of the same keyframe and class.
    first_gt = np.searchsorted(gt_group, det_group, side="left")
    n_pairs = np.searchsorted(gt_group, det_group, side="right") - first_gt
    _raise_on_inverted_gt(gt, gt_source, gt_rows, gt_boxes, gt_group, det_group)
    pair_det = np.repeat(np.arange(len(det_rows)), n_pairs)
    pair_starts = np.cumsum(n_pairs) - n_pairs
    pair_gt = first_gt[pair_det] + (np.arange(len(pair_det)) - pair_starts[pair_det])
    pair_iou = _pairwise_iou(pred_boxes[det_rows[pair_det]], gt_boxes[gt_rows[pair_gt]])

    # First argmax per detection (NaN wins, as in np.argmax), then first-come matching.
    is_tp = np.zeros(len(det_rows), dtype=bool)
    with_pairs = np.flatnonzero(n_pairs > 0)
    if len(with_pairs):
        starts = pair_starts[with_pairs]
        best = np.maximum.reduceat(pair_iou, starts)
        best_of_pair = np.repeat(best, n_pairs[with_pairs])
        hit = (pair_iou == best_of_pair) | (np.isnan(pair_iou) & np.isnan(best_of_pair))
        position = np.where(hit, np.arange(len(pair_iou)), len(pair_iou))
        chosen = np.minimum.reduceat(position, starts)
        candidate = pair_iou[chosen] >= iou
        cand_det = with_pairs[candidate]
        cand_gt = pair_gt[chosen[candidate]]
        _, first = np.unique(cand_gt, return_index=True)  # cand_det is in detection order
        is_tp[cand_det[first]] = True

    # Per-class ranking, PR curve and AP exactly as the reference.
    det_scores = pred_scores[det_rows].astype(float_dtype)
    by_class = np.argsort(det_cls, kind="stable")
    class_bounds = np.searchsorted(det_cls[by_class], np.arange(n_classes + 1))
    gt_counts_dense = np.bincount(np.searchsorted(evaluated, gt_class[gt_counted]), minlength=n_classes)

    per_class_ap, pr_curves, gt_counts, det_counts = {}, {}, {}, {}
    ap_by_id = np.full(int(evaluated.max()), np.nan)
    for index, class_id in enumerate(evaluated.tolist()):
        members = by_class[class_bounds[index]:class_bounds[index + 1]]
        num_gt = int(gt_counts_dense[index])
        gt_counts[class_id], det_counts[class_id] = num_gt, len(members)
        if num_gt == 0 or (protocol == "mmaction2-1.x" and len(members) == 0):
            per_class_ap[class_id] = float("nan")
            continue
        precision, recall, ap = _average_precision(np.array(det_scores[members]), is_tp[members], num_gt)
        per_class_ap[class_id] = ap
        ap_by_id[class_id - 1] = ap
        pr_curves[class_id] = (precision, recall)

    if protocol == "mmaction2-1.x":
        mean_ap = _nanmean(np.array([ap for ap in per_class_ap.values()]))
    else:
        mean_ap = _nanmean(ap_by_id)
    map_name, class_prefix = metric_names(iou)
    metrics = {map_name: mean_ap}
    for class_id in evaluated.tolist():
        metrics[class_prefix + label_map[class_id]] = per_class_ap[class_id]
    notes["gt_rows"], notes["pred_rows"] = n_gt, n_pred
    notes["evaluated_gt_rows"], notes["evaluated_pred_rows"] = len(gt_rows), len(det_rows)
    notes["missing_scores"] = int(pred.attrs.get("missing_scores", 0))
    return FrameMapResult(
        map=mean_ap, per_class_ap=per_class_ap, metrics=metrics,
        label_map={c: label_map[c] for c in evaluated.tolist()}, gt_counts=gt_counts, det_counts=det_counts,
        pr_curves=pr_curves, notes=notes, iou=iou, protocol=protocol,
    )


# ----------------------------------------------------------------------------------------------------
# Steps


def _top_k_per_key(keys: np.ndarray, scores: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Rows among `keep` within the k best scores of their keyframe (ties: earlier rows first)."""
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((rows, -scores[rows], keys[rows]))]
    sorted_keys = keys[order]
    group_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    rank = np.arange(len(order)) - np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    out = np.zeros(len(keys), dtype=bool)
    out[order[rank < k]] = True
    return out


def _out_of_range(boxes: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~((boxes >= 0) & (boxes <= 1)).all(axis=1)


def _pairwise_iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of row-aligned [y1, x1, y2, x2] boxes with the reference's exact operations and dtypes.

    (Intersection clamps against a float64 zero array; areas stay in the box dtype; no +1.)
    """
    zeros = np.zeros(len(det))
    with np.errstate(all="ignore"):
        heights = np.maximum(zeros, np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]))
        widths = np.maximum(zeros, np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]))
        intersection = heights * widths
        det_area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
        gt_area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        return intersection / (det_area + gt_area - intersection)


def _average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int):
    """(precision, recall, AP) with the reference's ranking call and VOC all-point interpolation."""
    if scores.size == 0:
        return np.zeros(0), np.zeros(0), 0.0
    ranking = np.argsort(scores)[::-1]
    tp = is_tp[ranking].astype(int)
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1 - tp)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / num_gt
    r = np.concatenate([[0], recall, [1]])
    p = np.concatenate([[0], precision, [0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    changes = np.where(r[1:] != r[:-1])[0] + 1
    return precision, recall, float(np.sum((r[changes] - r[changes - 1]) * p[changes]))


def _raise_on_first(mask: np.ndarray, table: pd.DataFrame, source: str, problem: str) -> None:
    if mask.any():
        raise DataError(f"{_row_location(table, source, int(np.flatnonzero(mask)[0]))}: {problem}")


def _raise_on_inverted_gt(gt, gt_source, gt_rows, gt_boxes, gt_group, det_group) -> None:
    """The reference rejects a GT list holding an inverted box when it matches detections against it."""
    boxes = gt_boxes[gt_rows]
    inverted = (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
    if not inverted.any():
        return
    matched = inverted & np.isin(gt_group, det_group)
    if matched.any():
        row = int(gt_rows[np.flatnonzero(matched)[0]])
        raise DataError(f"{_row_location(gt, gt_source, row)}: inverted GT box (x1 > x2 or y1 > y2) "
                        "on a keyframe and class with detections: the reference evaluator crashes on it")
