"""Training labels (GT + proposals at IoU >= 0.9), AvaDataset from videos and frames, collate, workers."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sfdet.data import ava
from sfdet.data.config import DataConfig
from sfdet.data.dataset import AvaDataset, SkippedClipWarning, build_loader, collate_fn
from sfdet.data.frames import frame_path
from sfdet.data.labels import detection_boxes, flip_label_columns, merge_gt_boxes, select_classes, training_targets
from sfdet.data.video import write_video
from sfdet.errors import ConfigError, DataError

LABEL_MAP = {1: "stand", 2: "wave", 5: "jump"}  # sparse ids: column j is class LABEL_MAP's j-th id
WIDTH, HEIGHT, FPS, SECONDS = 96, 64, 15, 4
PERSON = (0.25, 0.25, 0.5, 0.75)  # normalised box of the bright rectangle drawn in every frame


def _frames(index: int) -> list[np.ndarray]:
    rng = np.random.default_rng(index)
    frames = []
    for i in range(FPS * SECONDS):
        image = rng.integers(0, 80, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        x1, y1, x2, y2 = (round(v * s) for v, s in zip(PERSON, (WIDTH, HEIGHT, WIDTH, HEIGHT)))
        image[y1:y2, x1:x2] = 200 + (i % 40)
        frames.append(image)
    return frames


def make_tiny_dataset(root: Path, frames: bool = False) -> DataConfig:
    """Videos train_a, train_b, val_a (4 s, 15 fps) in the toy layout; GT at 1, 2, 3 s; `ghost` has no video.

    Returns a DataConfig for it: Fast 4 frames at stride 2, train crop 48 of short side [56, 64].
    """
    root = Path(root)
    for index, video_id in enumerate(["train_a", "train_b", "val_a"]):
        write_video(root / "videos" / f"{video_id}.mp4", _frames(index), FPS, keyframe_interval=8)
        if frames:
            import av

            with av.open(str(root / "videos" / f"{video_id}.mp4")) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    path = frame_path(root / "frames", video_id, i, ".png")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(frame.to_ndarray(format="rgb24")).save(path)
    ann = root / "annotations"
    ava.write_label_map(ann / "label_map.pbtxt", LABEL_MAP)
    rows = []
    for video_id in ["train_a", "train_b", "ghost"]:
        for t in (1, 2, 3):
            rows += [(video_id, t, *PERSON, 1, 0), (video_id, t, *PERSON, 2, 0)]
    gt = pd.DataFrame(rows, columns=ava.GT_COLUMNS)
    ava.write_gt_csv(ann / "train.csv", gt)
    ava.write_gt_csv(ann / "val.csv", gt.assign(video_id="val_a").drop_duplicates())
    ava.write_exclusions(ann / "train_excluded_timestamps.csv", pd.DataFrame({"video_id": ["train_b"], "timestamp": [3.0]}))
    ava.write_exclusions(ann / "val_excluded_timestamps.csv", pd.DataFrame(columns=["video_id", "timestamp"]))
    near = (0.25, 0.25, 0.5, 0.725)  # IoU 0.95 with PERSON
    proposals = pd.DataFrame(
        [("train_a", 1.0, *near, 0.9), ("train_a", 1.0, 0.6, 0.1, 0.9, 0.9, 0.95)]
        + [("val_a", float(t), *near, 0.9) for t in (1, 2, 3)] + [("val_a", 2.0, 0.6, 0.1, 0.9, 0.9, 0.5)],
        columns=ava.PROPOSAL_COLUMNS,
    )
    ava.write_proposals_csv(ann / "train_predicted_boxes.csv", proposals[proposals.video_id.str.startswith("train")])
    ava.write_proposals_csv(ann / "val_predicted_boxes.csv", proposals[proposals.video_id == "val_a"])
    return DataConfig(root=str(root), fps=FPS, num_frames=4, sampling_rate=2, train_jitter=[56, 64],
                      train_crop=48, test_short_side=64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> DataConfig:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), frames=True)


# ---------------------------------------------------------------------------------------------
# Labels


def _gt(rows):
    return pd.DataFrame([("v", 902.0, *box, action, 0) for box, action in rows], columns=ava.GT_COLUMNS)


def _proposals(rows):
    return pd.DataFrame([("v", 902.0, *box, score) for box, score in rows], columns=ava.PROPOSAL_COLUMNS)


A = (0.1, 0.1, 0.5, 0.9)  # area 0.32
B = (0.6, 0.1, 0.9, 0.9)


def test_gt_rows_of_one_box_merge_and_unknown_actions_are_ignored():
    targets = merge_gt_boxes(_gt([(A, 1), (A, 5), (B, 2), (B, 3)]), label_ids=[1, 2, 5])
    target = targets[("v", 902.0)]
    np.testing.assert_allclose(target.boxes_norm, [A, B], atol=1e-6)
    assert target.labels.tolist() == [[1, 0, 1], [0, 1, 0]]  # columns: ids 1, 2, 5; id 3 is not in the map


def test_training_proposals_need_iou_0_9_and_score_0_8():
    gt = _gt([(A, 1), (A, 2), (B, 5)])
    proposals = _proposals([
        (A, 0.95),                      # identical to a GT box: that box, not a second one
        ((0.1, 0.1, 0.48, 0.9), 0.9),   # IoU 0.95 with A -> labels of A
        ((0.1, 0.1, 0.44, 0.9), 0.9),   # IoU 0.85 with A -> not a training box
        ((0.6, 0.1, 0.885, 0.9), 0.7),  # IoU 0.95 with B but score 0.7 < 0.8 -> ignored
        ((0.6, 0.1, 0.885, 0.9), 0.8),  # ... at score 0.8 (>= threshold) -> labels of B
    ])
    target = training_targets(gt, proposals, [1, 2, 5], score_thresh=0.8, iou_thresh=0.9)[("v", 902.0)]
    np.testing.assert_allclose(target.boxes_norm, [list(A), list(B), [0.1, 0.1, 0.48, 0.9], [0.6, 0.1, 0.885, 0.9]], atol=1e-6)
    assert target.labels.tolist() == [[1, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1]]
    # with negatives (PySlowFast's *_include_negative lists) the IoU-0.85 proposal comes in without labels
    with_negatives = training_targets(gt, proposals, [1, 2, 5], negatives=True)[("v", 902.0)]
    np.testing.assert_allclose(with_negatives.boxes_norm[3], (0.1, 0.1, 0.44, 0.9), atol=1e-6)
    assert with_negatives.labels.tolist() == [[1, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_proposal_overlapping_two_gt_boxes_takes_the_best_one():
    a2 = (0.1, 0.1, 0.5, 0.88)  # IoU(A, a2) = 0.975
    proposal = (0.1, 0.1, 0.5, 0.895)  # IoU 0.981 with a2, 0.994 with A -> A
    gt = _gt([(A, 1), (a2, 2)])
    target = training_targets(gt, _proposals([(proposal, 0.9)]), [1, 2, 5])[("v", 902.0)]
    assert target.labels[-1].tolist() == [1, 0, 0]
    nearer_a2 = (0.1, 0.1, 0.5, 0.885)  # IoU 0.994 with a2, 0.981 with A -> a2
    target = training_targets(gt, _proposals([(nearer_a2, 0.9)]), [1, 2, 5])[("v", 902.0)]
    assert target.labels[-1].tolist() == [0, 1, 0]


def test_val_boxes_are_proposals_above_threshold():
    gt = _gt([(A, 1)])
    proposals = _proposals([((0.1, 0.1, 0.48, 0.9), 0.85), (B, 0.79), (B, 0.81)])
    boxes = detection_boxes(proposals, gt, [1, 2, 5], score_thresh=0.8)[("v", 902.0)]
    np.testing.assert_allclose(boxes.boxes_norm, [(0.1, 0.1, 0.48, 0.9), B], atol=1e-6)
    assert boxes.labels.tolist() == [[1, 0, 0], [0, 0, 0]]
    assert detection_boxes(proposals, None, [1, 2, 5])[("v", 902.0)].labels.shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# Dataset


def test_train_samples_boxes_and_labels(tiny):
    with pytest.warns(UserWarning, match=r"train: 1 video\(s\) not found .*first: ghost.*3 keyframes left out"):
        dataset = AvaDataset(tiny, "train", alpha=2)
    # train_a 1, 2, 3 + train_b 1, 2 (3 is excluded); ghost has no video
    assert dataset.samples == [("train_a", 1.0), ("train_a", 2.0), ("train_a", 3.0), ("train_b", 1.0), ("train_b", 2.0)]
    torch.manual_seed(0)
    sample = dataset[0]
    slow, fast = sample["inputs"]
    assert fast.shape == (3, 4, 48, 48) and slow.shape == (3, 2, 48, 48)
    assert torch.equal(slow, fast[:, ::2])
    # GT box (labels 1 and 2) + the IoU-0.95 proposal; the 0.6.. proposal matches nothing
    assert sample["labels"].tolist() == [[1, 1, 0], [1, 1, 0]]
    np.testing.assert_allclose(sample["boxes_norm"], [list(PERSON), [0.25, 0.25, 0.5, 0.725]], atol=1e-6)
    assert sample["boxes_xyxy_abs"].shape == (2, 4)
    assert (sample["video_id"], sample["timestamp"]) == ("train_a", 1.0)
    dataset.close()


def test_select_classes_by_name_or_id_keeps_ids_in_label_map_order():
    label_map = {1: "stand", 2: "wave", 5: "jump", 12: "hand wave"}
    assert select_classes(label_map, []) == label_map and select_classes(label_map, None) == label_map
    assert select_classes(label_map, ["jump", 1, "12", " hand wave", 5]) == {1: "stand", 5: "jump", 12: "hand wave"}
    with pytest.raises(ConfigError) as error:
        select_classes(label_map, ["wave", "jmup", 3, 99, "Stand"], source="lm.pbtxt")
    assert str(error.value) == (
        "config key 'data.classes': not in the label map lm.pbtxt (4 classes): 'jmup' (closest: 'jump' = 5); "
        "3 (ids are 1..12; closest: 2 = 'wave', 5 = 'jump'); 99 (ids are 1..12; closest: 12 = 'hand wave'); "
        "'Stand' (closest: 'stand' = 1)")
    with pytest.raises(ConfigError, match=r"config key 'data.classes': expected class names or ids like \[stand, 12\]"):
        DataConfig(classes=["stand", " "])


def test_class_subset_keeps_ids_and_drops_boxes_of_other_classes(tiny):
    """MMAction2's custom_classes: rows of other classes go before boxes merge; a box (and a training keyframe)
    with none of the subset's classes is dropped, not kept as a negative."""
    gt = _gt([(A, 1), (A, 5), (B, 2)])
    targets = merge_gt_boxes(gt, label_ids=[5])
    assert targets[("v", 902.0)].labels.tolist() == [[1]] and len(targets[("v", 902.0)].boxes_norm) == 1
    assert training_targets(gt, None, [12]) == {}  # no box of the subset: no training keyframe

    with pytest.warns(UserWarning, match="ghost"):
        full = AvaDataset(tiny, "train", alpha=2)
        wave = AvaDataset(_with(tiny, classes=["wave"]), "train", alpha=2)
    assert wave.label_map == {2: "wave"} and wave.label_ids == [2]
    assert wave.samples == full.samples
    torch.manual_seed(0)
    sample = wave[0]
    torch.manual_seed(0)
    reference = full[0]
    assert sample["labels"].tolist() == [[1], [1]]  # column 0 = class 2 (the GT box and its IoU-0.95 proposal)
    assert torch.equal(sample["labels"], reference["labels"][:, [1]])
    assert all(torch.equal(a, b) for a, b in zip(sample["inputs"], reference["inputs"]))
    val = AvaDataset(_with(tiny, classes=[2]), "val", alpha=2)  # val keyframes still come from the proposals
    assert val.label_map == {2: "wave"} and len(val) == 3 and val[0]["labels"].shape == (1, 1)
    with pytest.raises(DataError, match=r"train: .*train.csv has no GT box of the 1 classes data.classes keeps "
                                         r"\(5 jump\); check data.classes"):
        AvaDataset(_with(tiny, classes=["jump"]), "train", alpha=2)
    for dataset in (full, wave, val):
        dataset.close()


