"""IoU + Hungarian person tracking across keyframes: hand-made cases with known ids."""

from __future__ import annotations

import numpy as np
import pytest

from sfdet.boxes import box_iou
from sfdet.predict.tracking import IouTracker


def test_box_iou_exact_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    iou = box_iou(a, b)
    np.testing.assert_allclose(iou[0], [50 / 150, 0.0, 1.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 4 / 100])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_ids_follow_boxes_when_order_changes():
    tracker = IouTracker(min_iou=0.3, max_age=1)
    left, right = [0, 0, 10, 20], [50, 0, 60, 20]
    assert tracker.update(np.array([left, right])).tolist() == [0, 1]
    # Next keyframe: both moved a little and come in the opposite order.
    moved = np.array([[51, 1, 61, 21], [1, 0, 11, 20]])
    assert tracker.update(moved).tolist() == [1, 0]


def test_hungarian_beats_greedy():
    tracker = IouTracker(min_iou=0.3, max_age=0)
    tracker.update(np.array([[0, 0, 10, 10], [4, 0, 14, 10]]))
    # IoU(tracks, boxes) = [[0.429, 0.25], [1.0, 0.667]]. Greedy takes track 1 -> box 0 (1.0), then
    # track 0 -> box 1 is gated out (0.25 < 0.3) and box 1 would start a new track 2.
    # The optimal assignment keeps both people: track 0 -> box 0, track 1 -> box 1 (sum 1.10 > 1.0).
    ids = tracker.update(np.array([[4, 0, 14, 10], [6, 0, 16, 10]]))
    assert ids.tolist() == [0, 1]


def test_gating_by_min_iou_starts_a_new_track():
    tracker = IouTracker(min_iou=0.5, max_age=5)
    tracker.update(np.array([[0, 0, 10, 10]]))
    # IoU with the old box = 25/175 < 0.5: a new person.
    assert tracker.update(np.array([[5, 5, 15, 15]])).tolist() == [1]


def test_max_age_keeps_then_retires_tracks():
    tracker = IouTracker(min_iou=0.3, max_age=2)
    box = np.array([[0, 0, 10, 10]])
    assert tracker.update(box).tolist() == [0]
    tracker.update(np.zeros((0, 4)))
    tracker.update(np.zeros((0, 4)))
    assert tracker.update(box).tolist() == [0]  # missed 2 keyframes: still alive
    for _ in range(3):
        tracker.update(np.zeros((0, 4)))
    assert tracker.update(box).tolist() == [1]  # missed 3 > max_age: retired, ids never reused


def test_bad_parameters():
    with pytest.raises(ValueError, match="min_iou"):
        IouTracker(min_iou=1.5)
    with pytest.raises(ValueError, match="max_age"):
        IouTracker(max_age=-1)
