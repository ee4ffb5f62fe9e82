"""Issue 19 in `sfdet predict`: action timelines (`<stem>.segments.csv`, `segment` records, rendered segments) and
`--track-every N` (the detector on every Nth frame, `ByteTracker` ids, `<stem>.frames.csv`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sfdet import cli
from sfdet.data.ava import write_proposals_csv
from sfdet.data.video import write_video
from sfdet.evaluation.frame_map import prediction_files
from sfdet.models.checkpoint import save_sfdet_checkpoint
from sfdet.persons.base import PersonDetector
from sfdet.predict.render import SEGMENT_BACKGROUND, Overlay, draw_overlay
from sfdet.predict.stream import FrameStream
from sfdet.predict.timelines import SEGMENT_COLUMNS, segments_from_jsonl
from sfdet.predict.writers import FRAME_COLUMNS, read_jsonl
from sfdet.typed_config import to_dict
from test_predict_bad_input import random_toy_model

REPO = Path(__file__).resolve().parents[1]
LABELS = {1: "stand", 2: "walk"}
FPS, SECONDS, WIDTH, HEIGHT = 10, 6, 160, 96


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A random-init toy SlowFast whose first class scores high (so segments exist) and the second varies."""
    root = tmp_path_factory.mktemp("model")
    cfg, model = random_toy_model(root, LABELS)
    with torch.no_grad():
        model.head.proj.weight.normal_(0, 0.5)
        model.head.proj.bias.copy_(torch.tensor([3.0, 0.0]))
    return save_sfdet_checkpoint(root / "model.pt", model, LABELS, config=to_dict(cfg))


def _person_boxes(frame: int) -> np.ndarray:
    """Two people crossing: A walks right, B walks left, past each other mid-video (xyxy pixels)."""
    a = 10 + 2.0 * frame
    b = 120 - 2.0 * frame
    return np.array([[a, 20, a + 24, 80], [b, 24, b + 24, 84]], np.float32)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """Two coloured figures on a grey background, moving as `_person_boxes` says."""
    path = tmp_path_factory.mktemp("video") / "walk.mp4"
    frames = []
    for i in range(FPS * SECONDS):
        frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        for box, colour in zip(_person_boxes(i), ((220, 60, 40), (40, 80, 220))):
            x1, y1, x2, y2 = np.clip(box, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(int)
            frame[y1:y2, x1:x2] = colour
        frames.append(frame)
    write_video(path, frames, fps=FPS)
    return path


def _boxes_csv(path: Path, video_id: str, rate: float) -> Path:
    rows = []
    for k in range(int(SECONDS * rate)):
        t = k / rate
        for box in _person_boxes(int(round(t * FPS))):
            rows.append({"video_id": video_id, "timestamp": t, "x1": max(0.0, box[0] / WIDTH), "y1": box[1] / HEIGHT,
                         "x2": min(1.0, box[2] / WIDTH), "y2": box[3] / HEIGHT, "score": 0.95})
    write_proposals_csv(path, pd.DataFrame(rows))
    return path


def _predict(*args) -> int:
    return cli.main(["predict", *map(str, args), "--no-progress", "--precision", "fp32", "--device", "cpu",
                     "--batch-size", "4"])


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_segments_csv_and_records_are_the_jsonl_keyframes_timeline(model, video, tmp_path):
    boxes = _boxes_csv(tmp_path / "boxes.csv", "walk", rate=2)
    out = tmp_path / "out"
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out, "--keyframe-rate", "2",
                    "--min-score", "0.05") == 0
    records = read_jsonl(out / "walk.jsonl")
    kinds = [r["type"] for r in records]
    # keyframes 0, 0.5, ..., 6 (the last frame, 5.9 s)
    assert kinds[0] == "video" and kinds[-1] == "end" and kinds.count("keyframe") == 13
    assert records[0]["timeline"] == {"on_threshold": 0.5, "off_threshold": 0.3, "window": 3, "min_keyframes": 1,
                                      "max_gap": 1}
    segments = [r for r in records if r["type"] == "segment"]
    table = _rows(out / "walk.segments.csv")
    assert tuple(table[0]) == SEGMENT_COLUMNS and len(table) - 1 == len(segments) == records[-1]["segments"] > 0
    assert any(s["action"] == "stand" for s in segments)  # the class the model scores high
    # The CSV is the timeline rebuilt from the JSONL's keyframe records (what a user can redo with other settings).
    rebuilt = segments_from_jsonl(out / "walk.jsonl")
    assert [[str(v) for v in s.row("walk")] for s in rebuilt] == table[1:]
    assert sorted(json.dumps(s.record(), sort_keys=True) for s in rebuilt) == sorted(
        json.dumps({k: v for k, v in s.items() if k != "type"}, sort_keys=True) for s in segments)
    # Every segment's track id and keyframes are the JSONL's.
    keyframes = {r["timestamp"]: r for r in records if r["type"] == "keyframe"}
    for s in segments:
        assert s["start"] in keyframes and s["end"] in keyframes and s["start"] <= s["end"]
        assert s["track_id"] in {p["track_id"] for p in keyframes[s["start"]]["persons"]}
    # `sfdet eval --pred DIR` reads the predictions only.
    assert [p.name for p in prediction_files(out)] == ["walk.csv"]


