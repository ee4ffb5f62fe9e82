"""`sfdet predict` on bad input (issue 15): names the file system or the CSV format cannot take, unexpected
errors, boxes that match nothing, and a directory of good and broken videos. Each problem is one line,
nothing finished is lost, and every file predict writes reads back with sfdet's own readers."""

from __future__ import annotations

import math
import os
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sfdet import cli
from sfdet.config import load_config
from sfdet.data.ava import (
    read_gt_csv,
    read_predictions_csv,
    read_proposals,
    write_gt_csv,
    write_label_map,
    write_proposals_csv,
    write_proposals_pkl,
)
from sfdet.data.video import write_video
from sfdet.models import build_model
from sfdet.models.checkpoint import save_sfdet_checkpoint
from sfdet.predict.writers import OutputPaths, output_stem, read_jsonl
from sfdet.typed_config import to_dict

REPO = Path(__file__).resolve().parents[1]
LABELS = {1: "stand", 2: "walk"}
SECONDS, FPS = 3, 10


def random_toy_model(root: Path, labels: dict[int, str]):
    """(config, random-init toy SlowFast with len(labels) classes, test short side 48) for a test's checkpoint."""
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml", [f"data.root={root}", "data.test_short_side=48"])
    cfg.model.num_classes = len(labels)
    torch.manual_seed(0)
    return cfg, build_model(cfg.model).eval()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A random-init toy SlowFast in sfdet format (its training config says how clips are made)."""
    root = tmp_path_factory.mktemp("model")
    cfg, model = random_toy_model(root, LABELS)
    return save_sfdet_checkpoint(root / "model.pt", model, LABELS, config=to_dict(cfg))


def _video(path: Path, seconds: float = SECONDS, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_video(path, [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(int(seconds * FPS))],
                fps=FPS)
    return path


def _rotate(path: Path, degrees: int) -> Path:
    """Give the mp4 a display rotation of `degrees` counter-clockwise, as a phone writes it (its `tkhd` matrix;
    the coded frames are untouched). The same as tests/test_rotation.py's `set_display_rotation`."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    matrix_at = at + 4 + 4 + (4 + 4 + 4 + 4 + 4 if version == 0 else 8 + 8 + 4 + 4 + 8) + 8 + 8
    cos, sin = round(math.cos(math.radians(degrees))), round(math.sin(math.radians(degrees)))
    matrix = [cos << 16, -sin << 16, 0, sin << 16, cos << 16, 0, 0, 0, 1 << 30]  # 16.16 (u, v, w: 2.30)
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))
    return path


def _boxes(path: Path, video_ids, timestamps=range(SECONDS + 1)) -> Path:
    rows = [{"video_id": v, "timestamp": float(t), "x1": 0.2, "y1": 0.1, "x2": 0.7, "y2": 0.9, "score": 0.95}
            for v in video_ids for t in timestamps]
    write_proposals_csv(path, pd.DataFrame(rows))
    return path


def _predict(*args) -> int:
    return cli.main(["predict", *map(str, args), "--no-progress", "--precision", "fp32", "--device", "cpu",
                     "--batch-size", "4"])


def _problems(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("sfdet predict: ")]


def _assert_complete(out: Path, stem: str, video_id: str, keyframes: int = SECONDS + 1) -> None:
    """The outputs of a finished video: complete, and each read back by sfdet's readers with the right id."""
    paths = OutputPaths.for_video(out, stem, render=False)
    assert paths.is_complete(), stem
    records = read_jsonl(paths.jsonl)
    assert records[0]["video_id"] == video_id and records[-1]["keyframes"] == keyframes
    predictions = read_predictions_csv(paths.csv, LABELS)
    assert set(predictions["video_id"]) == {video_id}
    assert sorted(set(predictions["timestamp"])) == [float(t) for t in range(keyframes)]
    assert len(predictions) == keyframes * len(LABELS)  # one box per keyframe, every class
    tracks = read_gt_csv(paths.tracks_csv, LABELS)
    assert set(tracks["video_id"]) <= {video_id}


# -- item 2: every file predict writes reads back, whatever the video's name -------------------------------

ODD_NAMES = ["clip, take 2", 'say "hi"', "two  spaces ", "café 東京", "-leading-dash", "semi;colon's"]


