"""`sfdet data check`: does the dataset line up before a training run finds out the hard way?

Per split: videos (or frame folders) found, missing and unreadable; keyframes with GT and
boxes per keyframe; keyframes whose time falls outside their video (a wrong
`data.time_offset`); excluded keyframes; GT boxes outside the frame (pixel instead of
normalised boxes); videos whose readable data ends well before their header says (cut, damaged); a class histogram that lists classes without any GT; and the recall of
the person proposals against GT at IoU 0.5 and 0.9. `check_dataset` raises `DataError`
when nothing lines up: no keyframe has both GT and a readable video, or every GT box lies
outside the frame.

Then warnings about what makes training on a small custom set fail silently (each says what to do):
classes with fewer than `MIN_TRAIN_INSTANCES` (10) training instances (GT rows = person boxes with that
action), classes with no GT in val (their AP cannot be measured), more than `MAX_UNCOVERED_FRACTION` (5%)
of a split's GT keyframes holding a GT box that no proposal (score >= `data.detection_score_thresh`)
covers at IoU `COVER_IOU` (0.5) (when proposals are configured), and a train class imbalance (most / fewest
instances of the classes that have some) above `MAX_IMBALANCE` (50:1).
With `data.classes` the report covers those classes only (rows of the others are counted and left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from sfdet.data import ava
from sfdet.data.config import DataConfig
from sfdet.data.dataset import find_video
from sfdet.data.frames import FrameFolder
from sfdet.data.labels import merge_gt_boxes, select_classes
from sfdet.data.timing import VideoFile
from sfdet.errors import DataError

RECALL_IOUS = (0.5, 0.9)
MIN_TRAIN_INSTANCES = 10  # fewer training instances (GT rows) of a class than this: a warning
MAX_IMBALANCE = 50.0  # train: most / fewest instances (classes with some) above this: a warning
COVER_IOU = 0.5  # a GT box no proposal overlaps this much is uncovered
MAX_UNCOVERED_FRACTION = 0.05  # more of a split's GT keyframes with an uncovered box than this: a warning


@dataclass
class SplitCheck:
    """What `check_split` found; `usable` = keyframes with GT, a readable video, inside its duration."""

    name: str
    lines: list[str] = field(default_factory=list)
    usable: int = 0
    gt_boxes: int = 0
    boxes_outside: int = 0
    class_counts: dict[int, int] | None = None  # GT rows per class of the label map; None: no GT read
    gt_keyframes: int = 0  # keyframes with GT, excluded ones left out
    uncovered: list[tuple[str, float]] | None = None  # of those, the ones with a GT box no proposal covers; None: no proposals
    warnings: list[str] = field(default_factory=list)


def _read(reader: Callable, path, what: str, lines: list[str], **kwargs) -> pd.DataFrame | None:
    """Read one file; a missing or malformed one becomes a report line instead of ending the report."""
    if path is None:
        lines.append(f"  {what}: not configured")
        return None
    try:
        return reader(path, **kwargs)
    except DataError as exc:
        lines.append(f"  {what}: ERROR {exc}")
        return None


def video_durations(cfg: DataConfig, video_ids, lines: list[str]) -> dict[str, float]:
    """Duration (seconds) of every readable video; missing and unreadable ones are reported.

    A video whose readable data ends well before its header's end (a cut or damaged file: demuxing its
    last seconds finds the end, `VideoFile.readable_end`) is reported, and its readable length is its duration.
    """
    durations, missing, unreadable, short = {}, [], [], []
    for video_id in tqdm(sorted(video_ids), desc="videos", unit="video", leave=False):
        try:
            if cfg.source == "video":
                path = find_video(cfg, video_id)
                if path is None:
                    missing.append(video_id)
                    continue
                with VideoFile(path) as file:
                    info, readable_end = file.info, file.readable_end()
                durations[video_id] = info.duration if info.duration > 0 else float("inf")
                if readable_end is not None and info.missing_tail(readable_end):
                    durations[video_id] = readable_end
                    short.append(f"{video_id} (readable to {readable_end:.2f} s, the header says "
                                 f"{info.header_end:.2f} s)")
            else:
                folder = FrameFolder(cfg.path(cfg.frames_dir), video_id, cfg.fps)
                if not folder.directory.is_dir():
                    missing.append(video_id)
                    continue
                durations[video_id] = len(folder) / cfg.fps
        except DataError as exc:
            unreadable.append(f"{video_id} ({exc})")
    where = cfg.path(cfg.video_dir if cfg.source == "video" else cfg.frames_dir)
    kind = "videos" if cfg.source == "video" else "frame folders"
    lines.append(f"  {kind} in {where}: {len(durations)} found, {len(missing)} missing, {len(unreadable)} unreadable")
    if missing:
        lines.append(f"    missing: {_listing(missing)}")
    for entry in unreadable[:5]:
        lines.append(f"    unreadable: {entry}")
    if short:
        lines.append(f"  videos cut short or damaged: {len(short)} (keyframes past the readable end cannot be read; "
                     "re-encode or replace them)")
        for entry in short[:5]:
            lines.append(f"    cut short: {entry}")
    return durations


def best_proposal_ious(gt: pd.DataFrame, proposals: pd.DataFrame, label_ids,
                       score_thresh: float) -> dict[tuple[str, float], np.ndarray]:
    """{keyframe: best IoU of each of its GT person boxes (merged over actions) with a proposal >= `score_thresh`}."""
    gt_boxes = merge_gt_boxes(gt, label_ids)
    kept = proposals[proposals["score"] >= score_thresh]
    by_key = {
        (str(v), float(t)): kept[ava.BOX_COLUMNS].to_numpy(np.float64)[rows]
        for (v, t), rows in kept.groupby(["video_id", "timestamp"], sort=False).indices.items()
    }
    out = {}
    for key, target in gt_boxes.items():
        boxes = by_key.get(key)
        if boxes is None or len(boxes) == 0:
            out[key] = np.zeros(len(target.boxes_norm))
            continue
        out[key] = box_iou(torch.from_numpy(target.boxes_norm).double(),
                           torch.from_numpy(boxes)).max(dim=1).values.numpy()
    return out


def proposal_recall(gt: pd.DataFrame, proposals: pd.DataFrame, label_ids, score_thresh: float) -> dict[float, float]:
    """Fraction of GT person boxes (merged over actions) that a proposal >= `score_thresh` covers at each IoU."""
    best = best_proposal_ious(gt, proposals, label_ids, score_thresh)
    ious = np.concatenate(list(best.values())) if best else np.zeros(0)
    return {iou: float((ious >= iou).mean()) if len(ious) else float("nan") for iou in RECALL_IOUS}


def check_split(cfg: DataConfig, split: str, label_map: dict[int, str],
                full_label_map: dict[int, str] | None = None) -> SplitCheck:
    """The report of one split; `label_map`: the classes checked (`data.classes`), `full_label_map`: the file's."""
    full_label_map = label_map if full_label_map is None else full_label_map
    result = SplitCheck(split)
    lines = result.lines
    gt_path, exclusions_path, proposals_path = cfg.split_files(split)
    lines.append(f"{split}:")
    gt = _read(ava.read_gt_csv, gt_path, "GT", lines, skip_bad_rows=cfg.skip_bad_rows, check_boxes=False)
    if gt is None:
        return result
    unknown = ~gt["action_id"].isin(list(full_label_map))
    if unknown.any():
        lines.append(f"  {int(unknown.sum())} GT rows have action ids not in the label map "
                     f"(e.g. {int(gt.loc[unknown, 'action_id'].iloc[0])}): ignored")
        gt = gt[~unknown]
    left_out = ~gt["action_id"].isin(list(label_map))
    if left_out.any():
        dropped = gt[left_out].drop_duplicates(["video_id", "timestamp", *ava.BOX_COLUMNS])
        gt = gt[~left_out]
        kept = gt.drop_duplicates(["video_id", "timestamp", *ava.BOX_COLUMNS])
        gone = len(dropped.merge(kept, on=["video_id", "timestamp", *ava.BOX_COLUMNS], how="left",
                                 indicator=True).query("_merge == 'left_only'"))
        lines.append(f"  {int(left_out.sum())} GT rows of classes data.classes leaves out: dropped "
                     f"({gone} person boxes have no class left and go with them)")
    exclusions = _read(ava.read_exclusions, exclusions_path, "exclusions", lines, skip_bad_rows=cfg.skip_bad_rows)
    excluded = set() if exclusions is None else set(zip(exclusions["video_id"].astype(str), exclusions["timestamp"]))

    boxes = gt.drop_duplicates(["video_id", "timestamp", *ava.BOX_COLUMNS])
    keyframes = boxes.groupby(["video_id", "timestamp"], sort=False).size()
    result.gt_boxes = len(boxes)
    xyxy = boxes[ava.BOX_COLUMNS].to_numpy(np.float64)
    outside = (xyxy[:, 0] >= 1) | (xyxy[:, 1] >= 1) | (xyxy[:, 2] <= 0) | (xyxy[:, 3] <= 0) | ~np.isfinite(xyxy).all(1)
    result.boxes_outside = int(outside.sum())
    per_keyframe = keyframes.to_numpy()
    lines.append(f"  GT {gt_path}: {len(gt)} rows, {len(keyframes)} keyframes, {len(boxes)} person boxes "
                 f"({per_keyframe.mean() if len(per_keyframe) else 0:.2f} per keyframe, max {per_keyframe.max(initial=0)}), "
                 f"{gt['video_id'].nunique()} videos")
    if result.boxes_outside:
        lines.append(f"  GT boxes outside the frame: {result.boxes_outside} of {len(boxes)} "
                     "(boxes must be normalised x1,y1,x2,y2 in [0,1])")
    keys = [(str(v), float(t)) for v, t in keyframes.index]
    lines.append(f"  excluded keyframes: {len(excluded)} ({sum(k in excluded for k in keys)} of them have GT)")

    durations = video_durations(cfg, {v for v, _ in keys}, lines)
    with_video = [k for k in keys if k[0] in durations and k not in excluded]
    times = np.array([t - cfg.time_offset for _, t in with_video])
    limits = np.array([durations[v] for v, _ in with_video])
    inside = (times >= 0) & (times <= limits)
    result.usable = int(inside.sum())
    lines.append(f"  keyframes with GT and a readable video: {result.usable} of {len(keys)}")
    if (~inside).any():
        first = with_video[int(np.flatnonzero(~inside)[0])]
        lines.append(f"  keyframes outside their video's duration: {int((~inside).sum())} (e.g. {first[0]} at "
                     f"{first[1]:g} s = video time {first[1] - cfg.time_offset:g} s): check data.time_offset "
                     f"(now {cfg.time_offset:g})")

    counts = gt.groupby("action_id")["video_id"].size()
    result.class_counts = {class_id: int(counts.get(class_id, 0)) for class_id in label_map}
    lines.append("  GT boxes per class:")
    for class_id, name in label_map.items():
        count = result.class_counts[class_id]
        lines.append(f"    {class_id:4d} {name[:40]:40s} {count:7d}{'   <- no GT' if count == 0 else ''}")

    proposals = _read(ava.read_proposals, proposals_path, "proposals", lines, skip_bad_rows=cfg.skip_bad_rows)
    result.gt_keyframes = sum(k not in excluded for k in keys)
    if proposals is not None:
        kept = proposals[proposals["score"] >= cfg.detection_score_thresh]
        best = best_proposal_ious(gt, proposals, list(label_map), cfg.detection_score_thresh)
        ious = np.concatenate(list(best.values())) if best else np.zeros(0)
        result.uncovered = sorted(k for k, v in best.items() if k not in excluded and (v < COVER_IOU).any())
        lines.append(f"  proposals {proposals_path}: {len(proposals)} boxes, {len(kept)} with score >= "
                     f"{cfg.detection_score_thresh:g}; GT recall " +
                     ", ".join(f"{(ious >= iou).mean() if len(ious) else float('nan'):.3f} at IoU {iou:g}"
                               for iou in RECALL_IOUS) +
                     f"; keyframes with a GT box no proposal covers at IoU {COVER_IOU:g}: "
                     f"{len(result.uncovered)} of {result.gt_keyframes}")
    return result