def test_the_rendered_video_shows_each_persons_current_segments(model, video, tmp_path, monkeypatch):
    from sfdet.predict import pipeline

    shown = []
    original = pipeline.VideoRenderer.show
    monkeypatch.setattr(pipeline.VideoRenderer, "show",
                        lambda self, centre, overlay: (shown.append(overlay), original(self, centre, overlay))[1])
    boxes = _boxes_csv(tmp_path / "boxes.csv", "walk", rate=1)
    out = tmp_path / "out"
    assert _predict(video, "--weights", model, "--boxes", boxes, "--out", out, "--render") == 0
    assert (out / "walk.pred.mp4").is_file() and len(shown) == SECONDS + 1
    lines = [line for overlay in shown for person in overlay.segments for line in person]
    assert lines and all(" since " in line for line in lines)
    assert any(line.startswith("stand since 0s") for line in lines)
    # Each drawn segment line is an open segment of that track at that keyframe: the JSONL closes it later.
    closed = {(s["track_id"], s["action"], s["start"]) for s in read_jsonl(out / "walk.jsonl")
              if s["type"] == "segment"}
    for overlay in shown:
        for track_id, person in zip(overlay.track_ids, overlay.segments):
            for line in person:
                name, start = line.split(" since ")[0], float(line.split(" since ")[1].split("s")[0])
                assert (int(track_id), name, start) in closed


def test_draw_overlay_draws_segments_in_a_white_band():
    frame = np.zeros((90, 160, 3), np.uint8)
    plain = draw_overlay(frame, Overlay(np.array([[0.1, 0.1, 0.6, 0.9]]), np.array([3]), [["stand 0.90"]]))
    with_segment = draw_overlay(frame, Overlay(np.array([[0.1, 0.1, 0.6, 0.9]]), np.array([3]), [["stand 0.90"]],
                                               [["stand since 2s (0.91)"]]))
    white = lambda image: int(np.all(image == SEGMENT_BACKGROUND, axis=2).sum())  # noqa: E731
    assert white(plain) == 0 and white(with_segment) > 100


class _Crossing(PersonDetector):
    """A fake detector: `_person_boxes` of the frame at `timestamp`; counts its calls."""

    name = "crossing"

    def __init__(self):
        self.frames = []

    def _detect(self, frame_rgb, video_id, timestamp):
        frame = min(int(round(timestamp * FPS)), FPS * SECONDS - 1)  # t = 6 s: the last frame's keyframe
        self.frames.append(frame)
        boxes = _person_boxes(frame)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, WIDTH)
        return boxes, np.array([0.95, 0.9], np.float32)


def _run(model, video, out, track_every, keyframe_rate=1.0):
    from sfdet.predict.actions import load_action_predictor
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    predictor = load_action_predictor(str(model), torch.device("cpu"), precision="fp32")
    detector = _Crossing()
    options = PredictOptions(keyframe_rate=keyframe_rate, batch_size=4, progress=False, track_every=track_every)
    [result] = predict_videos([video], predictor, detector, options, out_dir=out)
    assert result.error is None
    return detector, read_jsonl(out / "walk.jsonl")


def _ids_per_person(records) -> dict[int, set[int]]:
    """GT person (0: A, moving right; 1: B) -> the track ids its keyframe boxes got."""
    ids = {0: set(), 1: set()}
    for record in (r for r in records if r["type"] == "keyframe"):
        frame = record["frame_index"]
        for person in record["persons"]:
            x1 = person["box_norm"][0] * WIDTH
            gt = int(np.argmin(np.abs(np.clip(_person_boxes(frame)[:, 0], 0, WIDTH) - x1)))
            ids[gt].add(person["track_id"])
    return ids


