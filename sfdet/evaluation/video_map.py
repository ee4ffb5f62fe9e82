"""Video-mAP (and frame-mAP on densely annotated frames) of tube benchmarks, exactly as the MultiSports
evaluation computes them (MMAction2 1.x `mmaction/evaluation/functional/multisports_utils.py`, `frameAP` and
`videoAP`, adapted from MCG-NJU/MultiSports; the same code scores UCF101-24 and JHMDB-21 in ACT/YOWO style).

Ground truth: the tube pickle of ACT / YOWO / MMAction2 (`UCF101v2-GT.pkl`, `JHMDB-GT.pkl`,
`multisports_GT.pkl`): `labels` (names), `gttubes` {video: {label_index: [(n, 5) frame, x1, y1, x2, y2]}},
`nframes` {video: n}, `resolution` {video: (h, w)}, `test_videos` (list of lists; split 0 is evaluated).
Frames are 1-based, boxes in pixels.

- video-AP at IoU `thr`, per class: tubes (`tubes.link_tubes`) ranked by score (`np.argsort`, so ties
  resolve as in the reference); each takes the GT tube of its video and class with the highest
  spatio-temporal IoU (`tubes.tube_iou`; the first on ties) and is a TP when that IoU >= thr and the GT
  tube is still free; otherwise an FP (no fallback to the second best). AP = VOC all-points area under the
  monotone precision envelope. Classes without GT tubes are left out of the mean, as are MultiSports' six
  classes the reference never evaluates (`NOT_EVALUATED`, by name).
- frame-AP at IoU `thr`: the same greedy matching per (video, frame) against every GT tube box of the
  class (every annotated frame), detections ranked by score.
Results are fractions (the reference prints percentages: 100 x these).

sfdet's predictions (AVA CSV rows: video_id, timestamp, normalised box, action_id, score) become detections
with `detections_from_predictions`: frame = round((timestamp - time_offset) * fps) + frame_shift, boxes
scaled by the GT's `resolution`, classes matched to the GT's `labels` by label-map name; one class per box:
its best-scoring one (`label_mode="argmax"`, what MMAction2's MultiSportsMetric feeds the evaluation) or
every listed class (`"all"`, ACT's per-class linking).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sfdet.fileio import read_pickle
from sfdet.errors import DataError
from sfdet.evaluation.tubes import MIN_TUBE_LENGTH, Tube, check_detections, iou2d, link_tubes, tube_iou

# MultiSports classes the reference skips (hard-coded in its frameAP / videoAP).
NOT_EVALUATED = ("aerobic kick jump", "aerobic off axis jump", "aerobic butterfly jump", "aerobic balance turn",
                 "basketball save", "basketball jump ball")
VIDEO_IOUS = (0.2, 0.5)
LABEL_MODES = ("argmax", "all")


# ----------------------------------------------------------------------------------------------------
# Ground truth


def read_tube_gt(source) -> dict:
    """The GT tube pickle (a path; a dict is checked and returned). Python 2 pickles (UCF101-24, JHMDB) are
    read with latin-1 strings. A missing key or a test video without `nframes` is a DataError."""
    if isinstance(source, Mapping):
        gt, name = dict(source), "<GT dict>"
    else:
        name = os.fspath(source)
        gt = read_pickle(source, "GT tube pickle")
    if not isinstance(gt, Mapping):
        raise DataError(f"{name}: a GT tube pickle holds a dict, got {type(gt).__name__}")
    missing = [key for key in ("labels", "gttubes", "nframes", "test_videos") if key not in gt]
    if missing:
        raise DataError(f"{name}: GT tube pickle lacks {', '.join(missing)} "
                        "(expected labels, gttubes, nframes, resolution, train_videos, test_videos)")
    gt["labels"] = [_text(label) for label in gt["labels"]]
    if not gt["test_videos"] or not isinstance(gt["test_videos"][0], (list, tuple)):
        raise DataError(f"{name}: test_videos must be a list of split lists (split 0 is evaluated)")
    for video in gt["test_videos"][0]:
        if video not in gt["nframes"]:
            raise DataError(f"{name}: test video {video!r} has no nframes entry")
    return gt


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def test_videos(gt: Mapping) -> list[str]:
    return list(gt["test_videos"][0])


def _gt_tubes(gt: Mapping, video: str) -> Mapping:
    return gt["gttubes"].get(video, {}) if isinstance(gt["gttubes"], Mapping) else {}


def evaluated_labels(gt: Mapping, not_evaluated: Sequence[str] = NOT_EVALUATED) -> list[int]:
    return [i for i, label in enumerate(gt["labels"]) if label not in set(not_evaluated)]


# ----------------------------------------------------------------------------------------------------
# AP


def average_precision(is_tp: np.ndarray, num_gt: int) -> float:
    """VOC all-points AP of detections in ranking order (the reference's `pr_to_ap_voc` of its pr array)."""
    is_tp = np.asarray(is_tp, dtype=bool)
    tp = np.cumsum(is_tp)
    count = np.arange(1, len(is_tp) + 1)
    precision = np.concatenate([[0], tp / count, [0]])
    recall = np.concatenate([[0], tp / num_gt, [1]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[indices] - recall[indices - 1]) * precision[indices]))


