"""Tubes and video-mAP: `sfdet.evaluation.tubes` / `video_map` against MMAction2 1.x's MultiSports evaluation
(loaded by path, `tests/multisports_reference.py`), exact values on hand cases, and `sfdet eval --video-map`."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from sfdet.errors import DataError
from sfdet.evaluation.tubes import link_tubes, soft_nms, tube_iou
from sfdet.evaluation.video_map import (
    NOT_EVALUATED,
    detections_from_predictions,
    evaluate_video_map,
    frame_ap,
    video_ap,
    video_map,
)

import multisports_reference


def _reference(fixed=True):
    try:
        return multisports_reference.load(fixed)
    except ImportError as error:
        pytest.skip(str(error))


# ----------------------------------------------------------------------------------------------------
# Random cases


def _walk(rng, n, w=320, h=240):
    x1, y1 = rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.5)
    bw, bh = rng.uniform(20, 80), rng.uniform(40, 100)
    steps = np.cumsum(rng.normal(0, 3, size=(n, 2)), axis=0)
    return np.stack([x1 + steps[:, 0], y1 + steps[:, 1], x1 + bw + steps[:, 0], y1 + bh + steps[:, 1]], axis=1)


def random_case(seed: int):
    """A GT pickle dict and (N, 8) detections with gaps, overlaps, short tubes, empty videos and classes."""
    rng = np.random.default_rng(seed)
    num_labels = int(rng.integers(2, 5))
    labels = [f"class {i}" for i in range(num_labels)]
    if rng.random() < 0.3:
        labels[-1] = NOT_EVALUATED[int(rng.integers(len(NOT_EVALUATED)))]
    videos = [f"v{i}" for i in range(int(rng.integers(1, 5)))]
    gt = {"labels": labels, "gttubes": {}, "nframes": {}, "resolution": {},
          "train_videos": [[]], "test_videos": [videos]}
    dets = []
    for iv, video in enumerate(videos):
        nframes = int(rng.integers(12, 50))
        gt["nframes"][video], gt["resolution"][video] = nframes, (240, 320)
        gt["gttubes"][video] = {}
        for label in range(num_labels - 1):  # the last label has no GT unless it is added below
            for _ in range(int(rng.integers(0, 3))):
                start = int(rng.integers(1, nframes))
                end = int(rng.integers(start, nframes + 1))
                boxes = _walk(rng, end - start + 1)
                tube = np.column_stack([np.arange(start, end + 1), boxes]).astype(np.float32)
                gt["gttubes"][video].setdefault(label, []).append(tube)
                if iv == len(videos) - 1 and rng.random() < 0.3:
                    continue  # a GT tube without detections
                keep = rng.random(len(tube)) > rng.choice([0.0, 0.05, 0.2])  # gaps
                det_label = label if rng.random() > 0.15 else int(rng.integers(num_labels))
                for row in tube[keep]:
                    noisy = row[1:5] + rng.normal(0, rng.choice([1.0, 8.0]), 4)
                    score = rng.random() if rng.random() > 0.3 else round(rng.random(), 1)
                    dets.append([iv, row[0], det_label, score, *noisy])
                    if rng.random() < 0.2:  # an overlapping duplicate (soft NMS)
                        dets.append([iv, row[0], det_label, rng.random(), *(noisy + rng.normal(0, 4, 4))])
        for _ in range(int(rng.integers(0, 15))):  # false positives
            frame = int(rng.integers(1, nframes + 1))
            dets.append([iv, frame, int(rng.integers(num_labels)), rng.random(), *_walk(rng, 1)[0]])
    dets = np.array(dets, dtype=np.float64).reshape(-1, 8)
    return gt, dets[rng.permutation(len(dets))] if rng.random() < 0.5 else dets


def _same_tubes(ours, ref):
    assert set(ours) == set(ref)
    for label in ref:
        assert len(ours[label]) == len(ref[label]), label
        for (v1, s1, t1), (v2, s2, t2) in zip(ours[label], ref[label]):
            assert v1 == v2 and s1 == s2
            np.testing.assert_array_equal(t1, t2)
            assert t1.dtype == t2.dtype


def _close(ours_fraction, ref_percent):
    if math.isnan(ref_percent):
        assert math.isnan(ours_fraction)
    else:
        assert abs(100 * ours_fraction - ref_percent) <= 1e-9


def test_equals_reference_on_random_cases():
    ref = _reference()
    warnings.simplefilter("ignore", RuntimeWarning)  # the reference's mean over no evaluated class
    interesting = 0
    for seed in range(120):
        gt, dets = random_case(seed)
        videos = gt["test_videos"][0]
        for len_thre in (15, 3):
            ours = link_tubes(dets, videos, gt["nframes"], len(gt["labels"]), len_thre=len_thre)
            theirs = ref.link_tubes(gt, dets, len_thre=len_thre) if len(dets) else {
                label: [] for label in range(len(gt["labels"]))}
            _same_tubes(ours, theirs)
            for iou in (0.2, 0.5):
                with np.errstate(all="ignore"):
                    expected = ref.videoAP(gt, theirs, iou, print_info=False)
                _close(video_ap(gt, ours, iou).map, expected)
                interesting += 0 < expected < 100
        with np.errstate(all="ignore"):
            expected = ref.frameAP(gt, dets, 0.5, print_info=False)
        _close(frame_ap(gt, dets, 0.5).map, expected)
    assert interesting > 100  # most cases are neither empty nor perfect


def test_equals_shipped_reference_when_scores_are_equal():
    # The shipped linking gives every box the last detection's score; with equal scores nothing differs.
    ref = _reference(fixed=False)
    for seed in range(5):
        gt, dets = random_case(seed)
        if not len(dets):
            continue
        dets[:, 3] = 0.5
        ours = link_tubes(dets, gt["test_videos"][0], gt["nframes"], len(gt["labels"]), len_thre=3)
        _same_tubes(ours, ref.link_tubes(gt, dets, len_thre=3))


# ----------------------------------------------------------------------------------------------------
# Hand cases, exact values


def _gt(tubes, nframes=10, labels=("a", "b")):
    return {"labels": list(labels), "gttubes": {"v": tubes}, "nframes": {"v": nframes},
            "resolution": {"v": (100, 100)}, "test_videos": [["v"]]}


def _tube(start, end, box):
    return np.array([[f, *box] for f in range(start, end + 1)], dtype=np.float64)


def test_tube_iou_hand_values():
    a = _tube(1, 5, (0, 0, 10, 10))
    b = _tube(3, 9, (0, 0, 10, 5))
    # temporal: (5 - 3) / (9 - 1) = 0.25 (no +1, as the reference); spatial IoU 0.5 on frames 3..5
    assert tube_iou(a, b) == pytest.approx(0.125, abs=1e-15)
    assert tube_iou(a, _tube(6, 9, (0, 0, 10, 10))) == 0.0
    with_gap = np.delete(b, 1, axis=0)  # frame 4 missing: IoU 0 there
    assert tube_iou(a, with_gap) == pytest.approx(0.25 * (0.5 + 0 + 0.5) / 3, abs=1e-15)


def test_soft_nms_weights_instead_of_removing():
    dets = np.array([[0, 0, 9, 9, 0.9], [0, 0, 9, 8, 0.8], [50, 50, 60, 60, 0.7]], dtype=np.float64)
    out = soft_nms(dets)
    # IoU (+1 areas) of the first two: 90 / 100 = 0.9 > 0.6: score 0.8 * (1 - 0.9)
    np.testing.assert_allclose(out[:, 4], [0.9, 0.7, 0.8 * 0.1])


def test_linking_and_video_ap_hand_case():
    # Two people: class 0 on frames 1-6 at the left, then a gap (frame 7 empty), frames 8-10 again.
    rows = [[0, f, 0, 0.9, 0, 0, 10, 10] for f in range(1, 7)] + [[0, f, 0, 0.6, 0, 0, 10, 10] for f in (8, 9, 10)]
    rows += [[0, f, 0, 0.3, 50, 50, 60, 60] for f in range(1, 11)]  # a false positive tube
    dets = np.array(rows, dtype=np.float64)
    tubes = link_tubes(dets, ["v"], {"v": 10}, 2, len_thre=3)
    got = sorted((round(float(t.score), 6), int(t.boxes[0, 0]), int(t.boxes[-1, 0])) for t in tubes[0])
    assert got == [(0.3, 1, 10), (0.6, 8, 10), (0.9, 1, 6)]
    gt = _gt({0: [_tube(1, 10, (0, 0, 10, 10))]})
    # ranked 0.9 (IoU 5/9 with the GT: TP at 0.5), 0.6 (GT taken: FP), 0.3 (IoU 0: FP); 1 GT -> AP 1
    assert video_ap(gt, tubes, 0.5).per_class_ap == {0: 1.0}
    # at 0.6 no tube reaches the GT: AP 0; class "b" has no GT: left out of the mean
    result = video_ap(gt, tubes, 0.6)
    assert result.per_class_ap == {0: 0.0} and result.map == 0.0
    assert len(link_tubes(dets, ["v"], {"v": 10}, 2)[0]) == 0  # all shorter than 15 frames


def test_frame_ap_hand_case():
    gt = _gt({0: [_tube(1, 2, (0, 0, 10, 10))]})
    dets = np.array([[0, 1, 0, 0.9, 0, 0, 10, 10],    # TP
                     [0, 1, 0, 0.8, 0, 0, 10, 10],    # same GT box again: FP
                     [0, 3, 0, 0.7, 0, 0, 10, 10],    # a frame without GT: FP
                     [0, 2, 0, 0.6, 0, 0, 10, 9]])    # TP (IoU 0.9)
    # precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1: AP = 0.5 * 1 + 0.5 * 0.5
    assert frame_ap(gt, dets).per_class_ap == {0: 0.75}


# ----------------------------------------------------------------------------------------------------
# Predictions and the command


def test_detections_from_predictions_argmax_and_frames():
    gt = _gt({}, nframes=30, labels=("walk", "run"))
    gt["resolution"]["v"] = (100, 200)
    pred = pd.DataFrame({"video_id": ["v", "v", "v", "w"], "timestamp": [0.4, 0.4, 2.0, 0.4],
                         "x1": [0.1] * 4, "y1": [0.2] * 4, "x2": [0.5] * 4, "y2": [0.6] * 4,
                         "action_id": [1, 2, 2, 1], "score": [0.3, 0.7, 0.2, 0.9]})
    dets, notes = detections_from_predictions(pred, gt, {1: "walk", 2: "run"}, fps=10)
    np.testing.assert_allclose(dets, [[0, 4, 1, 0.7, 20, 20, 100, 60], [0, 20, 1, 0.2, 20, 20, 100, 60]])
    assert notes["unknown_video_rows"] == 1
    every, _ = detections_from_predictions(pred, gt, {1: "walk", 2: "run"}, fps=10, label_mode="all")
    assert len(every) == 3
    with pytest.raises(DataError, match="not among the GT"):
        detections_from_predictions(pred, gt, {1: "jump"}, fps=10)


def test_out_of_range_detection_is_a_data_error():
    gt = _gt({}, nframes=5)
    with pytest.raises(DataError, match="outside"):
        evaluate_video_map(gt, np.array([[0, 6, 0, 0.5, 0, 0, 1, 1]]))


def test_eval_video_map_command(tmp_path, capsys):
    from sfdet.cli import main

    gt, dets = random_case(3)
    labels = gt["labels"]
    gt_path = tmp_path / "gt.pkl"
    gt_path.write_bytes(pickle.dumps(gt))
    (tmp_path / "labels.pbtxt").write_text("".join(
        f'item {{\n  name: "{name}"\n  id: {i + 1}\n}}\n' for i, name in enumerate(labels)))
    videos = gt["test_videos"][0]
    rows = []
    for v, f, c, s, x1, y1, x2, y2 in dets:
        h, w = gt["resolution"][videos[int(v)]]
        rows.append([videos[int(v)], f / 25.0, x1 / w, y1 / h, x2 / w, y2 / h, int(c) + 1, s])
    pd.DataFrame(rows).to_csv(tmp_path / "pred.csv", header=False, index=False, float_format="%.17g")
    code = main(["eval", "--video-map", "--gt", str(gt_path), "--pred", str(tmp_path / "pred.csv"),
                 "--labelmap", str(tmp_path / "labels.pbtxt"), "--fps", "25", "--tube-min-frames", "3",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    expected = evaluate_video_map(gt, dets, len_thre=3)
    assert "v_map@0.5=" in out and "frame_map@0.5=" in out
    assert (tmp_path / "pred_video_map.json").is_file()
    result = video_map(gt_path, tmp_path / "pred.csv", tmp_path / "labels.pbtxt", fps=25, len_thre=3)
    assert result.video[0.2].map == pytest.approx(expected.video[0.2].map, abs=1e-9)