def test_flip_pairs_with_a_class_subset(tiny):
    assert flip_label_columns([1], [[2, 5]], left_out=[2, 5]) is None  # both left out: nothing to swap
    with pytest.raises(ConfigError, match=r"'data.flip_label_pairs': \[2, 5\] pairs class 2, which data.classes "
                                          r"keeps, with 5, which it leaves out; keep both or neither"):
        flip_label_columns([1, 2], [[2, 5]], left_out=[5])
    with pytest.warns(UserWarning, match="ghost"):
        dataset = AvaDataset(_with(tiny, classes=["stand"], flip_label_pairs=[[2, 5]]), "train", alpha=2)
    assert dataset.flip_columns is None
    dataset.close()


def _with(cfg: DataConfig, **changes) -> DataConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def test_video_and_frames_sources_give_the_same_samples(tiny):
    from_video = AvaDataset(tiny, "val", alpha=2)
    from_frames = AvaDataset(DataConfig(**{**tiny.__dict__, "source": "frames"}), "val", alpha=2)
    assert len(from_video) == len(from_frames) == 3
    for i in range(3):
        a, b = from_video[i], from_frames[i]
        assert all(torch.equal(x, y) for x, y in zip(a["inputs"], b["inputs"]))
        assert torch.equal(a["boxes_xyxy_abs"], b["boxes_xyxy_abs"])
    # val: full frame at short side 64 (the video is 96 x 64), proposals >= 0.8 only
    sample = from_video[1]
    assert sample["inputs"][1].shape == (3, 4, 64, 96)
    np.testing.assert_allclose(sample["boxes_xyxy_abs"], [[24.0, 16.0, 48.0, 46.4]], atol=1e-6)
    # the bright person rectangle (values >= 200, normalised >= 1.48) is where the box says; background < 80
    fast = sample["inputs"][1]
    assert (fast[:, :, 17:46, 25:47] > 1.2).all() and (fast[:, :, :, 50:] < 0.6).all()
    from_video.close()


