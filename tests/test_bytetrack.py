"""The ByteTrack-class tracker (`sfdet.predict.tracking.ByteTracker`) on synthetic crossing people, against
today's keyframe IoU tracker: IDF1 and ID switches at the keyframes (motmetrics when installed)."""

from __future__ import annotations

import numpy as np
import pytest

from sfdet.boxes import box_iou
from sfdet.predict.tracking import ByteTracker, IouTracker, KalmanBoxFilter

FPS, SECONDS = 25, 8


def crossing_scene(seed: int, people: int = 4, speed: float = 9.0):
    """Frames of GT boxes: people walking left/right across each other at `speed` px/frame (boxes 40x100);
    a person behind another at a crossing is detected with a low score or missed."""
    rng = np.random.default_rng(seed)
    frames = []
    starts = [(rng.uniform(0, 200) if i % 2 == 0 else rng.uniform(1800, 2000), 100 + 25 * i) for i in range(people)]
    for f in range(FPS * SECONDS):
        boxes, ids, scores = [], [], []
        for i, (x0, y0) in enumerate(starts):
            x = x0 + (1 if i % 2 == 0 else -1) * speed * f
            boxes.append([x, y0, x + 40, y0 + 100])
            ids.append(i)
        boxes = np.array(boxes, dtype=np.float64)
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0)
        for i in range(people):
            occluded = (iou[i] > 0.2).any() and i % 2 == 1  # the right-to-left walkers pass behind
            scores.append(rng.uniform(0.15, 0.45) if occluded else rng.uniform(0.7, 0.95))
        noisy = boxes + rng.normal(0, 1.5, boxes.shape)
        keep = ~((np.array(scores) < 0.5) & (rng.random(people) < 0.3))  # some occluded ones are missed
        frames.append((noisy[keep], np.array(ids)[keep], np.array(scores)[keep], boxes[keep]))
    return frames


def run_iou_tracker(frames, keyframe_every):
    tracker, out = IouTracker(), {}
    for f in range(0, len(frames), keyframe_every):
        boxes, _, scores, _ = frames[f]
        out[f] = tracker.update(boxes[scores >= 0.5])  # keyframe persons: the detector's usual threshold
    return out


def run_bytetrack(frames, keyframe_every, track_every):
    tracker, out = ByteTracker(fresh_ids=False), {}
    for f in range(0, len(frames), track_every):
        boxes, _, scores, _ = frames[f]
        ids = tracker.update(boxes, scores, f)
        if f % keyframe_every == 0:
            out[f] = ids[scores >= 0.5]
    return out


def _motmetrics():
    mm = pytest.importorskip("motmetrics")
    if not hasattr(np, "asfarray"):  # motmetrics 1.4.0 (the latest) still calls np.asfarray, gone in NumPy 2
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)
    return mm


def keyframe_metrics(frames, tracked, keyframe_every):
    mm = _motmetrics()
    acc = mm.MOTAccumulator(auto_id=True)
    for f in range(0, len(frames), keyframe_every):
        boxes, gt_ids, scores, gt_boxes = frames[f]
        keep = scores >= 0.5
        hyp_boxes = boxes[keep]
        hyp_ids = tracked[f]
        valid = hyp_ids >= 0
        xywh = lambda b: np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
        dist = mm.distances.iou_matrix(xywh(gt_boxes), xywh(hyp_boxes[valid]), max_iou=0.5)
        acc.update(gt_ids.tolist(), hyp_ids[valid].tolist(), dist)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches"], name="x")
    return float(summary["idf1"].iloc[0]), int(summary["num_switches"].iloc[0])


def test_kalman_follows_constant_velocity():
    kf = KalmanBoxFilter()
    mean, cov = kf.initiate(np.array([0, 0, 40, 100.0]))
    for step in range(1, 10):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, np.array([10 * step, 0, 10 * step + 40, 100.0]))
    predicted = kf.to_xyxy(kf.predict(mean, cov)[0])
    assert abs(predicted[0] - 100) < 3


def test_bytetrack_keeps_ids_through_crossings():
    keyframe_every = FPS // 2  # keyframes every 0.5 s: people move 112 px between them, 3 box widths
    results = {}
    for seed in range(3):
        frames = crossing_scene(seed)
        for name, tracked in (("iou keyframes", run_iou_tracker(frames, keyframe_every)),
                              ("bytetrack every 1", run_bytetrack(frames, keyframe_every, 1)),
                              ("bytetrack every 3", run_bytetrack(frames, keyframe_every, 3))):
            results.setdefault(name, []).append(keyframe_metrics(frames, tracked, keyframe_every))
    summary = {name: (np.mean([r[0] for r in rs]), sum(r[1] for r in rs)) for name, rs in results.items()}
    print(summary)
    iou_idf1 = summary["iou keyframes"][0]
    for name in ("bytetrack every 1", "bytetrack every 3"):
        assert summary[name][0] >= iou_idf1 + 0.10, summary
        assert summary[name][1] <= summary["iou keyframes"][1], summary


def test_low_score_boxes_continue_tracks_but_do_not_start_them():
    tracker = ByteTracker()
    first = tracker.update(np.array([[0, 0, 40, 100.0]]), np.array([0.9]), 0)
    second = tracker.update(np.array([[2, 0, 42, 100.0], [300, 0, 340, 100]]), np.array([0.3, 0.3]), 1)
    assert second[0] == first[0] and second[1] == -1
    fresh = ByteTracker(fresh_ids=True)
    fresh.update(np.array([[0, 0, 40, 100.0]]), np.array([0.9]), 0)
    assert (fresh.update(np.array([[300, 0, 340, 100.0]]), np.array([0.2]), 1) >= 0).all()
