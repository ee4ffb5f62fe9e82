"""The synthetic AVA-format dataset: layout, validity, determinism, aliasing design, proposals, CLI."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pytest

from sfdet import cli
from sfdet.data import ava
from sfdet.errors import ConfigError, DataError
from sfdet.toy import generate as toy
from sfdet.toy.render import HAND_RADIUS, figure_joints

SMALL = {"quick": True, "seconds": 3, "videos_train": 1, "videos_val": 1}


def _annotation_bytes(root):
    files = sorted(p for sub in ("annotations", "frame_lists") for p in (root / sub).iterdir())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files + [root / "meta.json"]}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of normalised xyxy boxes a (N, 4) and b (M, 4)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


# --------------------------------------------------------------------------------------------------
# Layout and validity of the quick set


def test_layout_is_the_agreed_one(quick_toy):
    expected = {
        "videos/toy_train_000.mp4", "videos/toy_train_001.mp4", "videos/toy_val_000.mp4",
        "annotations/train.csv", "annotations/val.csv", "annotations/label_map.pbtxt",
        "annotations/train_excluded_timestamps.csv", "annotations/val_excluded_timestamps.csv",
        "annotations/train_predicted_boxes.csv", "annotations/val_predicted_boxes.csv",
        "frame_lists/train.csv", "frame_lists/val.csv", "meta.json",
    }
    assert {p.relative_to(quick_toy).as_posix() for p in quick_toy.rglob("*") if p.is_file()} == expected


def test_videos_decode_at_declared_size_fps_and_length(quick_toy):
    meta = json.loads((quick_toy / "meta.json").read_text())
    assert (meta["width"], meta["height"], meta["fps"], meta["seconds"]) == (320, 180, 15.0, 8)
    for path in sorted((quick_toy / "videos").glob("*.mp4")):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == {"libx264": "h264", "mpeg4": "mpeg4"}[meta["codec"]]
            assert Fraction(stream.average_rate) == 15
            frames = list(container.decode(stream))
        assert len(frames) == 8 * 15
        assert (frames[0].width, frames[0].height) == (320, 180)
        times = np.array([float(f.pts * f.time_base) for f in frames])
        np.testing.assert_allclose(times - times[0], np.arange(len(frames)) / 15, atol=1e-6)


def test_gt_rows_are_valid_and_read_back(quick_toy):
    label_map = ava.read_label_map(quick_toy / "annotations/label_map.pbtxt")
    assert label_map == {c.id: c.name for c in toy.CLASSES}
    pose_ids = {c.id for c in toy.CLASSES if c.kind == "pose"}
    for split, n_videos in (("train", 2), ("val", 1)):
        gt = ava.read_gt_csv(quick_toy / f"annotations/{split}.csv", label_map=label_map)
        assert len(gt) > 0 and set(gt["action_id"]) <= set(label_map)
        boxes = gt[["x1", "y1", "x2", "y2"]].to_numpy()
        assert ((boxes >= 0) & (boxes <= 1)).all()
        assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
        assert set(gt["timestamp"]) <= set(range(1, 8)) and (gt["person_id"] >= 0).all()
        assert gt["video_id"].nunique() == n_videos
        per_person = gt.groupby(["video_id", "timestamp", "person_id"])
        pose_counts = per_person["action_id"].agg(lambda ids: len(set(ids) & pose_ids))
        assert (pose_counts == 1).all()
        assert (per_person[["x1", "y1", "x2", "y2"]].nunique() == 1).all().all()  # one box per person

        ava.read_exclusions(quick_toy / f"annotations/{split}_excluded_timestamps.csv")
        ava.read_proposals(quick_toy / f"annotations/{split}_predicted_boxes.csv")
        frame_list = ava.read_frame_lists(quick_toy / f"frame_lists/{split}.csv")
        assert len(frame_list) == n_videos * 8 * 15
        first = frame_list.iloc[0]
        assert (first["video_id"], first["frame_id"]) == (0, 0)
        assert first["path"] == f"toy_{split}_000/toy_{split}_000_000001.jpg"


def test_meta_describes_classes_and_aliased_pairs(quick_toy):
    meta = json.loads((quick_toy / "meta.json").read_text())
    assert [c["name"] for c in meta["classes"]] == [c.name for c in toy.CLASSES]
    assert all(c["description"] for c in meta["classes"])
    assert {tuple(p["classes"]) for p in meta["aliased_pairs"]} == {(6, 7), (8, 9)}
    by_name = {c["name"]: c for c in meta["classes"]}
    assert by_name["wave_fast"]["frequency_hz"] == pytest.approx(1.875 - by_name["wave_slow"]["frequency_hz"])
    assert by_name["swipe_down"]["frequency_hz"] == pytest.approx(1.875)
    assert meta["horizontal_flip_swaps"] == []
    assert meta["clip"]["slow_pathway_hz"] == 1.875


def test_proposals_are_imperfect_but_recall_is_high(quick_toy):
    gt = pd.concat([ava.read_gt_csv(quick_toy / f"annotations/{s}.csv") for s in toy.SPLITS])
    props = pd.concat([ava.read_proposals(quick_toy / f"annotations/{s}_predicted_boxes.csv") for s in toy.SPLITS])
    people = gt.drop_duplicates(["video_id", "timestamp", "person_id"])
    found, false_positives = 0, 0
    for key, persons in people.groupby(["video_id", "timestamp"]):
        boxes = props[(props["video_id"] == key[0]) & (props["timestamp"] == key[1])]
        iou = _iou(persons[["x1", "y1", "x2", "y2"]].to_numpy(), boxes[["x1", "y1", "x2", "y2"]].to_numpy())
        found += int((iou >= 0.5).any(axis=1).sum()) if iou.size else 0
        false_positives += int((iou < 0.5).all(axis=0).sum()) if iou.size else len(boxes)
    recall = found / len(people)
    assert 0.9 < recall < 1.0  # high, but some people are missed
    assert false_positives > 0
    assert (props["score"] > 0.8).mean() > 0.5 and (props["score"] < 0.5).any()


# --------------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_gives_identical_files_and_videos(tmp_path):
    a = toy.generate_toy_dataset(tmp_path / "a", seed=3, **SMALL)
    b = toy.generate_toy_dataset(tmp_path / "b", seed=3, workers=1, **SMALL)  # serial vs parallel too
    assert _annotation_bytes(a) == _annotation_bytes(b)
    for video in sorted((a / "videos").iterdir()):
        assert video.read_bytes() == (b / "videos" / video.name).read_bytes()
    c = toy.generate_toy_dataset(tmp_path / "c", seed=4, **SMALL)
    assert (a / "annotations/train.csv").read_bytes() != (c / "annotations/train.csv").read_bytes()


# --------------------------------------------------------------------------------------------------
# The Slow/Fast aliasing design


def _waving_figure(arm_action: str, phase: float, seconds: float = 20.0) -> toy.ToyFigure:
    front, back = (arm_action, None) if arm_action.startswith("wave") else (None, arm_action)
    return toy.ToyFigure(
        person_id=0, height=100.0, ground_y=170.0, colors=np.zeros((6, 3)),
        pose_segments=[toy.PoseSegment(0.0, seconds, "stand", 1, 0.3)],
        arm_segments=[toy.ArmSegment(0.0, seconds, front, back, phase, phase)],
        x_world=np.full(int(seconds * 15), 160.0),
    )


def _hand(figure: toy.ToyFigure, frame: int, side: str) -> np.ndarray:
    pose, facing = toy.figure_pose(figure, frame, 15.0)
    joints = figure_joints(pose, 160.0, figure.ground_y, figure.height, facing)
    return joints[f"hand_{side}"] - joints["shoulder"]


def _wave_twin_phase(phase: float, first_slow_frame: int) -> float:
    """fast = 1/8 - slow cycles per frame: on the Slow frames, a slow wave run backwards."""
    return np.pi - phase - 2 * np.pi * first_slow_frame / 8


def _swipe_twin_phase(phase: float, first_slow_frame: int) -> float:
    """One stroke per 8 frames: the Slow frames hold the hand at one height; the other direction reaches it too."""
    return -phase - 4 * np.pi * first_slow_frame / 8


@pytest.mark.parametrize("pair, side, twin_phase, slow_moves", [
    (("wave_slow", "wave_fast"), "front", _wave_twin_phase, True),
    (("swipe_down", "swipe_up"), "back", _swipe_twin_phase, False),
])
def test_aliased_pairs_look_identical_on_the_slow_pathway_only(pair, side, twin_phase, slow_moves):
    """For every clip of one class there is a phase of the other class with the very same Slow frames
    (so, with uniform random phases, the Slow pathway sees identical distributions), but no phase of
    the other class reproduces its Fast frames. (The waving arm moves between Slow frames; the swiping
    hand is still on them.)"""
    rng = np.random.default_rng(0)
    for _ in range(4):
        phase, centre = rng.uniform(0, 2 * np.pi), int(rng.integers(20, 280))
        slow_frames = list(range(centre - 16, centre + 16, 8))  # Slow pathway: alpha 4 x sampling_rate 2
        fast_frames = list(range(centre - 16, centre + 16, 2))
        first = _waving_figure(pair[0], phase)
        twin = _waving_figure(pair[1], twin_phase(phase, slow_frames[0]))
        slow_first = np.array([_hand(first, f, side) for f in slow_frames])
        np.testing.assert_allclose(slow_first, [_hand(twin, f, side) for f in slow_frames], atol=1e-6)
        slow_motion = np.abs(np.diff(slow_first, axis=0)).max()
        assert slow_motion > 3.0 if slow_moves else slow_motion < 1e-6

        fast_first = np.array([_hand(first, f, side) for f in fast_frames])
        closest = min(
            np.abs(fast_first - [_hand(_waving_figure(pair[1], psi), f, side) for f in fast_frames]).max()
            for psi in np.linspace(0, 2 * np.pi, 73)
        )
        assert closest > 5.0  # pixels, for a 100-pixel person: the Fast pathway tells them apart


def test_fast_wave_is_not_just_a_phase_shift_on_the_fast_pathway():
    frames = np.arange(0, 32, 2)
    slow = toy.wave_forearm_angle(toy.WAVE_SLOW_CYCLES_PER_FRAME, 0.0, frames)
    for phase in np.linspace(0, 2 * np.pi, 37):
        fast = toy.wave_forearm_angle(toy.WAVE_FAST_CYCLES_PER_FRAME, phase, frames)
        assert np.abs(fast - slow).max() > 0.3


# --------------------------------------------------------------------------------------------------
# Annotation rules on hand-made cases


def test_visible_box_is_the_tight_box_of_visible_pixels():
    ids = np.full((10, 20), -1, dtype=np.int32)
    ids[2:6, 3:9] = 0  # person 0: 24 visible pixels
    ids[4:6, 5:7] = 1000  # a distractor in front of it
    found = toy.visible_objects(ids, {0: 40, 1000: 4, 2: 50})
    assert found == [toy.VisibleObject(0, 20 / 40, (3, 2, 9, 6)), toy.VisibleObject(1000, 1.0, (5, 4, 7, 6))]


def _one_person_scene() -> toy.ToyScene:
    figure = _waving_figure("wave_fast", 0.0)
    return toy.ToyScene("v", 200, 100, 15.0, 300, np.zeros((100, 601, 3), np.float32), np.zeros(300), [figure])


@pytest.mark.parametrize("visible, rows, excluded", [(0.5, 2, False), (0.25, 0, True), (0.1, 0, False)])
def test_visibility_decides_annotation_and_exclusion(visible, rows, excluded):
    obj = toy.VisibleObject(0, visible, (20, 10, 60, 90))
    gt, ambiguous = toy.keyframe_annotations(_one_person_scene(), 3.0, [obj])
    assert (len(gt), ambiguous) == (rows, excluded)
    if rows:
        assert gt == [["v", 3.0, 0.1, 0.1, 0.3, 0.9, 1, 0], ["v", 3.0, 0.1, 0.1, 0.3, 0.9, 7, 0]]


def test_actions_change_only_at_half_seconds():
    rng = np.random.default_rng(1)
    scene = toy.sample_scene(rng, "v", 320, 180, 30, 15.0)
    for figure in scene.figures:
        for segments in (figure.pose_segments, figure.arm_segments):
            assert segments[0].start == 0 and segments[-1].end >= 30
            for seg in segments[1:]:
                assert seg.start % 1 == 0.5 and 4 <= seg.end - seg.start <= 10


# --------------------------------------------------------------------------------------------------
# Errors and the command line


def test_refuses_a_non_empty_directory_without_overwrite(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty; pass --overwrite"):
        toy.generate_toy_dataset(tmp_path, **SMALL)
    assert cli.main(["toy-data", str(tmp_path), "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sfdet toy-data: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"size": "320x181"}, "must be even"),
    ({"size": "big"}, "is not WIDTHxHEIGHT"),
    ({"seconds": 2}, "at least 3 s"),
    ({"frames": "gif"}, "'jpg', 'png'"),
])
def test_bad_parameters_are_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        toy.generate_toy_dataset(tmp_path / "out", **kwargs)


def test_cli_writes_a_dataset_with_frames_and_overwrites(tmp_path, capsys):
    out = tmp_path / "toy"
    args = ["toy-data", str(out), "--seconds", "3", "--videos-train", "1", "--videos-val", "0", "--frames", "png"]
    assert cli.main(args) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("wrote 1 train + 0 val videos (3 s, 320x180 @ 15 fps")
    frames = sorted((out / "frames" / "toy_train_000").iterdir())
    assert len(frames) == 45 and frames[0].name == "toy_train_000_000001.png"
    assert ava.read_frame_lists(out / "frame_lists/train.csv")["path"].iloc[-1] == "toy_train_000/toy_train_000_000045.png"
    (out / "mine.txt").write_text("not ours")
    assert cli.main(args[:-2] + ["--overwrite"]) == 0
    assert not (out / "frames").exists() and (out / "mine.txt").exists()  # only the generator's own files go


def test_swipe_strokes_run_in_their_direction_in_steps_shorter_than_the_hand():
    frames = np.arange(0, 32, 2)  # Fast frames
    for downward, sign in ((True, 1), (False, -1)):
        steps = np.diff(toy.swipe_hand_down(downward, 0.3, frames))
        strokes = steps[np.sign(steps) == sign]
        assert len(strokes) >= 11  # 3 of the 4 steps of each 8-frame cycle
        np.testing.assert_allclose(np.abs(strokes), toy.SWIPE_LENGTH / 4)
        assert np.abs(strokes).max() < 2 * HAND_RADIUS  # a motion: the glove overlaps its last place
        assert np.abs(steps[np.sign(steps) == -sign]).min() > 2 * HAND_RADIUS  # the jump back is not


def test_waving_and_swiping_only_while_standing_or_crouching():
    walking = toy.ToyFigure(
        person_id=0, height=100.0, ground_y=170.0, colors=np.zeros((6, 3)),
        pose_segments=[toy.PoseSegment(0.0, 10.0, "walk", 1, 0.3)],
        arm_segments=[toy.ArmSegment(0.0, 10.0, "wave_fast", "swipe_down", 0.0, 0.0)],
        x_world=np.full(150, 160.0),
    )
    assert toy.actions_at(walking, 5.0) == [toy.CLASS_ID["walk"]]
    pose, _ = toy.figure_pose(walking, 75, 15.0)
    np.testing.assert_allclose(pose, toy.pose_action_angles("walk", 5.0, 0.3))  # arms swing as in walking
    standing = _waving_figure("wave_fast", 0.0)
    assert toy.actions_at(standing, 5.0) == [toy.CLASS_ID["stand"], toy.CLASS_ID["wave_fast"]]