def test_outputs_read_back_and_evaluate_for_any_video_name(model, tmp_path, capsys):
    videos = tmp_path / "videos"
    for i, name in enumerate(ODD_NAMES):
        _video(videos / f"{name}.mp4", seed=i)
    boxes = _boxes(tmp_path / "boxes.csv", ODD_NAMES)
    assert set(read_proposals(boxes)["video_id"]) == set(ODD_NAMES)  # the boxes CSV (write_proposals_csv) too
    out = tmp_path / "out"
    assert _predict(videos, "--weights", model, "--boxes", boxes, "--out", out) == 0, capsys.readouterr().err
    assert _problems(capsys.readouterr().err) == []
    labelmap = tmp_path / "label_map.pbtxt"
    write_label_map(labelmap, LABELS)
    for name in ODD_NAMES:
        _assert_complete(out, name, name)
        if name not in ("clip, take 2", 'say "hi"', "-leading-dash"):
            continue  # (each eval also plots: ~1 s)
        # `sfdet eval` takes predict's CSV, against GT written by sfdet for that video id.
        gt = tmp_path / "gt" / f"{name}.csv"
        write_gt_csv(gt, pd.DataFrame({"video_id": name, "timestamp": [1.0, 2.0], "x1": 0.2, "y1": 0.1, "x2": 0.7,
                                       "y2": 0.9, "action_id": [1, 2], "person_id": 0}))
        assert read_gt_csv(gt)["video_id"].tolist() == [name, name]
        capsys.readouterr()
        assert cli.main(["eval", "--gt", str(gt), "--pred", str(out / f"{name}.csv"), "--labelmap", str(labelmap)]) \
            == 0, capsys.readouterr().err
        assert re.search(r"mAP@0\.5IOU=\s*[0-9.]+", capsys.readouterr().out)


def test_proposals_files_keep_odd_video_ids():
    # `sfdet proposals` writes with write_proposals_csv / write_proposals_pkl: ids read back exactly.
    import tempfile

    table = pd.DataFrame({"video_id": ODD_NAMES, "timestamp": 1.0, "x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5,
                          "score": 0.9})
    with tempfile.TemporaryDirectory() as folder:
        for name in ("p.csv", "p.pkl"):
            path = Path(folder) / name
            (write_proposals_csv if name.endswith("csv") else write_proposals_pkl)(path, table)
            assert read_proposals(path)["video_id"].tolist() == ODD_NAMES


# -- item 1: a name too long for the outputs, and any unexpected error, is one line; the run goes on --------

def _long_name(directory: Path) -> str:
    """A legal video name (with `.mp4`) whose `.tracks.csv` outputs would pass the file system's name limit."""
    name_max = os.pathconf(directory, "PC_NAME_MAX")
    return "long_" + "x" * (name_max - len("long_") - len(".mp4") - 2)


def test_a_too_long_name_gets_short_output_names_and_one_warning(model, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    stem = _long_name(videos)
    video = _video(videos / f"{stem}.mp4")
    boxes = _boxes(tmp_path / "boxes.csv", [stem])
    out = tmp_path / "out"
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out) == 0
    short = output_stem(out, stem)
    assert short != stem and short.endswith("~" + short[-8:]) and len(f"{short}.segments.csv".encode()) <= 255
    assert _problems(capsys.readouterr().err) == [
        f"sfdet predict: warning: {video}: name too long for its output files' names; they are named {short}.* "
        "(the CSVs' video id stays the full name)"]
    _assert_complete(out, stem, stem)
    assert sorted(p.name for p in out.iterdir()) == [f"{short}.csv", f"{short}.jsonl", f"{short}.segments.csv",
                                                     f"{short}.tracks.csv"]
    # --resume finds the shortened outputs.
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out, "--resume") == 0
    assert "1 already complete" in capsys.readouterr().out