def test_video_resampled_to_a_fixed_rate_grid(tiny):
    # 15 fps videos on a 30 fps grid: grid point k shows frame k // 2 (ffmpeg's -r 30 doubles each frame),
    # so 4 grid points 2 apart around a keyframe are 4 consecutive frames: Fast 4 x 2 at 30 = Fast 4 x 1 at 15.
    resampled = AvaDataset(DataConfig(**{**tiny.__dict__, "video_resample_fps": 30.0}), "val", alpha=None)
    consecutive = AvaDataset(DataConfig(**{**tiny.__dict__, "sampling_rate": 1}), "val", alpha=None)
    assert resampled.offsets == [-4, -2, 0, 2] and consecutive.offsets == [-2, -1, 0, 1]
    for i in range(len(resampled)):
        assert torch.equal(resampled[i]["inputs"][0], consecutive[i]["inputs"][0])
    plain = AvaDataset(tiny, "val", alpha=None)  # without resampling the same offsets span twice the time
    assert not torch.equal(plain[1]["inputs"][0], resampled[1]["inputs"][0])
    for dataset in (resampled, consecutive, plain):
        dataset.close()


def test_flip_label_columns():
    assert flip_label_columns([1, 2, 5], [[2, 5]]).tolist() == [0, 2, 1]
    assert flip_label_columns([1, 2, 5], []) is None
    with pytest.raises(ConfigError, match=r"'data.flip_label_pairs': action id 9 is not in the label map"):
        flip_label_columns([1, 2, 5], [[2, 9]])
    with pytest.raises(ConfigError, match=r"'data.flip_label_pairs': action id 2 is in more than one pair"):
        DataConfig(flip_label_pairs=[[1, 2], [2, 5]])