def _classes(ids, label_map: dict[int, str], counts: dict[int, int] | None = None, limit: int = 8) -> str:
    ids = list(ids)
    shown = [f"{i} {label_map[i]}" + (f" ({counts[i]})" if counts is not None else "") for i in ids[:limit]]
    return ", ".join(shown) + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def _have(items) -> str:
    return "has" if len(items) == 1 else "have"


def dataset_warnings(train: SplitCheck, val: SplitCheck, label_map: dict[int, str], cfg: DataConfig) -> list[str]:
    """What would make a training run fail silently, each with what to do (see the module docstring)."""
    out = []
    counts = train.class_counts
    if counts is not None:
        few = [i for i in label_map if counts[i] < MIN_TRAIN_INSTANCES]
        if few:
            out.append(f"train: {len(few)} of {_plural(len(label_map), 'class')} {_have(few)} fewer than "
                       f"{MIN_TRAIN_INSTANCES} training instances (GT boxes): {_classes(few, label_map, counts)}; "
                       "a class needs tens of examples to be learnt: annotate more of them, or train without "
                       "them (list the classes to keep in data.classes)")
        some = {i: n for i, n in counts.items() if n > 0}
        if len(some) > 1:
            most, fewest = max(some, key=some.get), min(some, key=some.get)
            ratio = some[most] / some[fewest]
            if ratio > MAX_IMBALANCE:
                out.append(f"train: class imbalance {ratio:.0f}:1 (most: {most} {label_map[most]} {some[most]} "
                           f"instances, fewest: {fewest} {label_map[fewest]} {some[fewest]}), above "
                           f"{MAX_IMBALANCE:g}:1; rare classes get few gradients and may never score high: annotate "
                           "more of the rare classes, or leave them out (data.classes)")
    for split in (train, val):
        if split.name == "val" and val.class_counts is not None:
            absent = [i for i in label_map if val.class_counts[i] == 0]
            if absent:
                out.append(f"val: {len(absent)} of {_plural(len(label_map), 'class')} {_have(absent)} no GT in val: "
                           f"{_classes(absent, label_map)}; their AP cannot be measured (the val mAP leaves them out): "
                           "annotate them in val videos, or split the videos again (`sfdet data import "
                           "--val-fraction / --seed`)")
        if split.uncovered is None or not split.gt_keyframes or (split.name == "val" and cfg.val_boxes == "gt"):
            continue  # no proposals, or validation scores the GT boxes
        fraction = len(split.uncovered) / split.gt_keyframes
        if fraction > MAX_UNCOVERED_FRACTION:
            video_id, timestamp = split.uncovered[0]
            effect = ("those persons train on their GT box only, and people like them are missed at test time"
                      if split.name == "train" else
                      "validation never scores those persons, their GT counts as missed")
            out.append(f"{split.name}: {len(split.uncovered)} of {split.gt_keyframes} keyframes with GT "
                       f"({fraction:.0%}) have a GT box that no proposal with score >= "
                       f"{cfg.detection_score_thresh:g} covers at IoU {COVER_IOU:g} (e.g. {video_id} at "
                       f"{timestamp:g} s); {effect}: check that the proposals are of these videos and "
                       "timestamps, lower data.detection_score_thresh, or fine-tune a person detector "
                       "(`sfdet train-detector`) and rerun `sfdet proposals`")
    return out


