"""Class tubes from per-frame detections: the online linking of ACT (Kalogeiton et al., ICCV 2017) as the
MultiSports evaluation runs it (MMAction2 1.x `mmaction/evaluation/functional/multisports_utils.py`,
`link_tubes(..., K=1, len_thre=15)`), and the spatio-temporal tube IoU of its video-AP.

Detections are rows of the reference's layout, one box and one class each:

    (N, 8) float array: video_index, frame, label_index, score, x1, y1, x2, y2
    video_index indexes `videos` (the test list), frame is 1-based, label_index 0-based, boxes in pixels.

Linking, per video (in `videos` order) and class (ascending):
- each frame's boxes of the class (input order) go through the reference's tubelet NMS: soft weighting, not
  removal: a box overlapping a kept higher-scoring box by IoU > 0.6 (areas counted with the +1 pixel
  convention) has its score multiplied by 1 - IoU; the 10 best by weighted score are kept;
- at every frame the live tubes are ordered by mean (weighted) score, best first (`np.argsort`, so ties
  resolve as in the reference); each, in that order, takes the highest-scoring remaining box with IoU >= 0.5
  to its last box; a tube that takes none ends (a frame without boxes ends all of them); boxes left over
  start new tubes;
- a tube's score is the mean of its boxes' weighted scores; tubes scoring < 0.005 or spanning fewer than
  `len_thre` frames are dropped; its boxes are stored as float32 `(n, 6)`: frame, x1, y1, x2, y2, score,
  as the reference stores them (the video-AP IoUs are computed on these values).
Tubes come out in the reference's order (ended tubes in the order it appends them, then the live ones), so
score ties rank identically in `video_map.video_ap`.

One difference, deliberate: MMAction2 1.x's `Dataset.get_vid_dets` gives every detection the score of the
*last* detection of the whole input (it reads the outer loop's variable `frm_det[3]` instead of
`frm_dets[3]`), which makes all scores equal. sfdet uses each detection's own score; the tests compare against
the reference with that one name corrected, and unmodified where all scores are equal.

Only K = 1 (per-frame boxes; ACT's K-frame tubelets are not produced by sfdet's models).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from sfdet.errors import DataError

DET_COLUMNS = ("video_index", "frame", "label_index", "score", "x1", "y1", "x2", "y2")
NMS_IOU = 0.6
NMS_TOP_K = 10
LINK_IOU = 0.5
MIN_TUBE_SCORE = 0.005
MIN_TUBE_LENGTH = 15  # MultiSports / MMAction2 `tube_thr`


class Tube(NamedTuple):
    """A linked class tube (a tuple, as the reference's `(video, score, tube)`)."""

    video: str
    score: float
    boxes: np.ndarray  # (n, 6) float32: frame, x1, y1, x2, y2, per-frame score; frames consecutive


def iou2d(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of `boxes` (n, 4) with one `box` (4,), areas without +1 (the reference's `iou2d_voc`)."""
    boxes = np.atleast_2d(boxes)
    box = np.atleast_2d(box)
    width = np.maximum(0, np.minimum(boxes[:, 2], box[:, 2]) - np.maximum(boxes[:, 0], box[:, 0]))
    height = np.maximum(0, np.minimum(boxes[:, 3], box[:, 3]) - np.maximum(boxes[:, 1], box[:, 1]))
    overlap = width * height
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_box = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    return overlap / (area + area_box - overlap)


def tube_iou(gt: np.ndarray, tube: np.ndarray) -> float:
    """Spatio-temporal IoU of two tubes `(n, 5+)` (frame, x1, y1, x2, y2, ...), frames ascending.

    Temporal IoU (end - start, without +1, as the reference) times the mean per-frame IoU over the temporal
    intersection. For tubes without missing frames this is the reference's `iou3dt_voc` (same operations, so
    the same float result); where a tube has a gap inside the intersection (the reference would fail), a
    frame where only one tube has a box counts as IoU 0.
    """
    t_min = max(gt[0, 0], tube[0, 0])
    t_max = min(gt[-1, 0], tube[-1, 0])
    if t_max < t_min:
        return 0.0
    temporal_inter = t_max - t_min
    temporal_union = max(gt[-1, 0], tube[-1, 0]) - min(gt[0, 0], tube[0, 0])
    part1 = gt[(gt[:, 0] >= t_min) & (gt[:, 0] <= t_max)]
    part2 = tube[(tube[:, 0] >= t_min) & (tube[:, 0] <= t_max)]
    if part1.shape[0] == part2.shape[0] and np.all(part1[:, 0] == part2[:, 0]):
        ious = _pairwise_frame_iou(part1[:, 1:5], part2[:, 1:5])
        spatial = np.mean(ious)
    else:  # a gap in one tube: IoU 0 on frames only one of them covers
        frames = np.union1d(part1[:, 0], part2[:, 0])
        _, i1, j1 = np.intersect1d(part1[:, 0], part2[:, 0], return_indices=True)
        common = _pairwise_frame_iou(part1[i1, 1:5], part2[j1, 1:5])
        spatial = np.sum(common) / len(frames)
    return spatial * (temporal_inter / temporal_union)


def _pairwise_frame_iou(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    width = np.maximum(0, np.minimum(b1[:, 2], b2[:, 2]) - np.maximum(b1[:, 0], b2[:, 0]))
    height = np.maximum(0, np.minimum(b1[:, 3], b2[:, 3]) - np.maximum(b1[:, 1], b2[:, 1]))
    overlap = width * height
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    return overlap / (area1 + area2 - overlap)


def soft_nms(dets: np.ndarray, iou_threshold: float = NMS_IOU, top_k: int = NMS_TOP_K) -> np.ndarray:
    """The reference's `nms_tubelets` for K = 1: `dets` (n, 5) x1, y1, x2, y2, score -> weighted, sorted, top k."""
    if len(dets) == 0:
        return dets
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    weight = np.zeros_like(scores) + 1
    while order.size > 0:
        i = order[0]
        rest = order[1:]
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        ious = inter / (area[rest] + area[i] - inter)
        over = np.where(ious > iou_threshold)[0]
        weight[rest[over]] = 1 - ious[over]
        order = rest[np.where(ious <= iou_threshold)[0]]
    out = dets.copy()
    out[:, -1] = out[:, -1] * weight
    return out[np.argsort(out[:, -1])[::-1]][:top_k]


class _LiveTube:
    __slots__ = ("frames", "rows")

    def __init__(self, frame: int, row: np.ndarray):
        self.frames = [frame]
        self.rows = [row]

    def score(self) -> float:
        return np.mean(np.array([row[-1] for row in self.rows]))


def check_detections(detections: np.ndarray, videos: Sequence[str], nframes: Mapping[str, int],
                     num_labels: int) -> np.ndarray:
    """`detections` as an (N, 8) float64 array, or a DataError naming the first row the reference cannot use."""
    dets = np.asarray(detections, dtype=np.float64)
    if dets.size == 0:
        return dets.reshape(0, 8)
    if dets.ndim != 2 or dets.shape[1] != 8:
        raise DataError(f"detections must be an (N, 8) array ({', '.join(DET_COLUMNS)}), got shape {dets.shape}")
    index = dets[:, :3]
    bad = ~np.isfinite(index).all(axis=1) | (index != np.floor(index)).any(axis=1)
    bad |= (dets[:, 0] < 0) | (dets[:, 0] >= len(videos)) | (dets[:, 2] < 0) | (dets[:, 2] >= num_labels)
    if not bad.any():
        frame_limit = np.array([nframes[videos[int(v)]] for v in dets[:, 0]], dtype=np.float64)
        bad = (dets[:, 1] < 1) | (dets[:, 1] > frame_limit)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"detection {row} ({', '.join(f'{c}={x:g}' for c, x in zip(DET_COLUMNS[:3], dets[row]))}) "
                        f"is outside the {len(videos)} test videos, their 1..nframes frames or the {num_labels} labels")
    return dets


def link_tubes(detections: np.ndarray, videos: Sequence[str], nframes: Mapping[str, int], num_labels: int,
               len_thre: int = MIN_TUBE_LENGTH) -> dict[int, list[Tube]]:
    """Link per-frame class detections into tubes: {label_index: [Tube(video, score, boxes)]} (all labels)."""
    dets = check_detections(detections, videos, nframes, num_labels)
    tubes: dict[int, list[Tube]] = {label: [] for label in range(num_labels)}
    video_index = dets[:, 0].astype(np.int64)
    for v in range(len(videos)):  # the reference walks the test list; duplicates in it link again
        in_video = np.flatnonzero(video_index == v)
        if in_video.size == 0:
            continue
        rows = dets[in_video]
        for label in range(num_labels):
            of_label = rows[rows[:, 2] == label]
            if of_label.shape[0] == 0:
                continue
            for score, boxes in _link_class(of_label, nframes[videos[v]], len_thre):
                tubes[label].append(Tube(videos[v], score, boxes))
    return tubes


def _link_class(rows: np.ndarray, nframes: int, len_thre: int) -> list[tuple[float, np.ndarray]]:
    """One video and class: rows (n, 8) in input order -> [(score, boxes float32 (len, 6))] in reference order."""
    frames = rows[:, 1].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    boundaries = np.flatnonzero(np.diff(frames[order])) + 1
    finished: list[_LiveTube] = []
    current: list[_LiveTube] = []
    previous = None
    for group in np.split(order, boundaries):
        frame = int(frames[group[0]])
        if previous is not None and frame > previous + 1:
            current = _end_all(current, finished)  # an empty frame in between ends every live tube
        boxes = soft_nms(np.concatenate([rows[group, 4:8], rows[group, 3:4]], axis=1))
        current = _link_frame(current, finished, frame, boxes)
        previous = frame
    if previous is not None and previous < nframes:
        current = _end_all(current, finished)
    finished.extend(current)
    return [out for out in (_build(t, len_thre) for t in finished) if out is not None]


def _sorted_by_score(current: list[_LiveTube]) -> list[_LiveTube]:
    order = np.argsort(-np.array([t.score() for t in current]))
    return [current[i] for i in order]


def _end_all(current: list[_LiveTube], finished: list[_LiveTube]) -> list[_LiveTube]:
    finished.extend(reversed(_sorted_by_score(current)))  # the reference deletes (and appends) from the back
    return []


def _link_frame(current: list[_LiveTube], finished: list[_LiveTube], frame: int, boxes: np.ndarray) -> list[_LiveTube]:
    current = _sorted_by_score(current)
    ended = []
    for it, tube in enumerate(current):
        ious = iou2d(boxes[:, :4], tube.rows[-1][:4])
        valid = np.where(ious >= LINK_IOU)[0]
        if valid.size > 0:
            idx = valid[np.argmax(boxes[valid, -1])]
            tube.frames.append(frame)
            tube.rows.append(boxes[idx, :])
            boxes = np.delete(boxes, idx, axis=0)
        else:
            ended.append(it)
    for it in ended[::-1]:
        finished.append(current[it])
    ended_set = set(ended)
    current = [t for it, t in enumerate(current) if it not in ended_set]
    current.extend(_LiveTube(frame, boxes[i, :]) for i in range(boxes.shape[0]))
    return current


def _build(tube: _LiveTube, len_thre: int) -> tuple[float, np.ndarray] | None:
    score = tube.score()
    if score < MIN_TUBE_SCORE:
        return None
    begin, end = tube.frames[0], tube.frames[-1]
    length = end + 1 - begin
    if length < len_thre:
        return None
    out = np.zeros((length, 6), dtype=np.float32)
    out[:, 0] = np.arange(begin, end + 1)
    rows = np.stack(tube.rows)
    out[np.asarray(tube.frames) - begin, 1:5] = rows[:, :4]
    out[np.asarray(tube.frames) - begin, 5] = rows[:, 4]
    return score, out
