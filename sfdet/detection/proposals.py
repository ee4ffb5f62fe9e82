"""Person proposals for every keyframe of an AVA-format dataset (`sfdet proposals`).

Why: training and evaluating an action detector on one's own data needs person boxes for
every keyframe (AVA ships `ava_*_predicted_boxes.csv`, MMAction2 a proposal pickle), and the
peers have no tool to make them. Any `sfdet.persons.PersonDetector` works: a torchvision COCO
model by name, or a `detector.pt` from `sfdet train-detector` (`sfdet.persons.build_person_detector`).

Keyframes of a split = its GT keyframes plus its excluded keyframes (as AVA's files cover
those too), in GT file order. Output rows are `boxes_norm` (normalised xyxy, rounded to 5
decimals = 1/100 px at 1000 px) with the score, highest score first within a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sfdet.boxes import abs_to_norm
from sfdet.data import ava
from sfdet.data.check import RECALL_IOUS, proposal_recall
from sfdet.data.config import DataConfig
from sfdet.detection.keyframes import Skipped, iter_keyframes, read_split_keyframes, skipped_summary
from sfdet.errors import DataError
from sfdet.persons import PersonDetector

BOX_DECIMALS = 5
SCORE_DECIMALS = 6


@dataclass
class ProposalsResult:
    proposals: pd.DataFrame  # [video_id, timestamp, x1, y1, x2, y2, score], boxes_norm
    keyframes: int  # keyframes asked for
    detected: int  # keyframes decoded and run through the detector
    skipped: list[Skipped]
    recall: dict[float, float]  # GT person-box recall at each of RECALL_IOUS (NaN without GT boxes)


def detections_to_rows(video_id: str, timestamp: float, boxes_xyxy_abs: np.ndarray, scores: np.ndarray,
                       frame_hw: tuple[int, int]) -> pd.DataFrame:
    """One keyframe's detections -> proposal rows (boxes_norm rounded, degenerate ones dropped, best first)."""
    height, width = frame_hw
    boxes_norm = np.round(abs_to_norm(boxes_xyxy_abs, width, height, np.float64), BOX_DECIMALS)
    boxes_norm = np.clip(boxes_norm, 0.0, 1.0).reshape(-1, 4)
    scores = np.round(np.asarray(scores, np.float64).reshape(-1), SCORE_DECIMALS)
    valid = (boxes_norm[:, 2] > boxes_norm[:, 0]) & (boxes_norm[:, 3] > boxes_norm[:, 1])
    order = np.argsort(-scores[valid], kind="stable")
    boxes_norm, scores = boxes_norm[valid][order], scores[valid][order]
    table = pd.DataFrame(boxes_norm, columns=ava.BOX_COLUMNS)
    table.insert(0, "timestamp", float(timestamp))
    table.insert(0, "video_id", video_id)
    table["score"] = scores
    return table


def make_proposals(cfg: DataConfig, split: str, detector: PersonDetector, progress: bool = True) -> ProposalsResult:
    """Run `detector` on every keyframe of `split`; the recall is measured at the detector's own threshold."""
    info = read_split_keyframes(cfg, split)
    skipped: list[Skipped] = []
    tables, detected = [], 0
    for keyframe in iter_keyframes(cfg, info.keys, skipped, progress=progress, desc=f"proposals {split}"):
        frame = keyframe.image.numpy()
        boxes_xyxy_abs, scores = detector(frame, keyframe.video_id, keyframe.timestamp)
        tables.append(detections_to_rows(keyframe.video_id, keyframe.timestamp, boxes_xyxy_abs, scores,
                                         frame.shape[:2]))
        detected += 1
    if detected == 0:
        where = cfg.path(cfg.video_dir if cfg.source == "video" else cfg.frames_dir)
        first = f" (first: {skipped[0].reason})" if skipped else ""
        raise DataError(f"{split}: none of the {len(info.keys)} keyframes could be decoded from {where}{first}; "
                        "run `sfdet data check` to see what does not line up")
    proposals = pd.concat(tables, ignore_index=True)
    threshold = detector.score_threshold
    recall = proposal_recall(info.persons.assign(action_id=1), proposals, [1], threshold)
    return ProposalsResult(proposals, len(info.keys), detected, skipped, recall)


def report_lines(result: ProposalsResult) -> list[str]:
    """What `sfdet proposals` prints after writing: skipped keyframes, then the recall lines."""
    lines = skipped_summary(result.skipped)
    for iou in RECALL_IOUS:
        lines.append(f"GT person-box recall at IoU {iou:g}: {result.recall[iou]:.3f}")
    return lines