@dataclass
class ApResult:
    """AP per evaluated class (label index -> AP fraction) and their mean (NaN when no class has GT)."""

    iou: float
    map: float
    per_class_ap: dict[int, float]
    gt_counts: dict[int, int]
    det_counts: dict[int, int]


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def video_ap(gt: Mapping, tubes: Mapping[int, Sequence[Tube]], iou: float,
             not_evaluated: Sequence[str] = NOT_EVALUATED) -> ApResult:
    """Video-AP of linked tubes ({label_index: [(video, score, boxes)]}) at spatio-temporal IoU `iou`."""
    videos = test_videos(gt)
    per_class, gt_counts, det_counts = {}, {}, {}
    for label in evaluated_labels(gt, not_evaluated):
        detections = list(tubes.get(label, []))
        gt_of_class = {}
        for video in videos:
            of_video = _gt_tubes(gt, video).get(label)
            if of_video is not None and len(of_video) > 0:
                gt_of_class[video] = [np.asarray(t) for t in of_video]
        num_gt = sum(len(g) for g in gt_of_class.values())
        if num_gt == 0:
            continue
        matched = {video: np.zeros(len(g), dtype=bool) for video, g in gt_of_class.items()}
        order = np.argsort(-np.array([d[1] for d in detections]))
        is_tp = np.zeros(len(detections), dtype=bool)
        for rank, j in enumerate(order):
            video, _, boxes = detections[j]
            if video not in gt_of_class:
                continue
            ious = [tube_iou(g, boxes) for g in gt_of_class[video]]
            best = np.argmax(ious)
            if ious[best] >= iou and not matched[video][best]:
                matched[video][best] = True
                is_tp[rank] = True
        per_class[label] = average_precision(is_tp, num_gt)
        gt_counts[label], det_counts[label] = num_gt, len(detections)
    return ApResult(iou, _mean(per_class.values()), per_class, gt_counts, det_counts)


def frame_ap(gt: Mapping, detections: np.ndarray, iou: float = 0.5,
             not_evaluated: Sequence[str] = NOT_EVALUATED) -> ApResult:
    """Frame-AP of per-frame detections ((N, 8) rows, `tubes.DET_COLUMNS`) against every annotated frame."""
    videos = test_videos(gt)
    dets = check_detections(detections, videos, gt["nframes"], len(gt["labels"]))
    per_class, gt_counts, det_counts = {}, {}, {}
    for label in evaluated_labels(gt, not_evaluated):
        of_label = dets[dets[:, 2] == label]
        boxes_at: dict[tuple[int, int], list] = {}
        for iv, video in enumerate(videos):
            for tube in _gt_tubes(gt, video).get(label, []):
                tube = np.asarray(tube)
                for row in tube:
                    boxes_at.setdefault((iv, int(row[0])), []).append(row[1:5].tolist())
        gt_boxes = {key: np.array(value) for key, value in boxes_at.items()}
        num_gt = sum(g.shape[0] for g in gt_boxes.values())
        if num_gt == 0:
            continue
        matched: dict[tuple[int, int], np.ndarray] = {}
        is_tp = np.zeros(of_label.shape[0], dtype=bool)
        for rank, j in enumerate(np.argsort(-of_label[:, 3])):
            key = (int(of_label[j, 0]), int(of_label[j, 1]))
            if key not in gt_boxes:
                continue
            used = matched.setdefault(key, np.zeros(gt_boxes[key].shape[0], dtype=bool))
            ious = iou2d(gt_boxes[key], of_label[j, 4:8])
            best = np.argmax(ious)
            if ious[best] >= iou and not used[best]:
                used[best] = True
                is_tp[rank] = True
        per_class[label] = average_precision(is_tp, num_gt)
        gt_counts[label], det_counts[label] = num_gt, int(of_label.shape[0])
    return ApResult(iou, _mean(per_class.values()), per_class, gt_counts, det_counts)


