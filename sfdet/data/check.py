"""`sfdet data check`: does the dataset line up before a training run finds out the hard way?

Per split: videos (or frame folders) found, missing and unreadable; keyframes with GT and
boxes per keyframe; keyframes whose time falls outside their video (a wrong
`data.time_offset`); excluded keyframes; GT boxes outside the frame (pixel instead of
normalised boxes); a class histogram that lists classes without any GT; and the recall of
the person proposals against GT at IoU 0.5 and 0.9. `check_dataset` raises `DataError`
when nothing lines up: no keyframe has both GT and a readable video, or every GT box lies
outside the frame.
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
from sfdet.data.labels import merge_gt_boxes
from sfdet.data.video import VideoReader
from sfdet.errors import DataError

RECALL_IOUS = (0.5, 0.9)


@dataclass
class SplitCheck:
    """What `check_split` found; `usable` = keyframes with GT, a readable video, inside its duration."""

    name: str
    lines: list[str] = field(default_factory=list)
    usable: int = 0
    gt_boxes: int = 0
    boxes_outside: int = 0


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
    """Duration (seconds) of every readable video; missing and unreadable ones are reported."""
    durations, missing, unreadable = {}, [], []
    for video_id in tqdm(sorted(video_ids), desc="videos", unit="video", leave=False):
        try:
            if cfg.source == "video":
                path = find_video(cfg, video_id)
                if path is None:
                    missing.append(video_id)
                    continue
                with VideoReader(path) as reader:
                    info = reader.info
                durations[video_id] = info.duration if info.duration > 0 else float("inf")
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
    return durations


def proposal_recall(gt: pd.DataFrame, proposals: pd.DataFrame, label_ids, score_thresh: float) -> dict[float, float]:
    """Fraction of GT person boxes (merged over actions) that a proposal >= `score_thresh` covers at each IoU."""
    gt_boxes = merge_gt_boxes(gt, label_ids)
    kept = proposals[proposals["score"] >= score_thresh]
    by_key = {
        (str(v), float(t)): kept[ava.BOX_COLUMNS].to_numpy(np.float64)[rows]
        for (v, t), rows in kept.groupby(["video_id", "timestamp"], sort=False).indices.items()
    }
    found = dict.fromkeys(RECALL_IOUS, 0)
    total = 0
    for key, target in gt_boxes.items():
        total += len(target.boxes_norm)
        boxes = by_key.get(key)
        if boxes is None or len(boxes) == 0:
            continue
        best = box_iou(torch.from_numpy(target.boxes_norm).double(), torch.from_numpy(boxes)).max(dim=1).values
        for iou in RECALL_IOUS:
            found[iou] += int((best >= iou).sum())
    return {iou: found[iou] / total if total else float("nan") for iou in RECALL_IOUS}


def check_split(cfg: DataConfig, split: str, label_map: dict[int, str]) -> SplitCheck:
    result = SplitCheck(split)
    lines = result.lines
    gt_path, exclusions_path, proposals_path = cfg.split_files(split)
    lines.append(f"{split}:")
    gt = _read(ava.read_gt_csv, gt_path, "GT", lines, skip_bad_rows=cfg.skip_bad_rows, check_boxes=False)
    if gt is None:
        return result
    unknown = ~gt["action_id"].isin(list(label_map))
    if unknown.any():
        lines.append(f"  {int(unknown.sum())} GT rows have action ids not in the label map "
                     f"(e.g. {int(gt.loc[unknown, 'action_id'].iloc[0])}): ignored")
        gt = gt[~unknown]
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
    lines.append("  GT boxes per class:")
    for class_id, name in label_map.items():
        count = int(counts.get(class_id, 0))
        lines.append(f"    {class_id:4d} {name[:40]:40s} {count:7d}{'   <- no GT' if count == 0 else ''}")

    proposals = _read(ava.read_proposals, proposals_path, "proposals", lines, skip_bad_rows=cfg.skip_bad_rows)
    if proposals is not None:
        kept = proposals[proposals["score"] >= cfg.detection_score_thresh]
        recall = proposal_recall(gt, proposals, list(label_map), cfg.detection_score_thresh)
        lines.append(f"  proposals {proposals_path}: {len(proposals)} boxes, {len(kept)} with score >= "
                     f"{cfg.detection_score_thresh:g}; GT recall " +
                     ", ".join(f"{recall[iou]:.3f} at IoU {iou:g}" for iou in RECALL_IOUS))
    return result


def check_dataset(cfg: DataConfig, print_line: Callable[[str], None] = print) -> list[SplitCheck]:
    """Print the report line by line; raise `DataError` when nothing lines up."""
    where = cfg.path(cfg.video_dir if cfg.source == "video" else cfg.frames_dir)
    print_line(f"sfdet data check: {cfg.root} (source: {cfg.source}, {where}; time_offset {cfg.time_offset:g})")
    label_map_path = cfg.path(cfg.label_map)
    if label_map_path is None:
        raise DataError("config key 'data.label_map' is empty: the check needs the label map")
    label_map = ava.read_label_map(label_map_path)
    print_line(f"label map {label_map_path}: {len(label_map)} classes")
    results = []
    for split in ("train", "val"):
        result = check_split(cfg, split, label_map)
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
    print_line("ok: " + ", ".join(f"{r.name} {r.usable} usable keyframes" for r in results))
    return results


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... (+{len(items) - limit})" if len(items) > limit else "")