@pytest.mark.parametrize("track_every", [1, 3])
def test_track_every_keeps_ids_through_a_crossing_and_writes_frames_csv(model, video, tmp_path, track_every):
    detector, records = _run(model, video, tmp_path / "out", track_every)
    frames = sorted(set(detector.frames))
    centres = {r["frame_index"] for r in records if r["type"] == "keyframe"}
    assert centres == {0, 10, 20, 30, 40, 50, 59}
    assert frames == sorted(set(range(0, FPS * SECONDS, track_every)) | centres)
    assert len(detector.frames) == len(frames)  # each frame detected once
    ids = _ids_per_person(records)
    assert all(len(v) == 1 for v in ids.values()) and ids[0] != ids[1], ids  # one id each, all video long
    header = records[0]
    assert header["tracker"]["kind"] == "bytetrack" and header["tracker"]["track_every"] == track_every
    assert records[-1]["frames_tracked"] == len(frames)
    table = pd.read_csv(tmp_path / "out" / "walk.frames.csv")
    assert tuple(table.columns) == FRAME_COLUMNS and sorted(set(table["frame_index"])) == frames
    assert (table.groupby("frame_index").size() == 2).all() and set(table["video_id"]) == {"walk"}
    assert np.allclose(table["time"], table["frame_index"] / FPS)
    for person, track in ids.items():  # per frame, each person keeps its keyframe track id
        rows = table[table["track_id"] == next(iter(track))]
        expected = np.clip(np.stack([_person_boxes(f)[person] for f in rows["frame_index"]])[:, 0], 0, WIDTH) / WIDTH
        assert len(rows) == len(frames) and np.allclose(rows["x1"], expected, atol=1e-5)
    assert [p.name for p in prediction_files(tmp_path / "out")] == ["walk.csv"]


def test_keyframe_iou_tracker_loses_the_crossing_but_track_every_0_is_the_default(model, video, tmp_path):
    detector, records = _run(model, video, tmp_path / "zero", 0)
    assert detector.frames == [0, 10, 20, 30, 40, 50, 59]  # keyframe centres only
    assert "kind" not in records[0]["tracker"] and "frames_tracked" not in records[-1]
    assert not (tmp_path / "zero" / "walk.frames.csv").exists()
    assert any(len(v) > 1 for v in _ids_per_person(records).values())  # 20 px a keyframe, crossing: ids change
    # --track-every 0 on the command line is byte for byte the run without it.
    boxes = _boxes_csv(tmp_path / "boxes.csv", "walk", rate=1)
    for name, extra in (("default", []), ("zero_flag", ["--track-every", "0"])):
        assert _predict(video, "--weights", model, "--boxes", boxes, "--out", tmp_path / name, *extra) == 0
    for suffix in (".csv", ".tracks.csv", ".segments.csv"):
        assert (tmp_path / "default" / f"walk{suffix}").read_bytes() == \
            (tmp_path / "zero_flag" / f"walk{suffix}").read_bytes()
    timeless = [[{k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb")} for r in
                 read_jsonl(tmp_path / name / "walk.jsonl")] for name in ("default", "zero_flag")]
    assert timeless[0] == timeless[1]


def test_frame_stream_rgb_every_hands_out_every_nth_full_frame(video):
    def items(**kwargs):
        return [(i.index, i.keyframes, None if i.rgb is None else i.rgb.sum())
                for i in FrameStream(video, [1.0, 3.0], lambda rgb: None, **kwargs)]

    plain, every = items(), items(rgb_every=4)
    assert [(i, k) for i, k, _ in plain] == [(i, k) for i, k, _ in every]
    assert [i for i, _, rgb in plain if rgb is not None] == [10, 30]  # keyframe centres only
    assert [i for i, _, rgb in every if rgb is not None] == sorted(set(range(0, 60, 4)) | {10, 30})
    assert [rgb for i, _, rgb in plain if rgb is not None] == [rgb for i, _, rgb in every if i in (10, 30)]


def test_track_every_is_for_files_not_live_sources(capsys):
    assert cli.main(["predict", "-", "--track-every", "2", "--no-progress"]) == 2
    assert "--track-every is for video files" in capsys.readouterr().err