def check_dataset(cfg: DataConfig, print_line: Callable[[str], None] = print) -> list[SplitCheck]:
    """Print the report line by line; raise `DataError` when nothing lines up."""
    where = cfg.path(cfg.video_dir if cfg.source == "video" else cfg.frames_dir)
    print_line(f"sfdet data check: {cfg.root} (source: {cfg.source}, {where}; time_offset {cfg.time_offset:g})")
    label_map_path = cfg.path(cfg.label_map)
    if label_map_path is None:
        raise DataError("config key 'data.label_map' is empty: the check needs the label map")
    full_label_map = ava.read_label_map(label_map_path)
    label_map = select_classes(full_label_map, cfg.classes, source=label_map_path)
    print_line(f"label map {label_map_path}: {len(full_label_map)} classes" +
               (f"; data.classes keeps {len(label_map)}: {_classes(label_map, label_map)}" if cfg.classes else ""))
    results = []
    for split in ("train", "val"):
        result = check_split(cfg, split, label_map, full_label_map)
        for line in result.lines:
            print_line(line)
        results.append(result)
    total_boxes = sum(r.gt_boxes for r in results)
    if total_boxes and sum(r.boxes_outside for r in results) == total_boxes:
        raise DataError("nothing lines up: every GT box is outside the frame; boxes must be normalised "
                        "x1,y1,x2,y2 in [0,1] (divide pixel coordinates by the frame size)")
    if sum(r.usable for r in results) == 0:
        raise DataError("nothing lines up: no keyframe has both GT and a readable "
                        f"{'video' if cfg.source == 'video' else 'frame folder'} inside its duration; "
                        "check data.root, data.video_dir / data.frames_dir and data.time_offset")
    warnings = dataset_warnings(results[0], results[1], label_map, cfg)
    for line in warnings:
        print_line(f"warning: {line}")
    results[0].warnings = [w for w in warnings if w.startswith("train:")]
    results[1].warnings = [w for w in warnings if w.startswith("val:")]
    print_line("ok: " + ", ".join(f"{r.name} {r.usable} usable keyframes" for r in results) +
               (f" ({_plural(len(warnings), 'warning')} above)" if warnings else ""))
    return results


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... (+{len(items) - limit})" if len(items) > limit else "")