# ----------------------------------------------------------------------------------------------------
# sfdet predictions -> detections


def detections_from_predictions(pred: pd.DataFrame, gt: Mapping, label_map: Mapping[int, str], fps: float,
                                time_offset: float = 0.0, frame_shift: int = 0,
                                label_mode: str = "argmax") -> tuple[np.ndarray, dict]:
    """AVA prediction rows -> ((N, 8) detections, notes). See the module docstring for the mapping."""
    if label_mode not in LABEL_MODES:
        raise DataError(f"label_mode must be one of {', '.join(LABEL_MODES)}, got {label_mode!r}")
    if not fps or fps <= 0:
        raise DataError(f"fps must be positive, got {fps!r}")
    labels = list(gt["labels"])
    unknown = [name for name in label_map.values() if name not in labels]
    if unknown:
        raise DataError(f"label map class {unknown[0]!r} is not among the GT's {len(labels)} labels "
                        f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}); the names must match")
    label_index = {int(cid): labels.index(name) for cid, name in label_map.items()}
    videos = test_videos(gt)
    video_index = {video: i for i, video in reversed(list(enumerate(videos)))}
    notes: dict = {}
    table = pred.reset_index(drop=True)
    action = table["action_id"].to_numpy(np.int64)
    known_class = np.isin(action, list(label_index))
    known_video = table["video_id"].astype(str).isin(video_index).to_numpy()
    notes["unknown_class_rows"] = int((~known_class).sum())
    notes["unknown_video_rows"] = int((known_class & ~known_video).sum())
    table = table[known_class & known_video]
    if table.empty:
        return np.zeros((0, 8)), notes
    vid = table["video_id"].astype(str).map(video_index).to_numpy(np.int64)
    frame = np.round((table["timestamp"].to_numpy(np.float64) - time_offset) * fps).astype(np.int64) + frame_shift
    limit = np.array([gt["nframes"][videos[v]] for v in vid])
    inside = (frame >= 1) & (frame <= limit)
    notes["outside_frames_rows"] = int((~inside).sum())
    resolution = gt.get("resolution", {})
    missing_res = sorted({videos[v] for v in vid if videos[v] not in resolution})
    if missing_res:
        raise DataError(f"the GT has no resolution for video {missing_res[0]!r} (needed to scale boxes to pixels)")
    hw = np.array([resolution[videos[v]] for v in vid], dtype=np.float64).reshape(-1, 2)
    scale = np.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], axis=1)
    boxes = table[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) * scale
    cls = np.array([label_index[a] for a in table["action_id"].to_numpy(np.int64)], dtype=np.int64)
    dets = np.column_stack([vid, frame, cls, table["score"].to_numpy(np.float64), boxes])[inside]
    if label_mode == "argmax" and len(dets):
        dets = _best_class_per_box(dets, table[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)[inside])
    notes["detections"] = int(len(dets))
    return dets, notes


def _best_class_per_box(dets: np.ndarray, boxes_norm: np.ndarray) -> np.ndarray:
    """One row per (video, frame, box): the best-scoring class (lowest label index on ties), in first-seen order."""
    keys = pd.DataFrame({"v": dets[:, 0], "f": dets[:, 1], "x1": boxes_norm[:, 0], "y1": boxes_norm[:, 1],
                         "x2": boxes_norm[:, 2], "y2": boxes_norm[:, 3]})
    group = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy()
    order = np.lexsort((dets[:, 2], -dets[:, 3], group))  # per group: best score, then lowest label
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    first = first[np.argsort(group[first], kind="stable")]
    return dets[first]