def test_an_unexpected_error_is_one_line_and_the_other_videos_go_on(model, tmp_path, capsys, monkeypatch):
    from sfdet.predict import writers

    videos = tmp_path / "videos"
    for name in ("a", "b", "c"):
        _video(videos / f"{name}.mp4")
    boxes = _boxes(tmp_path / "boxes.csv", ["a", "b", "c"])
    original = writers.PredictionWriter.write_keyframe

    def failing(self, keyframe):
        if keyframe.video_id == "a":  # before any keyframe is written
            raise OSError(28, "No space left on device")
        if keyframe.video_id == "b" and self.keyframes_written == 2:  # midway
            raise RuntimeError("boom\nsecond line")
        return original(self, keyframe)

    monkeypatch.setattr(writers.PredictionWriter, "write_keyframe", failing)
    out = tmp_path / "out"
    assert _predict(videos, "--weights", model, "--boxes", boxes, "--out", out) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert _problems(captured.err) == [
        f"sfdet predict: error: {videos / 'a.mp4'}: OSError: [Errno 28] No space left on device",
        f"sfdet predict: error: {videos / 'b.mp4'}: RuntimeError: boom second line; its 2 finished keyframe(s) are "
        f"kept in {out / 'b.csv'}, b.tracks.csv and b.jsonl (unfinished: --resume redoes this video)",
    ]
    assert "predicted 1 video(s), 4 keyframe(s); 2 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["b.csv", "b.jsonl", "b.tracks.csv", "c.csv", "c.jsonl",
                                                     "c.segments.csv", "c.tracks.csv"]  # a: nothing left behind
    b = OutputPaths.for_video(out, "b", render=False)
    assert not b.is_complete() and [r["type"] for r in read_jsonl(b.jsonl)] == ["video", "keyframe", "keyframe"]
    assert sorted(set(read_predictions_csv(b.csv)["timestamp"])) == [0.0, 1.0]
    _assert_complete(out, "c", "c")
    # SFDET_DEBUG=1: the traceback too.
    monkeypatch.setenv("SFDET_DEBUG", "1")
    assert _predict(videos / "a.mp4", "--weights", model, "--boxes", boxes, "--out", out) == 1
    assert "Traceback" in capsys.readouterr().err
    # The failure gone, --resume redoes the unfinished video and skips the complete one.
    monkeypatch.setattr(writers.PredictionWriter, "write_keyframe", original)
    assert _predict(videos, "--weights", model, "--boxes", boxes, "--out", out, "--resume") == 0
    assert "predicted 2 video(s), 8 keyframe(s); 1 already complete" in capsys.readouterr().out
    _assert_complete(out, "b", "b")


# -- item 3: boxes that match nothing are never a silent empty result ------------------------------------

def test_an_empty_boxes_file_is_an_error_before_any_video(model, tmp_path, capsys):
    video = _video(tmp_path / "clip.mp4")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = tmp_path / "out"
    assert _predict(video, "--weights", model, "--boxes", empty, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"sfdet predict: error: {empty}: no person boxes in this file (--boxes); it must "
                                "list video_id,timestamp,x1,y1,x2,y2,action_id,score rows (or be an MMAction2 "
                                "proposal pickle)"]
    assert not out.exists()
    low = _boxes(tmp_path / "low.csv", ["clip"])
    assert _predict(video, "--weights", model, "--boxes", low, "--out", out, "--detector-threshold", "0.99") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"sfdet predict: error: {low}: none of its 4 boxes scores >= 0.99 (highest 0.95); lower --detector-threshold "
        "to use them"]


def test_a_video_id_absent_from_the_boxes_names_the_closest_ids(model, tmp_path, capsys):
    videos = tmp_path / "videos"
    _video(videos / "clip_01.mp4")
    _video(videos / "clip_02.mp4")
    boxes = _boxes(tmp_path / "boxes.csv", ["zebra", "clip_1", "clip_02", "clip-01", "other"], timestamps=[900, 903])
    out = tmp_path / "out"
    assert _predict(videos, "--weights", model, "--boxes", boxes, "--out", out, "--time-offset", "900") == 1
    captured = capsys.readouterr()
    assert _problems(captured.err) == [
        f"sfdet predict: error: {videos / 'clip_01.mp4'}: video id 'clip_01' is not in {boxes}, which has 5 video "
        "id(s), closest first: 'clip_1', 'clip_02', 'clip-01', ... (timestamps 900-903 s); name the video after its "
        "id in the file, or use boxes made for this video"]
    assert sorted(p.name for p in out.iterdir()) == ["clip_02.csv", "clip_02.jsonl", "clip_02.segments.csv",
                                                     "clip_02.tracks.csv"]
    assert sorted(set(read_predictions_csv(out / "clip_02.csv")["timestamp"])) == [900.0, 903.0]