def test_flipped_training_clips_swap_the_paired_labels(tiny):
    # Person boxes carry actions 1 and 2; with pairs [[2, 5]] a flipped clip's boxes carry 1 and 5.
    with pytest.warns(UserWarning, match="ghost"):
        dataset = AvaDataset(DataConfig(**{**tiny.__dict__, "flip_label_pairs": [[2, 5]]}), "train", alpha=None)
    transform, flips = dataset.transform, []

    def recording_transform(frames, boxes):
        result = transform(frames, boxes)
        flips.append(result[3])
        return result

    dataset.transform = recording_transform
    for seed in range(12):
        torch.manual_seed(seed)
        labels = dataset[0]["labels"]
        expected = [1, 0, 1] if flips[-1] else [1, 1, 0]
        assert len(labels) and all(row == expected for row in labels.tolist()), (seed, flips[-1])
    assert set(flips) == {True, False}
    dataset.close()


def test_collate_pads_and_flattens_boxes():
    def sample(h, w, n, vid):
        return {"inputs": [torch.ones(3, 2, h, w), torch.ones(3, 4, h, w)], "boxes_xyxy_abs": torch.ones(n, 4),
                "labels": torch.ones(n, 3), "boxes_norm": torch.full((n, 4), 0.5), "video_id": vid, "timestamp": 1.0}

    batch = collate_fn([sample(4, 6, 2, "a"), {"skipped": ("x", 2.0, "broken")}, sample(5, 3, 1, "b")])
    slow, fast = batch["inputs"]
    assert slow.shape == (2, 3, 2, 5, 6) and fast.shape == (2, 3, 4, 5, 6)
    assert fast[0, :, :, 4].abs().sum() == 0 and fast[1, :, :, :, 3:].abs().sum() == 0  # zero padding
    assert fast[0, :, :, :4, :6].eq(1).all() and fast[1, :, :, :5, :3].eq(1).all()
    assert [b.shape[0] for b in batch["boxes"]] == [2, 1]
    assert batch["labels"].shape == (3, 3) and batch["boxes_norm"].shape == (3, 4)
    assert batch["batch_index"].tolist() == [0, 0, 1]
    assert batch["keys"] == [("a", 1.0), ("b", 1.0)]
    assert batch["image_sizes"] == [(4, 6), (5, 3)]
    assert batch["skipped"] == [("x", 2.0, "broken")]


