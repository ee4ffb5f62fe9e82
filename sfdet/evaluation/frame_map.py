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
detection of its class and keyframe makes the reference crash; an empty GT file is an error ("has no
rows"). Class ids outside the label map, prediction videos absent from the GT, repeated detections
(same keyframe, box and class: false positives, as in the reference), NaN/inf and out-of-range boxes
are counted in `result.notes`, the first of each located FILE:LINE (`report.input_warnings` words them).
`pred` may be a folder: its `*.csv` files but `*.tracks.csv` (`sfdet predict`'s outputs), in name order,
which equals evaluating their concatenation (`cat DIR/*.csv`).

Code: `frame_map` checks the options (`_Options`) and reads the inputs (`_read_inputs`); `_evaluate`
then runs the steps in order: keyframe keys (`_keyframe_keys`) -> the rows that take part
(`_select_rows`: class filter, top-K per keyframe, keyframe order, exclusions, boxes) -> (keyframe,
class) groups in matching order (`_sort_into_groups`) -> greedy matching (`_match`) -> per-class AP,
mAP and metric names (`_result`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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


def prediction_files(directory, skip=()) -> list[Path]:
    """The prediction CSVs of a folder, in name order (as `cat DIR/*.csv`): every `*.csv` but
    `*.tracks.csv`, `*.segments.csv` and `*.frames.csv` (`sfdet predict` writes them next to `<stem>.csv`),
    hidden files and the paths in `skip` (the GT and exclusions files, should they lie there)."""
    directory = Path(directory)
    skipped = {Path(p).resolve() for p in skip if p is not None and not isinstance(p, pd.DataFrame)}
    return sorted(p for p in directory.glob("*.csv")
                  if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith((".tracks.csv", ".segments.csv", ".frames.csv"))
                  and p.resolve() not in skipped)


def read_predictions(path, skip=()) -> pd.DataFrame:
    """A predictions CSV, or every prediction CSV of a folder (`prediction_files`) concatenated in name
    order, read with the evaluator's lenient settings. Rows carry their `line` and, for a folder, their
    `source_file`; `attrs["files"]` lists the files read."""
    path = Path(path)
    if not path.is_dir():
        table = read_predictions_csv(path, check_boxes=False, line_numbers=True)
        table.attrs["files"] = [os.fspath(path)]
        return table
    files = prediction_files(path, skip)
    if not files:
        raise DataError(f"{path}: is a directory with no prediction CSVs (*.csv other than *.tracks.csv); "
                        "pass a predictions CSV or the folder `sfdet predict` wrote")
    tables = [read_predictions_csv(f, check_boxes=False, line_numbers=True) for f in files]
    table = pd.concat(tables, ignore_index=True)
    table["source_file"] = pd.Categorical.from_codes(
        np.repeat(np.arange(len(files)), [len(t) for t in tables]), categories=[os.fspath(f) for f in files])
    table.attrs = {"files": [os.fspath(f) for f in files], "bad_rows": 0,
                   "missing_scores": sum(int(t.attrs.get("missing_scores", 0)) for t in tables)}
    return table


def _read_gt(path) -> pd.DataFrame:
    if Path(path).is_dir():
        raise DataError(f"{os.fspath(path)}: is a directory; --gt takes one GT CSV file "
                        "(video_id,timestamp,x1,y1,x2,y2,action_id[,person_id])")
    table = read_gt_csv(path, check_boxes=False, missing_person_id=1, line_numbers=True)
    if len(table) == 0:
        raise DataError(f"{os.fspath(path)}: has no rows (an empty GT file: nothing to evaluate against)")
    return table


def _row_location(table: pd.DataFrame, source: str, row: int) -> str:
    if "source_file" in table.columns:
        source = str(table["source_file"].iloc[row])
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
    """AVA frame-mAP of `pred` against `gt` (paths or DataFrames as `sfdet.data.ava` reads them;
    `pred` may also be a folder of prediction CSVs, see `read_predictions`).

    label_map: path or {id: name}; classes: optional subset of its ids to evaluate (as MMAction2's
    `custom_classes`); exclusions: path, DataFrame[video_id, timestamp] or None.
    GT rows of a keyframe are ordered by descending `person_id`, as the reference orders them by the
    8th column; a GT file read here treats a missing 8th column as 1 (the reference's default score).
    """
    options = _Options.checked(iou, max_per_frame, protocol)
    return _evaluate(_read_inputs(gt, pred, label_map, exclusions, classes), options)


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


# ----------------------------------------------------------------------------------------------------
# The evaluation, step by step. Each step reads the arrays of the previous ones and records what it
# drops in `notes` (in this order: the JSON report lists them so).


@dataclass(frozen=True)
class _Options:
    """What decides the numbers besides the inputs."""

    iou: float
    max_per_frame: int | None
    protocol: str

    @classmethod
    def checked(cls, iou, max_per_frame, protocol: str) -> _Options:
        if protocol not in PROTOCOLS:
            raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if not 0.0 < float(iou) <= 1.0:
            raise DataError(f"iou threshold must be in (0, 1], got {iou}")
        if max_per_frame is not None and int(max_per_frame) < 1:
            raise DataError(f"max_per_frame must be >= 1, got {max_per_frame}")
        return cls(iou=float(iou), max_per_frame=max_per_frame, protocol=protocol)

    @property
    def mmaction_1x(self) -> bool:
        return self.protocol == "mmaction2-1.x"

    @property
    def in_given_order(self) -> bool:
        """PySlowFast matches GT and detections in the order given, not by person id and score."""
        return self.protocol == "pyslowfast"

    @property
    def float_dtype(self) -> type:
        return np.float32 if self.mmaction_1x else np.float64


@dataclass
class _Inputs:
    """The validated inputs: tables (with the names errors give them) and the class ids to evaluate."""

    gt: pd.DataFrame
    gt_source: str
    pred: pd.DataFrame
    pred_source: str
    exclusions: pd.DataFrame
    label_map: dict[int, str]
    evaluated: np.ndarray  # sorted class ids


@dataclass
class _Keys:
    """Dense keyframe ids (`count` of them) of every GT, prediction and exclusion row."""

    gt: np.ndarray
    pred: np.ndarray
    excluded: np.ndarray
    gt_video: np.ndarray
    pred_video: np.ndarray
    video_names: pd.Index
    count: int


@dataclass
class _Rows:
    """The rows that take part, and each row's class, score and box as the protocol sees them."""

    gt_keep: np.ndarray  # (n_gt,) bool
    pred_keep: np.ndarray  # (n_pred,) bool
    gt_counted: np.ndarray  # (n_gt,) bool: the GT instances each class's recall divides by
    gt_class: np.ndarray  # (n_gt,) action ids
    pred_class: np.ndarray  # (n_pred,) action ids
    pred_scores: np.ndarray  # (n_pred,) float64
    gt_boxes: np.ndarray  # (n_gt, 4) [y1, x1, y2, x2] in the protocol's float dtype
    pred_boxes: np.ndarray  # (n_pred, 4)
    key_rank: np.ndarray  # (keys.count,) the order in which keyframes are visited


@dataclass
class _Groups:
    """Kept rows in matching order, grouped by (keyframe, class) = `key * n_classes + class index`."""

    gt_rows: np.ndarray
    gt_group: np.ndarray
    det_rows: np.ndarray
    det_cls: np.ndarray  # dense class index of each detection
    det_group: np.ndarray


def _read_inputs(gt, pred, label_map, exclusions, classes) -> _Inputs:
    """Read what is a path, check the columns and scores, and settle the evaluated class ids."""
    label_map, evaluated = _evaluated_classes(label_map, classes)
    gt_table, gt_source = _as_table(gt, "GT", _read_gt)
    pred_table, pred_source = _as_table(pred, "predictions", lambda p: read_predictions(p, skip=(gt, exclusions)))
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
    return _Inputs(gt=gt_table, gt_source=gt_source, pred=pred_table, pred_source=pred_source,
                   exclusions=exclusions, label_map=label_map, evaluated=evaluated)


def _evaluated_classes(label_map, classes) -> tuple[dict[int, str], np.ndarray]:
    """({id: name} sorted by id, the sorted ids to evaluate: all of them, or `classes`)."""
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
    return label_map, evaluated


def _evaluate(inputs: _Inputs, options: _Options) -> FrameMapResult:
    notes: dict = {}
    keys = _keyframe_keys(inputs)
    rows = _select_rows(inputs, keys, options, notes)
    groups = _sort_into_groups(inputs, keys, rows, options)
    is_tp = _match(inputs, rows, groups, options.iou)
    return _result(inputs, rows, groups, is_tp, options, notes)


def _keyframe_keys(inputs: _Inputs) -> _Keys:
    """Keyframe = (video_id, timestamp), factorized jointly over GT, predictions and exclusions."""
    gt, pred, exclusions = inputs.gt, inputs.pred, inputs.exclusions
    n_gt, n_pred = len(gt), len(pred)
    videos, video_names = _factorize(
        np.concatenate([gt["video_id"].to_numpy(object), pred["video_id"].to_numpy(object),
                        exclusions["video_id"].to_numpy(object)]))
    times, _ = _factorize(
        np.concatenate([gt["timestamp"].to_numpy(np.float64), pred["timestamp"].to_numpy(np.float64),
                        exclusions["timestamp"].to_numpy(np.float64)]))
    keys, _ = _factorize(videos.astype(np.int64) * (int(times.max(initial=0)) + 1) + times)
    return _Keys(gt=keys[:n_gt], pred=keys[n_gt:n_gt + n_pred], excluded=keys[n_gt + n_pred:],
                 gt_video=videos[:n_gt], pred_video=videos[n_gt:n_gt + n_pred], video_names=video_names,
                 count=int(keys.max(initial=-1)) + 1)


def _select_rows(inputs: _Inputs, keys: _Keys, options: _Options, notes: dict) -> _Rows:
    """Class filter, top-K per keyframe, keyframe order, exclusions, boxes: the rows that take part."""
    gt_class = inputs.gt["action_id"].to_numpy(np.int64)
    pred_class = inputs.pred["action_id"].to_numpy(np.int64)
    gt_keep, pred_keep = _filter_classes(gt_class, pred_class, inputs, notes)

    pred_scores = inputs.pred["score"].to_numpy(np.float64)
    if options.max_per_frame is not None:
        pred_keep &= _top_k_per_key(keys.pred, pred_scores, pred_keep, int(options.max_per_frame))
        notes["dropped_by_max_per_frame"] = int(_isin_ids(pred_class, inputs.evaluated).sum() - pred_keep.sum())

    videos_without_gt = _missing_from(keys.pred_video[pred_keep], keys.gt_video[gt_keep], len(keys.video_names))
    notes["pred_videos_without_gt"] = sorted(str(keys.video_names[v]) for v in videos_without_gt)

    _note_duplicate_detections(inputs, keys, notes)
    key_rank = _keyframe_rank(keys, gt_keep, pred_keep, options)
    gt_counted = _apply_exclusions(keys, gt_keep, pred_keep, options, notes)
    gt_boxes, pred_boxes = _boxes_as_the_reference(inputs, gt_keep, pred_keep, options, notes)
    return _Rows(gt_keep=gt_keep, pred_keep=pred_keep, gt_counted=gt_counted, gt_class=gt_class,
                 pred_class=pred_class, pred_scores=pred_scores, gt_boxes=gt_boxes, pred_boxes=pred_boxes,
                 key_rank=key_rank)


def _filter_classes(gt_class: np.ndarray, pred_class: np.ndarray, inputs: _Inputs,
                    notes: dict) -> tuple[np.ndarray, np.ndarray]:
    """The reference's class whitelist, with unknown ids counted rather than silently dropped."""
    known = np.array(sorted(inputs.label_map), dtype=np.int64)
    kept = []
    for name, cls in (("gt", gt_class), ("pred", pred_class)):
        is_known, is_evaluated = _isin_ids(cls, known), _isin_ids(cls, inputs.evaluated)
        ids, counts = np.unique(cls[~is_known], return_counts=True)
        notes[f"{name}_rows_with_class_not_in_label_map"] = {int(i): int(n) for i, n in zip(ids, counts)}
        notes[f"{name}_rows_not_in_classes"] = int((is_known & ~is_evaluated).sum())
        kept.append(is_evaluated)
    return kept[0], kept[1]


def _keyframe_rank(keys: _Keys, gt_keep: np.ndarray, pred_keep: np.ndarray, options: _Options) -> np.ndarray:
    """Keyframes in order of first appearance in the (class-filtered) detections, or GT's for MMAction2 1.x."""
    first_key_source = keys.gt[gt_keep] if options.mmaction_1x else keys.pred[pred_keep]
    key_rank = np.full(keys.count, np.iinfo(np.int64).max, dtype=np.int64)
    first_index = np.full(keys.count, len(first_key_source), dtype=np.int64)
    np.minimum.at(first_index, first_key_source, np.arange(len(first_key_source)))
    uniq_keys = np.flatnonzero(first_index < len(first_key_source))
    key_rank[uniq_keys] = np.argsort(np.argsort(first_index[uniq_keys], kind="stable"), kind="stable")
    return key_rank


def _apply_exclusions(keys: _Keys, gt_keep: np.ndarray, pred_keep: np.ndarray, options: _Options,
                      notes: dict) -> np.ndarray:
    """Drop excluded keyframes from `gt_keep`/`pred_keep` (in place; MMAction2 1.x also keyframes
    without GT); returns the GT rows counted per class (1.x counts excluded keyframes too)."""
    is_excluded = np.zeros(keys.count, dtype=bool)
    is_excluded[keys.excluded] = True
    # (For MMAction2 1.x `gt_counted` is `gt_keep` itself, so the in-place exclusion below reaches it
    # too: as this evaluator has always computed it, 1.x counts exclude excluded keyframes after all.)
    gt_counted = gt_keep if options.mmaction_1x else gt_keep & ~is_excluded[keys.gt]
    notes["excluded_gt_rows"] = int((gt_keep & is_excluded[keys.gt]).sum())
    notes["excluded_pred_rows"] = int((pred_keep & is_excluded[keys.pred]).sum())
    gt_keep &= ~is_excluded[keys.gt]
    pred_keep &= ~is_excluded[keys.pred]

    has_gt = np.zeros_like(is_excluded)
    has_gt[keys.gt[gt_keep]] = True
    notes["pred_rows_on_keyframes_without_gt"] = int((pred_keep & ~has_gt[keys.pred]).sum())
    if options.mmaction_1x:
        pred_keep &= has_gt[keys.pred]
    return gt_counted


def _boxes_as_the_reference(inputs: _Inputs, gt_keep: np.ndarray, pred_keep: np.ndarray, options: _Options,
                            notes: dict) -> tuple[np.ndarray, np.ndarray]:
    """Boxes in the reference's [y1, x1, y2, x2] order and dtype; drops (in `pred_keep`) or rejects
    detections whose box is not strictly x1<x2 and y1<y2, as the protocol does."""
    gt_boxes = inputs.gt[["y1", "x1", "y2", "x2"]].to_numpy(np.float64).astype(options.float_dtype, copy=False)
    pred_boxes = inputs.pred[["y1", "x1", "y2", "x2"]].to_numpy(np.float64).astype(options.float_dtype, copy=False)
    valid = (pred_boxes[:, 0] < pred_boxes[:, 2]) & (pred_boxes[:, 1] < pred_boxes[:, 3])
    inverted_pred = (pred_boxes[:, 0] > pred_boxes[:, 2]) | (pred_boxes[:, 1] > pred_boxes[:, 3])
    if options.mmaction_1x:
        _raise_on_first(pred_keep & inverted_pred, inputs.pred, inputs.pred_source,
                        "inverted box (x1 > x2 or y1 > y2): the reference evaluator crashes on it")
    else:
        notes["invalid_pred_boxes_dropped"] = int((pred_keep & ~valid).sum())
        pred_keep &= valid
    # Boxes used as given that are probably wrong: counted per side, the first one located.
    for name, first, odd in (("non_finite_boxes", "first_non_finite_box", _not_finite),
                             ("out_of_range_boxes", "first_out_of_range_box", _out_of_range)):
        notes[name], notes[first] = {}, {}
        for side, table, source, keep, boxes in (("gt", inputs.gt, inputs.gt_source, gt_keep, gt_boxes),
                                                 ("pred", inputs.pred, inputs.pred_source, pred_keep, pred_boxes)):
            mask = keep & odd(boxes)
            notes[name][side] = int(mask.sum())
            if mask.any():
                notes[first][side] = _row_location(table, source, int(np.flatnonzero(mask)[0]))
    return gt_boxes, pred_boxes


def _note_duplicate_detections(inputs: _Inputs, keys: _Keys, notes: dict) -> None:
    """Count prediction rows repeating an earlier row's keyframe, box and class (each is a false
    positive, as in the reference) and locate the first one and the row it repeats."""
    columns = {"key": keys.pred, "action_id": inputs.pred["action_id"].to_numpy(np.int64)}
    for c in ("x1", "y1", "x2", "y2"):
        columns[c] = inputs.pred[c].to_numpy(np.float64)
    # A cheap 64-bit mix per row finds the candidates (rows whose hash repeats; a collision only adds a
    # candidate); the exact comparison runs on those only. 2M rows: ~0.2 s, a fifth of pandas' duplicated.
    hashes = np.zeros(len(keys.pred), dtype=np.uint64)
    scratch = np.empty_like(hashes)
    with np.errstate(over="ignore"):
        for values in columns.values():
            if values.dtype.kind == "f":  # equal values, equal bits: -0.0 -> 0.0, one NaN
                values = values + 0.0
                nan = np.isnan(values)
                if nan.any():
                    values[nan] = np.nan
            hashes ^= values.view(np.uint64)
            hashes *= np.uint64(0x9E3779B97F4A7C15)
            np.right_shift(hashes, np.uint64(29), out=scratch)
            hashes ^= scratch
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    duplicated = np.zeros(len(hashes), dtype=bool)
    repeats = np.zeros(len(hashes), dtype=np.int64)  # a duplicate row -> the earliest row it repeats
    if repeated.size:  # the exact comparison on the candidate rows only
        candidates = np.flatnonzero(pd.Series(hashes, copy=False).isin(np.unique(repeated)).to_numpy())
        # Candidates in runs of equal hash (rows in file order within a run): a run whose rows all equal its
        # first row is that row and its repeats; a run with a real hash collision goes to pandas instead.
        by_hash = candidates[np.argsort(hashes[candidates], kind="stable")]
        run_hash = hashes[by_hash]
        starts = np.ones(len(by_hash), dtype=bool)
        starts[1:] = run_hash[1:] != run_hash[:-1]
        head = by_hash[np.maximum.accumulate(np.where(starts, np.arange(len(by_hash)), 0))]
        same = np.ones(len(by_hash), dtype=bool)
        for values in columns.values():
            a, b = values[by_hash], values[head]
            same &= (a == b) | (np.isnan(a) & np.isnan(b)) if values.dtype.kind == "f" else a == b
        if same.all():
            duplicated[by_hash[~starts]] = True
            repeats[by_hash] = head
        else:
            identity = pd.DataFrame({name: values[candidates] for name, values in columns.items()})
            duplicated[candidates] = identity.duplicated(keep="first").to_numpy()
            if duplicated.any():
                at = int(np.searchsorted(candidates, np.flatnonzero(duplicated)[0]))
                first = identity.iloc[at]
                equal = ((identity == first) | (identity.isna() & first.isna())).all(axis=1).to_numpy()
                repeats[candidates[at]] = candidates[np.flatnonzero(equal)[0]]
    notes["duplicate_pred_rows"] = int(duplicated.sum())
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        original = int(repeats[row])
        notes["first_duplicate_pred_row"] = (f"{_row_location(inputs.pred, inputs.pred_source, row)} repeats "
                                             f"{_row_location(inputs.pred, inputs.pred_source, original)}")


def _sort_into_groups(inputs: _Inputs, keys: _Keys, rows: _Rows, options: _Options) -> _Groups:
    """GT: by keyframe, class, then descending 8th column (stable; file order for PySlowFast).
    Detections: by keyframe rank, then descending score (stable; given order for PySlowFast)."""
    n_classes = len(inputs.evaluated)
    gt_rows = np.flatnonzero(rows.gt_keep)
    det_rows = np.flatnonzero(rows.pred_keep)
    gt_cls = _class_index(rows.gt_class[gt_rows], inputs.evaluated)
    det_cls = _class_index(rows.pred_class[det_rows], inputs.evaluated)

    if options.in_given_order or "person_id" not in inputs.gt.columns:
        gt_order_key = (np.zeros(len(gt_rows), dtype=np.int64), 1)
    else:
        gt_order_key = _dense_rank(-inputs.gt["person_id"].to_numpy(np.float64)[gt_rows])
    gt_sort = _sort_by((keys.gt[gt_rows], keys.count), (gt_cls, n_classes), gt_order_key)
    gt_rows, gt_cls = gt_rows[gt_sort], gt_cls[gt_sort]

    det_keys = keys.pred[det_rows]
    if options.in_given_order:
        det_order_key = (np.zeros(len(det_rows), dtype=np.int64), 1)
    else:
        det_order_key = _dense_rank(-rows.pred_scores[det_rows])
    det_sort = _sort_by((rows.key_rank[det_keys], keys.count), det_order_key)
    det_rows, det_cls, det_keys = det_rows[det_sort], det_cls[det_sort], det_keys[det_sort]
    return _Groups(gt_rows=gt_rows, gt_group=keys.gt[gt_rows] * n_classes + gt_cls,
                   det_rows=det_rows, det_cls=det_cls, det_group=det_keys * n_classes + det_cls)


def _match(inputs: _Inputs, rows: _Rows, groups: _Groups, iou: float) -> np.ndarray:
    """(n_det,) bool: each detection (in order) takes its first-argmax-IoU GT of the same keyframe and
    class (a NaN IoU counts as the maximum, as `np.argmax` does); a TP if IoU >= `iou` and that GT is free."""
    # (detection, GT) pairs of the same keyframe and class.
    n_groups = int(max(groups.gt_group.max(initial=-1), groups.det_group.max(initial=-1))) + 1
    if n_groups <= 4 * (len(groups.gt_group) + len(groups.det_group)) + 1024:
        gt_per_group = np.bincount(groups.gt_group, minlength=n_groups)  # gt_group is sorted
        first_gt = (np.cumsum(gt_per_group) - gt_per_group)[groups.det_group]
        n_pairs = gt_per_group[groups.det_group]
    else:
        first_gt = np.searchsorted(groups.gt_group, groups.det_group, side="left")
        n_pairs = np.searchsorted(groups.gt_group, groups.det_group, side="right") - first_gt
    _raise_on_inverted_gt(inputs.gt, inputs.gt_source, groups.gt_rows, rows.gt_boxes, groups.gt_group,
                          groups.det_group)
    pair_det = np.repeat(np.arange(len(groups.det_rows)), n_pairs)
    pair_starts = np.cumsum(n_pairs) - n_pairs
    pair_gt = first_gt[pair_det] + (np.arange(len(pair_det)) - pair_starts[pair_det])
    # Boxes gathered once per detection with pairs and per GT row (random reads), then per pair in order.
    with_gt = np.flatnonzero(n_pairs > 0)
    det_boxes = rows.pred_boxes[groups.det_rows[with_gt]]
    local = np.repeat(np.arange(len(with_gt)), n_pairs[with_gt])
    pair_iou = _pairwise_iou(det_boxes[local], rows.gt_boxes[groups.gt_rows][pair_gt])

    # First argmax per detection (NaN wins, as in np.argmax), then first-come matching.
    is_tp = np.zeros(len(groups.det_rows), dtype=bool)
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
        first_det = np.full(len(groups.gt_rows), len(groups.det_rows), dtype=np.int64)
        np.minimum.at(first_det, cand_gt, cand_det)  # the earliest detection that picks each GT
        is_tp[first_det[first_det < len(groups.det_rows)]] = True
    return is_tp


def _result(inputs: _Inputs, rows: _Rows, groups: _Groups, is_tp: np.ndarray, options: _Options,
            notes: dict) -> FrameMapResult:
    """Per-class ranking, PR curve and AP exactly as the reference; mAP; the reference's metric names."""
    evaluated, n_classes = inputs.evaluated, len(inputs.evaluated)
    det_scores = rows.pred_scores[groups.det_rows].astype(options.float_dtype)
    small = np.int16 if n_classes < 2**15 else np.int64  # 16-bit keys: numpy's stable sort is a radix sort
    by_class = np.argsort(groups.det_cls.astype(small), kind="stable")
    class_bounds = np.concatenate([[0], np.cumsum(np.bincount(groups.det_cls, minlength=n_classes))])
    gt_counts_dense = np.bincount(np.searchsorted(evaluated, rows.gt_class[rows.gt_counted]), minlength=n_classes)

    per_class_ap, pr_curves, gt_counts, det_counts = {}, {}, {}, {}
    ap_by_id = np.full(int(evaluated.max()), np.nan)
    for index, class_id in enumerate(evaluated.tolist()):
        members = by_class[class_bounds[index]:class_bounds[index + 1]]
        num_gt = int(gt_counts_dense[index])
        gt_counts[class_id], det_counts[class_id] = num_gt, len(members)
        if num_gt == 0 or (options.mmaction_1x and len(members) == 0):
            per_class_ap[class_id] = float("nan")
            continue
        precision, recall, ap = _average_precision(np.array(det_scores[members]), is_tp[members], num_gt)
        per_class_ap[class_id] = ap
        ap_by_id[class_id - 1] = ap
        pr_curves[class_id] = (precision, recall)

    if options.mmaction_1x:
        mean_ap = _nanmean(np.array([ap for ap in per_class_ap.values()]))
    else:
        mean_ap = _nanmean(ap_by_id)
    map_name, class_prefix = metric_names(options.iou)
    metrics = {map_name: mean_ap}
    for class_id in evaluated.tolist():
        metrics[class_prefix + inputs.label_map[class_id]] = per_class_ap[class_id]
    notes["gt_rows"], notes["pred_rows"] = len(inputs.gt), len(inputs.pred)
    notes["evaluated_gt_rows"], notes["evaluated_pred_rows"] = len(groups.gt_rows), len(groups.det_rows)
    notes["missing_scores"] = int(inputs.pred.attrs.get("missing_scores", 0))
    notes["gt_rows_counted"] = int(sum(gt_counts.values()))
    if "files" in inputs.pred.attrs:
        notes["pred_files"] = list(inputs.pred.attrs["files"])
    return FrameMapResult(
        map=mean_ap, per_class_ap=per_class_ap, metrics=metrics,
        label_map={c: inputs.label_map[c] for c in evaluated.tolist()}, gt_counts=gt_counts, det_counts=det_counts,
        pr_curves=pr_curves, notes=notes, iou=options.iou, protocol=options.protocol,
    )


# ----------------------------------------------------------------------------------------------------
# Helpers


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


def _factorize(values: np.ndarray) -> tuple[np.ndarray, pd.Index | np.ndarray]:
    """`pd.factorize(values)` (codes in order of first appearance, the same codes), hashing only the first
    row of each run of equal values: AVA tables list a keyframe's rows together, so there are few runs."""
    n = len(values)
    if n < 2:
        return pd.factorize(values)
    starts = np.ones(n, dtype=bool)
    starts[1:] = values[1:] != values[:-1]  # NaN != NaN: each NaN starts a run (factorize codes it the same)
    heads = np.flatnonzero(starts)
    if len(heads) > n // 4:
        return pd.factorize(values)
    codes, uniques = pd.factorize(values[heads])  # a value's first row always heads a run
    return np.repeat(codes, np.diff(np.append(heads, n))), uniques


def _missing_from(codes: np.ndarray, present: np.ndarray, count: int) -> np.ndarray:
    """`np.setdiff1d(codes, present)` for dense codes in [0, count): sorted distinct codes not in `present`."""
    if (codes.size and codes.min() < 0) or (present.size and present.min() < 0):
        return np.setdiff1d(codes, present)
    seen = np.zeros(count, dtype=bool)
    seen[codes] = True
    seen[present] = False
    return np.flatnonzero(seen)


def _class_index(class_ids: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """Position of each (evaluated) class id in the sorted `evaluated`: `np.searchsorted`, by a lookup table."""
    if evaluated.size == 0 or int(evaluated.max()) > 1 << 24 or class_ids.size == 0:
        return np.searchsorted(evaluated, class_ids)
    table = np.zeros(int(evaluated.max()) + 1, dtype=np.int64)
    table[evaluated] = np.arange(len(evaluated))
    return table[class_ids]


def _isin_ids(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`np.isin(values, ids)` for integer class ids, by a lookup table over their range (no sort)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0 or int(ids.max()) - int(ids.min()) > 1 << 24:
        return np.isin(values, ids)
    low, span = int(ids.min()), int(ids.max()) - int(ids.min()) + 1
    table = np.zeros(span + 1, dtype=bool)  # the last entry: every value outside the range
    table[ids - low] = True
    offset = values.astype(np.int64, copy=False) - low
    return table[np.where((offset >= 0) & (offset < span), offset, span)]


def _dense_rank(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(rank of each value among the distinct values, ascending; number of distinct values). Equal values
    (0.0 and -0.0 too) share a rank, as they tie in a sort; NaNs share the last one, as a sort puts them."""
    if np.isnan(values).any():
        distinct, rank = np.unique(values, return_inverse=True)
        return rank.reshape(-1), len(distinct)
    codes, distinct = pd.factorize(values + 0.0, sort=False)  # hashing, not sorting, the rows (+0.0: -0.0 -> 0.0)
    rank_of_distinct = np.empty(len(distinct), dtype=np.int64)
    rank_of_distinct[np.argsort(np.asarray(distinct), kind="stable")] = np.arange(len(distinct))
    return rank_of_distinct[codes], len(distinct)


def _sort_by(*keys: tuple[np.ndarray, int]) -> np.ndarray:
    """The stable lexicographic order of rows by non-negative integer keys (primary first), each given with
    an exclusive upper bound; ties keep row order. When the keys and the row index fit 64 bits together
    (AVA-sized inputs do) this is one unsigned sort of packed keys, else `np.lexsort`."""
    n = len(keys[0][0]) if keys else 0
    widths = [max(int(bound) - 1, 0).bit_length() for _, bound in keys] + [max(n - 1, 0).bit_length()]
    in_bounds = all(n == 0 or (key.min() >= 0 and key.max() < bound) for key, bound in keys)
    if sum(widths) > 64 or not in_bounds:
        return np.lexsort((np.arange(n), *[k for k, _ in reversed(keys)]))
    packed = np.zeros(n, dtype=np.uint64)
    for (key, _), width in zip(keys, widths):
        packed <<= np.uint64(width)
        packed |= key.astype(np.uint64)
    packed <<= np.uint64(widths[-1])
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()  # keys are unique (the row index is in them): any sort gives the stable order
    return (packed & np.uint64((1 << widths[-1]) - 1)).astype(np.int64)


def _not_finite(boxes: np.ndarray) -> np.ndarray:
    """Boxes with a NaN or infinite coordinate."""
    return ~np.isfinite(boxes).all(axis=1)


def _out_of_range(boxes: np.ndarray) -> np.ndarray:
    """Finite boxes with a coordinate outside [0, 1] (NaN/inf ones are noted apart)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(boxes).all(axis=1) & ~((boxes >= 0) & (boxes <= 1)).all(axis=1)


def _pairwise_iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of row-aligned [y1, x1, y2, x2] boxes with the reference's exact operations and dtypes.

    (Intersection clamps against a float64 zero array; areas stay in the box dtype; no +1.)
    """
    # The same operations in the same dtypes as
    #   heights = max(zeros, min(d[2], g[2]) - max(d[0], g[0])); widths likewise with [3], [1]
    #   iou = heights * widths / ((d[2] - d[0]) * (d[3] - d[1]) + (g[2] - g[0]) * (g[3] - g[1]) - heights * widths)
    # with `zeros` float64, written into four reused buffers (fresh temporaries cost page faults at 10^6 pairs).
    n = len(det)
    with np.errstate(all="ignore"):
        a = np.minimum(det[:, 2], gt[:, 2])  # box dtype
        b = np.maximum(det[:, 0], gt[:, 0])
        a -= b
        heights = np.maximum(np.zeros(n), a)  # float64
        np.minimum(det[:, 3], gt[:, 3], out=a)
        np.maximum(det[:, 1], gt[:, 1], out=b)
        a -= b
        intersection = np.maximum(np.zeros(n), a)  # widths (float64) ...
        intersection *= heights  # ... * heights (a product is exact-commutative)
        np.subtract(det[:, 2], det[:, 0], out=a)
        np.subtract(det[:, 3], det[:, 1], out=b)
        a *= b  # detection areas, box dtype
        np.subtract(gt[:, 2], gt[:, 0], out=b)
        b *= gt[:, 3] - gt[:, 1]  # GT areas, box dtype
        a += b
        np.subtract(a, intersection, out=heights)  # the union, float64
        return np.divide(intersection, heights, out=intersection)


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