def test_boxes_at_no_keyframe_suggest_the_time_offset(model, tmp_path, capsys):
    video = _video(tmp_path / "clip.mp4")
    boxes = _boxes(tmp_path / "boxes.csv", ["clip"], timestamps=[902, 903])  # AVA-style: the video starts at 900
    out = tmp_path / "out"
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out) == 1
    captured = capsys.readouterr()
    assert _problems(captured.err) == [
        f"sfdet predict: error: {video}: none of its keyframes (timestamps 0-3 s, every 1 s; time offset 0) is in "
        f"{boxes}, whose rows for 'clip' have timestamps 902-903 s (2 keyframe(s)); set --time-offset to the "
        "timestamp of the video's first frame (AVA: 900), or --timestamps / --keyframe-rate to the file's keyframes"]
    assert "predicted 0 video(s), 0 keyframe(s); 1 failed" in captured.out and not out.exists()
    # --timestamps none of which the file lists: the same line.
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out, "--timestamps", "1,2") == 1
    assert "none of its keyframes (timestamps 1-2 s; time offset 0)" in capsys.readouterr().err
    # Timestamps on the grid but past the video's end show once it is decoded: no outputs either.
    late = _boxes(tmp_path / "late.csv", ["clip"], timestamps=[7, 8])
    assert _predict(video, "--weights", model, "--boxes", late, "--out", out) == 1
    assert _problems(capsys.readouterr().err) == [
        f"sfdet predict: error: {video}: none of its keyframes (timestamps 0-3 s; time offset 0) is in {late}, "
        "whose rows for 'clip' have timestamps 7-8 s (2 keyframe(s)); set --time-offset to the timestamp of the "
        "video's first frame (AVA: 900), or --timestamps / --keyframe-rate to the file's keyframes"]
    assert not out.exists() or list(out.iterdir()) == []
    # The right offset: every keyframe with its box.
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out, "--time-offset", "900") == 0
    assert sorted(set(read_predictions_csv(out / "clip.csv")["timestamp"])) == [902.0, 903.0]


# -- acceptance: a directory of good and broken videos ------------------------------------------------------

def test_a_directory_of_good_and_broken_videos(model, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    long_stem = _long_name(videos)
    good = _video(videos / "good.mp4", seed=1)
    long_video = _video(videos / f"{long_stem}.mp4", seed=2)
    _video(videos / "clip, take 2.mp4", seed=3)
    _rotate(_video(videos / "phone.mp4", seed=5), 90)  # a portrait phone video: read upright, 48 x 64
    # An AVI cut in half: its header says 30 frames, about 15 remain.
    full_avi = _video(tmp_path / "half.avi", seed=4)
    data = full_avi.read_bytes()
    (videos / "half.avi").write_bytes(data[: len(data) // 2])
    (videos / "zero.mp4").write_bytes(b"")
    boxes = _boxes(tmp_path / "boxes.csv", ["good", long_stem, "clip, take 2", "phone", "half", "zero"])
    out = tmp_path / "out"

    assert _predict(videos, "--weights", model, "--boxes", boxes, "--out", out) == 1
    captured = capsys.readouterr()
    problems = _problems(captured.err)
    assert "Traceback" not in captured.err
    short = output_stem(out, long_stem)
    expected = [
        f"sfdet predict: warning: {long_video}: name too long for its output files' names; they are named {short}.* "
        "(the CSVs' video id stays the full name)",
    ]
    zero = [line for line in problems if "zero.mp4" in line]
    assert len(zero) == 1 and zero[0].startswith(f"sfdet predict: error: {videos / 'zero.mp4'}: ")
    # The half AVI: the decoder's warnings (frames short of the header's count; maybe concealed errors).
    half = [line for line in problems if "half.avi" in line]
    assert all(line.startswith(f"sfdet predict: warning: {videos / 'half.avi'}: ") for line in half)
    assert any(re.search(r"decoded 1\d of the 30 frames its header lists", line) for line in half), half
    assert len(problems) == len(expected) + len(zero) + len(half)
    assert [line for line in problems if line in expected] == expected
    assert "predicted 5 video(s)" in captured.out and "1 failed" in captured.out

    _assert_complete(out, "good", "good")
    _assert_complete(out, long_stem, long_stem)
    _assert_complete(out, "clip, take 2", "clip, take 2")
    _assert_complete(out, "phone", "phone")
    header = read_jsonl(out / "phone.jsonl")[0]
    assert (header["width"], header["height"]) == (48, 64)  # upright
    half_paths = OutputPaths.for_video(out, "half", render=False)
    assert half_paths.is_complete()
    end = read_jsonl(half_paths.jsonl)[-1]
    assert 10 <= end["frames_decoded"] < 30 and end["warnings"] == [line.split("warning: ", 1)[1] for line in half]
    assert len(read_predictions_csv(half_paths.csv, LABELS)) >= 2 * len(LABELS)
    assert not any(p.name.startswith("zero.") for p in out.iterdir())