def _open_videos() -> list[str]:
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return [f for f in fds if f.endswith(".mp4")]


def test_loader_with_workers_equals_in_process_and_leaks_no_files(tiny):
    dataset = AvaDataset(tiny, "val", alpha=2)
    dataset[0]  # the parent opens a video before forking: workers must not reuse it
    assert len(_open_videos()) == 1
    in_process = list(build_loader(dataset, batch_size=2, num_workers=0))
    workers = list(build_loader(dataset, batch_size=2, num_workers=2))
    assert [b["keys"] for b in workers] == [b["keys"] for b in in_process]
    for a, b in zip(in_process, workers):
        assert all(torch.equal(x, y) for x, y in zip(a["inputs"], b["inputs"]))
    dataset.close()
    assert _open_videos() == []


def test_unreadable_video_skips_in_training_and_fails_otherwise(tmp_path):
    cfg = make_tiny_dataset(tmp_path)
    video = tmp_path / "videos" / "train_b.mp4"
    video.write_bytes(video.read_bytes()[:500])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the `ghost` video is missing
        dataset = AvaDataset(cfg, "train", alpha=2)
        strict = AvaDataset(cfg, "train", alpha=2, skip_bad_videos=False)
    assert AvaDataset(cfg, "val", alpha=2).skip_bad_videos is False  # only training skips by default
    with pytest.warns(SkippedClipWarning, match="skipping clips of train_b: .*train_b.mp4: cannot open video"):
        batch = collate_fn([dataset[i] for i in range(len(dataset))])
    assert [k[0] for k in batch["skipped"]] == ["train_b", "train_b"]
    assert len(batch["keys"]) == 3
    with pytest.raises(DataError, match="train_b.mp4: cannot open video"):
        strict[3]


def test_nothing_lines_up_and_config_errors(tmp_path):
    cfg = make_tiny_dataset(tmp_path)
    with pytest.raises(DataError, match=r"train: no keyframe has both boxes and a video in .*novideos; run `sfdet data check`"):
        AvaDataset(DataConfig(**{**cfg.__dict__, "video_dir": "novideos"}), "train", alpha=4)
    with pytest.raises(ConfigError, match="data.val_proposals' is empty: set it, or data.val_boxes=gt"):
        AvaDataset(DataConfig(**{**cfg.__dict__, "val_proposals": ""}), "val", alpha=4)
    with pytest.raises(ConfigError, match="config key 'data.source': expected one of video, frames; got 'vid'"):
        DataConfig(source="vid")
    with pytest.raises(ConfigError, match="data.train_crop"):
        DataConfig(train_jitter=[160, 200], train_crop=224)
