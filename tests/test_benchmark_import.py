"""`sfdet data import multisports|ucf101-24|jhmdb PKL`: the tube benchmarks' GT pickles -> AVA-format datasets.

Each test writes a small GT pickle in the dataset's published layout (`act_pickles`: UCF101-24 and JHMDB as
Python 2 pickles, MultiSports as a Python 3 one) and its media in the published folder layout (UCF101-24's
`rgb-images/<class>/<video>/00001.jpg`, JHMDB's `Frames/<class>/<video>/00001.png`, MultiSports'
`trainval/<sport>/<video>.mp4`), imports it through the command line and checks the dataset: GT rows per
annotated frame with normalised (clipped) boxes at the right times, the split, the frames / video links, the
tube pickle for `eval --video-map`, and that the Dataset's clip at a keyframe shows the GT frame.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from act_pickles import JHMDB_LABELS, MULTISPORTS_LABELS, UCF24_LABELS, py2_pickle
from sfdet import cli
from sfdet.config import load_config
from sfdet.data import ava
from sfdet.data.frames import FrameFolder
from sfdet.data.video import VideoReader, write_video


def _tube(first: int, last: int, box, step=(0.0, 0.0)) -> np.ndarray:
    frames = np.arange(first, last + 1, dtype=np.float64)
    k = frames - first
    x1, y1, x2, y2 = box
    return np.stack([frames, x1 + step[0] * k, y1 + step[1] * k, x2 + step[0] * k, y2 + step[1] * k], axis=1)


def _marker(n: int) -> int:
    """The grey level of frame n (1-based): frames are told apart by brightness."""
    return 8 + 8 * n


def _frames(folder: Path, count: int, size: tuple[int, int], ext: str, name=lambda n: f"{n:05d}") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for n in range(1, count + 1):
        Image.fromarray(np.full((h, w, 3), _marker(n), np.uint8)).save(folder / f"{name(n)}{ext}")


def _import(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["data", "import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _gt(out: Path, split: str):
    return ava.read_gt_csv(out / "annotations" / f"{split}.csv")


def _centre_grey(source, t: float) -> float:
    return float(source.read_clip(t, [0])[0].float().mean())


# ----------------------------------------------------------------------------------------------------
# UCF101-24: Python 2 pickle, rgb-images/<class>/<video>/00001.jpg, 320x240 (here 40x30), one split


@pytest.fixture
def ucf24(tmp_path: Path):
    videos = {"Basketball/v_Basketball_g01_c01": 20, "Basketball/v_Basketball_g08_c02": 18,
              "WalkingWithDog/v_WalkingWithDog_g02_c01": 16}
    res = (30, 40)
    gttubes = {
        "Basketball/v_Basketball_g01_c01": {0: [_tube(3, 12, (4.0, 2.0, 20.0, 28.0), step=(1.0, 0.0))]},
        # partly outside the frame (the corrected annotations have such boxes): clipped in the CSVs
        "Basketball/v_Basketball_g08_c02": {0: [_tube(1, 18, (-3.0, 1.0, 15.0, 31.0))]},
        # two persons, two tubes of one class
        "WalkingWithDog/v_WalkingWithDog_g02_c01": {23: [_tube(2, 9, (1.0, 1.0, 11.0, 21.0)),
                                                         _tube(5, 16, (20.0, 5.0, 38.0, 29.0))]},
    }
    gt = {"labels": UCF24_LABELS, "gttubes": gttubes, "nframes": dict(videos),
          "resolution": {v: res for v in videos},
          "train_videos": [["Basketball/v_Basketball_g01_c01", "WalkingWithDog/v_WalkingWithDog_g02_c01"]],
          "test_videos": [["Basketball/v_Basketball_g08_c02"]]}
    pkl = tmp_path / "UCF101v2-GT.pkl"
    pkl.write_bytes(py2_pickle(gt))
    for video, n in videos.items():
        _frames(tmp_path / "rgb-images" / video, n, (40, 30), ".jpg")
    return tmp_path, pkl, gt


def test_python2_pickle_needs_latin1(ucf24):
    _, pkl, _ = ucf24
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(pkl.read_bytes())  # as the published file: Python 3 reads it only with latin-1


def test_ucf24_frames(ucf24, capsys):
    root, pkl, gt = ucf24
    out = root / "data"
    code, text, err = _import(["ucf101-24", str(pkl), "--frames", str(root / "rgb-images"), "--out", str(out)], capsys)
    assert code == 0, err
    assert "UCF101-24 split 1: 2 train and 1 test videos, 24 labels, keyframes on every annotated frame" in text
    assert "--fps 25 --frame-shift 1" in text
    label_map = ava.read_label_map(out / "annotations" / "label_map.pbtxt")
    assert label_map == {i + 1: name for i, name in enumerate(UCF24_LABELS)}

    train, val = _gt(out, "train"), _gt(out, "val")
    assert sorted(train["video_id"].unique()) == ["v_Basketball_g01_c01", "v_WalkingWithDog_g02_c01"]
    assert val["video_id"].unique().tolist() == ["v_Basketball_g08_c02"]
    # one row per tube box, at (n - 1) / 25 (file n of extracted frames is shown at (n - 1) / fps)
    assert len(train) == 10 + 8 + 12 and len(val) == 18
    first = train[train["video_id"] == "v_Basketball_g01_c01"].sort_values("timestamp")
    np.testing.assert_allclose(first["timestamp"], (np.arange(3, 13) - 1) / 25)
    assert set(first["action_id"]) == {1} and set(first["person_id"]) == {0}
    row = first.iloc[2]  # frame 5: x1 = 4 + 2
    np.testing.assert_allclose(row[["x1", "y1", "x2", "y2"]].to_numpy(float), [6 / 40, 2 / 30, 22 / 40, 28 / 30])
    walk = train[train["video_id"] == "v_WalkingWithDog_g02_c01"]
    assert set(walk["action_id"]) == {24} and sorted(walk["person_id"].unique()) == [0, 1]
    assert (val["x1"] == 0).all() and (val["y2"] == 1).all()  # clipped
    record = json.loads((out / "import.json").read_text())
    assert record["skipped"] == {"tube boxes partly outside the frame (clipped in the CSVs)": 18}
    assert record["fps"] == 25 and record["frame_shift"] == 1
    assert record["video_names"]["v_Basketball_g01_c01"] == "Basketball/v_Basketball_g01_c01"

    # frames in sfdet's layout (links), and the Dataset's centre frame at a keyframe is the GT frame
    links = sorted((out / "frames" / "v_Basketball_g01_c01").iterdir())
    assert [p.name for p in links[:2]] == ["v_Basketball_g01_c01_000001.jpg", "v_Basketball_g01_c01_000002.jpg"]
    assert len(links) == 20 and links[0].is_symlink()
    cfg = load_config(out / "data.yaml")
    assert cfg.data.source == "frames" and cfg.data.fps == 25 and cfg.data.time_offset == 0
    folder = FrameFolder(out / cfg.data.frames_dir, "v_Basketball_g01_c01", cfg.data.fps)
    for t, n in zip(first["timestamp"], range(3, 13)):
        assert abs(_centre_grey(folder, t) - _marker(n)) < 2

    # the tube GT for eval --video-map: the split's videos under their ids, tubes as published
    with open(out / "annotations" / "tubes_gt.pkl", "rb") as handle:
        tubes = pickle.load(handle)
    assert tubes["labels"] == UCF24_LABELS
    assert tubes["train_videos"] == [["v_Basketball_g01_c01", "v_WalkingWithDog_g02_c01"]]
    assert tubes["test_videos"] == [["v_Basketball_g08_c02"]]
    assert tubes["nframes"]["v_Basketball_g08_c02"] == 18 and tubes["resolution"]["v_Basketball_g08_c02"] == (30, 40)
    np.testing.assert_array_equal(tubes["gttubes"]["v_Basketball_g08_c02"][0][0],
                                  gt["gttubes"]["Basketball/v_Basketball_g08_c02"][0][0])

    # the dataset passes `sfdet data check`
    assert cli.main(["data", "check", "--config", str(out / "data.yaml")]) == 0


def test_keyframe_rate_and_overwrite(ucf24, capsys):
    root, pkl, _ = ucf24
    out = root / "data"
    args = ["ucf101-24", str(pkl), "--frames", str(root / "rgb-images"), "--out", str(out)]
    assert _import(args, capsys)[0] == 0
    code, _, err = _import(args + ["--keyframe-rate", "5"], capsys)
    assert code == 2 and "exists and is not empty" in err
    code, _, err = _import(args + ["--keyframe-rate", "5", "--overwrite", "--copy-videos"], capsys)
    assert code == 0, err
    train = _gt(out, "train")
    # keyframes at k / 5 s = every 5th frame (frame n at (n - 1) / 25) whose frame is annotated
    first = train[train["video_id"] == "v_Basketball_g01_c01"]
    np.testing.assert_allclose(sorted(first["timestamp"]), [0.2, 0.4])  # frames 6 and 11 of 3..12
    assert not (out / "frames" / "v_Basketball_g01_c01" / "v_Basketball_g01_c01_000001.jpg").is_symlink()


# ----------------------------------------------------------------------------------------------------
# JHMDB-21: Python 2 pickle, Frames/<class>/<video>/00001.png, 3 splits, every frame annotated, 30 fps


def test_jhmdb_split(tmp_path: Path, capsys):
    videos = {"brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0": 12, "catch/Torwarttraining_catch_f_cm_np1_le_bad_2": 10,
              "wave/wave_and_say_hi_wave_u_cm_np1_fr_med_0": 11}
    labels = {v: JHMDB_LABELS.index(v.split("/")[0]) for v in videos}
    gttubes = {v: {labels[v]: [_tube(1, n, (2.0, 3.0, 30.0, 26.0))]} for v, n in videos.items()}
    names = list(videos)
    gt = {"labels": JHMDB_LABELS, "gttubes": gttubes, "nframes": dict(videos),
          "resolution": {v: (30, 40) for v in videos},
          "train_videos": [[names[0], names[1]], [names[1], names[2]], [names[0], names[2]]],
          "test_videos": [[names[2]], [names[0]], [names[1]]]}
    pkl = tmp_path / "JHMDB-GT.pkl"
    pkl.write_bytes(py2_pickle(gt))
    for video, n in videos.items():
        _frames(tmp_path / "Frames" / video, n, (40, 30), ".png")
    out = tmp_path / "jhmdb"
    code, text, err = _import(["jhmdb", str(pkl), "--frames", str(tmp_path / "Frames"), "--out", str(out),
                               "--split", "2", "--dense"], capsys)
    assert code == 0, err
    assert "JHMDB-21 split 2: 2 train and 1 test videos, 21 labels" in text and "--fps 30 " in text
    train, val = _gt(out, "train"), _gt(out, "val")
    assert set(train["video_id"]) == {"Torwarttraining_catch_f_cm_np1_le_bad_2", "wave_and_say_hi_wave_u_cm_np1_fr_med_0"}
    assert set(val["video_id"]) == {"April_09_brush_hair_u_nm_np1_ba_goo_0"}
    assert len(val) == 12 and set(val["action_id"]) == {1}
    np.testing.assert_allclose(sorted(val["timestamp"]), np.arange(12) / 30)
    assert set(train[train["video_id"].str.startswith("wave")]["action_id"]) == {21}
    assert (out / "frames" / "April_09_brush_hair_u_nm_np1_ba_goo_0" /
            "April_09_brush_hair_u_nm_np1_ba_goo_0_000012.png").exists()
    folder = FrameFolder(out / "frames", "April_09_brush_hair_u_nm_np1_ba_goo_0", 30)
    assert abs(_centre_grey(folder, 7 / 30) - _marker(8)) < 2
    with open(out / "annotations" / "tubes_gt.pkl", "rb") as handle:
        tubes = pickle.load(handle)
    assert tubes["test_videos"] == [["April_09_brush_hair_u_nm_np1_ba_goo_0"]]

    code, _, err = _import(["jhmdb", str(pkl), "--frames", str(tmp_path / "Frames"), "--out",
                            str(tmp_path / "x"), "--split", "4"], capsys)
    assert code == 2 and "--split 4: this pickle has 3 split(s) (1..3)" in err
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------------
# MultiSports: Python 3 pickle, trainval/<sport>/<video>.mp4 at 25 fps, several tubes per video


@pytest.fixture
def multisports(tmp_path: Path):
    videos = {"aerobic_gymnastics/v_-9I4z3CwJ04_c001": 30, "basketball/v_0Yg4AmQfmlk_c010": 24}
    size = (64, 36)  # w, h
    for video, n in videos.items():
        frames = [np.full((size[1], size[0], 3), _marker(i), np.uint8) for i in range(1, n + 1)]
        write_video(tmp_path / "trainval" / f"{video}.mp4", frames, 25, keyframe_interval=5)
    aerobic, basket = (MULTISPORTS_LABELS.index(name) for name in ("aerobic split", "basketball dribble"))
    shot = MULTISPORTS_LABELS.index("basketball 2-point shot")
    gttubes = {
        "aerobic_gymnastics/v_-9I4z3CwJ04_c001": {aerobic: [_tube(4, 20, (10.0, 4.0, 30.0, 34.0))]},
        # one player dribbles, then shoots (two tubes), another dribbles
        "basketball/v_0Yg4AmQfmlk_c010": {basket: [_tube(1, 10, (2.0, 2.0, 20.0, 30.0)),
                                                   _tube(5, 24, (40.0, 3.0, 60.0, 33.0))],
                                          shot: [_tube(11, 18, (3.0, 2.0, 21.0, 30.0))]},
    }
    gt = {"labels": MULTISPORTS_LABELS, "gttubes": gttubes, "nframes": dict(videos),
          "resolution": {v: (36, 64) for v in videos},
          "train_videos": [["aerobic_gymnastics/v_-9I4z3CwJ04_c001"]],
          "test_videos": [["basketball/v_0Yg4AmQfmlk_c010"]]}
    pkl = tmp_path / "multisports_GT.pkl"
    with open(pkl, "wb") as handle:
        pickle.dump(gt, handle)
    return tmp_path, pkl, gt


def test_multisports_videos(multisports, capsys):
    root, pkl, gt = multisports
    out = root / "ms"
    code, text, err = _import(["multisports", str(pkl), "--videos", str(root / "trainval"), "--out", str(out)], capsys)
    assert code == 0, err
    assert "MultiSports split 1: 1 train and 1 test videos, 66 labels" in text
    assert "--fps 25 --frame-shift 1" in text
    cfg = load_config(out / "data.yaml")
    assert cfg.data.source == "video"
    video = out / "videos" / "v_0Yg4AmQfmlk_c010.mp4"
    assert video.is_symlink()
    val = _gt(out, "val")
    # frames 1..24 hold boxes; frames 11..18 hold two boxes of person 0 (dribble tube ends at 10) and 2 (shot)
    assert val["timestamp"].nunique() == 24
    persons = val.groupby("person_id")["action_id"].agg(lambda a: sorted(set(a))).to_dict()
    basket, shot = MULTISPORTS_LABELS.index("basketball dribble") + 1, MULTISPORTS_LABELS.index("basketball 2-point shot") + 1
    assert persons == {0: [basket], 1: [basket], 2: [shot]}
    # the keyframe of frame n is the video's own time of its n-th frame, and the Dataset's clip shows it
    reader = VideoReader(video)
    times = sorted(val["timestamp"].unique())
    np.testing.assert_allclose(times, np.arange(24) / 25, atol=1e-6)
    for n in (1, 7, 16, 24):
        assert abs(_centre_grey(reader, times[n - 1]) - _marker(n)) < 4
    reader.close()
    np.testing.assert_allclose(val[val["person_id"] == 1].sort_values("timestamp").iloc[0][["x1", "y1", "x2", "y2"]]
                               .to_numpy(float), [40 / 64, 3 / 36, 60 / 64, 33 / 36])
    train = _gt(out, "train")
    assert len(train) == 17 and set(train["action_id"]) == {MULTISPORTS_LABELS.index("aerobic split") + 1}
    record = json.loads((out / "import.json").read_text())
    assert record["media"] == "videos" and abs(record["video_fps"]["v_0Yg4AmQfmlk_c010"] - 25) < 1e-6


def test_mixed_frame_rates_warn(multisports, capsys):
    root, pkl, _ = multisports
    frames = [np.full((36, 64, 3), _marker(i), np.uint8) for i in range(1, 25)]
    write_video(root / "trainval" / "basketball" / "v_0Yg4AmQfmlk_c010.mp4", frames, 30)  # 30 fps, the other 25
    code, text, err = _import(["multisports", str(pkl), "--videos", str(root / "trainval"), "--out",
                               str(root / "mixed")], capsys)
    assert code == 0, err
    assert "warning: videos at other frame rates than" in text and "--frames" in text
    val = _gt(root / "mixed", "val")
    np.testing.assert_allclose(sorted(val["timestamp"].unique()), np.arange(24) / 30, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Malformed input: one line naming what is wrong, nothing written


def _bad(tmp_path: Path, gt: dict, capsys, media=None) -> str:
    pkl = tmp_path / "bad.pkl"
    with open(pkl, "wb") as handle:
        pickle.dump(gt, handle)
    out = tmp_path / "bad_out"
    code, _, err = _import(["ucf101-24", str(pkl), "--frames", str(media or tmp_path / "rgb-images"),
                            "--out", str(out)], capsys)
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1, err
    return err


def test_malformed(ucf24, capsys):
    root, _, gt = ucf24
    broken = dict(gt)
    del broken["resolution"]
    assert "lacks resolution" in _bad(root, broken, capsys)
    video = "Basketball/v_Basketball_g01_c01"
    for tube, message in ((np.zeros((3, 4)), "(n, 5) array"),
                          (_tube(15, 21, (1.0, 1.0, 5.0, 5.0)), "frame 21 is past the video's nframes 20"),
                          (_tube(0, 3, (1.0, 1.0, 5.0, 5.0)), "whole numbers >= 1 (1-based)")):
        broken = dict(gt, gttubes={**gt["gttubes"], video: {0: [tube]}})
        assert message in _bad(root, broken, capsys), message
    broken = dict(gt, gttubes={**gt["gttubes"], video: {24: [_tube(1, 3, (1.0, 1.0, 5.0, 5.0))]}})
    assert f"gttubes['{video}']: label 24 is not an index of `labels` (0..23)" in _bad(root, broken, capsys)
    broken = dict(gt, test_videos=["Basketball/v_Basketball_g08_c02"])
    assert "test_videos must be a list of split lists" in _bad(root, broken, capsys)
    empty = root / "empty"
    empty.mkdir()
    err = _bad(root, gt, capsys, media=empty)
    assert "3 of the split's 3 videos have no frames folder" in err and "Basketball/v_Basketball_g01_c01" in err
    (root / "notpickle.pkl").write_text("video,1\n")
    code, _, err = _import(["ucf101-24", str(root / "notpickle.pkl"), "--frames", str(root / "rgb-images"),
                            "--out", str(root / "o")], capsys)
    assert code == 2 and "not a GT tube pickle" in err


def test_cli_flags(ucf24, capsys):
    root, pkl, _ = ucf24
    with pytest.raises(SystemExit):  # --videos and --frames exclude each other
        cli.main(["data", "import", "ucf101-24", str(pkl), "--frames", "a", "--videos", "b", "--out", "c"])
    with pytest.raises(SystemExit):
        cli.main(["data", "import", "ucf101-24", str(pkl), "--frames", "a", "--dense", "--keyframe-rate", "2",
                  "--out", "c"])
    capsys.readouterr()
    code, _, err = _import(["cvat-video", "a.xml", "--frames", "f", "--out", str(root / "c")], capsys)
    assert code == 2 and "--frames is for the benchmark formats" in err
    code, _, err = _import(["ucf101-24", str(pkl), str(pkl), "--frames", "f", "--out", str(root / "c")], capsys)
    assert code == 2 and "give one GT pickle" in err