# ----------------------------------------------------------------------------------------------------
# Everything at once


@dataclass
class VideoMapResult:
    labels: list[str]
    video: dict[float, ApResult]  # IoU -> video-AP
    frame: ApResult | None
    num_tubes: dict[int, int]
    notes: dict = field(default_factory=dict)
    len_thre: int = MIN_TUBE_LENGTH

    def metrics(self) -> dict[str, float]:
        out = {f"v_map@{iou:g}": r.map for iou, r in self.video.items()}
        if self.frame is not None:
            out[f"frame_map@{self.frame.iou:g}"] = self.frame.map
        return out


def evaluate_video_map(gt, detections: np.ndarray, ious: Sequence[float] = VIDEO_IOUS,
                       len_thre: int = MIN_TUBE_LENGTH, frame_iou: float | None = 0.5,
                       not_evaluated: Sequence[str] = NOT_EVALUATED, notes: dict | None = None) -> VideoMapResult:
    """Link `detections` into tubes and compute video-AP at each IoU (and frame-AP at `frame_iou`)."""
    gt = read_tube_gt(gt)
    videos = test_videos(gt)
    tubes = link_tubes(detections, videos, gt["nframes"], len(gt["labels"]), len_thre=len_thre)
    video = {float(iou): video_ap(gt, tubes, iou, not_evaluated) for iou in ious}
    frame = frame_ap(gt, detections, frame_iou, not_evaluated) if frame_iou is not None else None
    return VideoMapResult(list(gt["labels"]), video, frame, {k: len(v) for k, v in tubes.items()},
                          dict(notes or {}), len_thre)


def video_map(gt, pred, label_map, fps: float, time_offset: float = 0.0, frame_shift: int = 0,
              label_mode: str = "argmax", **options) -> VideoMapResult:
    """`sfdet eval --video-map`: GT pickle (path or dict), predictions (CSV path, folder or DataFrame), label map
    (path or {id: name}) -> VideoMapResult."""
    from sfdet.data.ava import read_label_map
    from sfdet.evaluation.frame_map import read_predictions

    gt = read_tube_gt(gt)
    if isinstance(pred, pd.DataFrame):
        table = pred
    else:
        if not Path(pred).exists():
            raise DataError(f"{pred}: no such predictions file or folder")
        table = read_predictions(pred)
    labels = label_map if isinstance(label_map, Mapping) else read_label_map(label_map)
    dets, notes = detections_from_predictions(table, gt, labels, fps, time_offset, frame_shift, label_mode)
    return evaluate_video_map(gt, dets, notes=notes, **options)


def format_video_table(result: VideoMapResult) -> str:
    """Per-class AP (%) at every IoU, then the means, as plain text."""
    ious = sorted(result.video)
    head = ["class"] + [f"video-AP@{iou:g}" for iou in ious] + ([f"frame-AP@{result.frame.iou:g}"] if result.frame else [])
    classes = sorted(set().union(*(r.per_class_ap for r in result.video.values()),
                                 result.frame.per_class_ap if result.frame else {}))
    width = max([len(head[0])] + [len(result.labels[c]) for c in classes])
    lines = ["  ".join([head[0].ljust(width)] + [h.rjust(12) for h in head[1:]])]

    def cell(r: ApResult | None, c: int) -> str:
        return f"{100 * r.per_class_ap[c]:12.2f}" if r is not None and c in r.per_class_ap else f"{'-':>12}"

    for c in classes:
        cells = [cell(result.video[iou], c) for iou in ious] + ([cell(result.frame, c)] if result.frame else [])
        lines.append("  ".join([result.labels[c].ljust(width)] + cells))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [f"{100 * result.video[iou].map:12.2f}" for iou in ious]
        if result.frame:
            means.append(f"{100 * result.frame.map:12.2f}")
    lines.append("  ".join(["mAP".ljust(width)] + means))
    return "\n".join(lines)
