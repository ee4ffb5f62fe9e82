"""Predict's building blocks: incremental writers, rendering, video sharding, detector weight download."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from sfdet.data.ava import read_gt_csv, read_predictions_csv
from sfdet.errors import CheckpointError
from sfdet.persons import torchvision_weights_file
from sfdet.predict.pipeline import find_videos, shard_for_rank
from sfdet.predict.timelines import write_segments_csv
from sfdet.predict.render import H264Writer, Overlay, draw_overlay, track_colour
from sfdet.predict.writers import (
    KeyframePrediction,
    OutputPaths,
    PersonPrediction,
    PredictionWriter,
    output_stem,
    read_jsonl,
)

LABELS = {1: "stand", 3: "run", 7: "wave"}


def _keyframe(timestamp: float) -> KeyframePrediction:
    return KeyframePrediction(
        "vid", timestamp, frame_index=int(timestamp * 15),
        persons=[
            PersonPrediction(np.array([0.1, 0.2, 0.5, 0.9], np.float32), 0.97, 4, np.array([0.2, 0.9, 0.6], np.float32)),
            PersonPrediction(np.array([0.6, 0.1, 0.8, 0.7], np.float32), 0.85, 5, np.array([0.05, 0.01, 0.7], np.float32)),
        ],
    )


def test_writer_rows_are_exact_and_every_line_is_flushed(tmp_path):
    paths = OutputPaths.for_video(tmp_path, "vid", render=False)
    writer = PredictionWriter(paths, LABELS, min_score=0.1, label_threshold=0.5)
    writer.write_header({"fps": 15})
    writer.write_keyframe(_keyframe(3.0))
    # Flushed at once: readable before close (as after a crash).
    assert paths.csv.read_text().splitlines() == [
        "vid,0003,0.1,0.2,0.5,0.9,3,0.9",
        "vid,0003,0.1,0.2,0.5,0.9,7,0.6",
        "vid,0003,0.1,0.2,0.5,0.9,1,0.2",
        "vid,0003,0.6,0.1,0.8,0.7,7,0.7",
    ]
    assert paths.tracks_csv.read_text().splitlines() == [
        "vid,0003,0.1,0.2,0.5,0.9,3,4",
        "vid,0003,0.1,0.2,0.5,0.9,7,4",
        "vid,0003,0.6,0.1,0.8,0.7,7,5",
    ]
    records = read_jsonl(paths.jsonl)
    assert [r["type"] for r in records] == ["video", "keyframe"] and not paths.is_complete()
    person = records[1]["persons"][0]
    assert person == {"box_norm": [0.1, 0.2, 0.5, 0.9], "track_id": 4, "detector_score": 0.97,
                      "actions": [{"id": 3, "name": "run", "score": 0.9}, {"id": 7, "name": "wave", "score": 0.6},
                                  {"id": 1, "name": "stand", "score": 0.2}]}
    writer.write_keyframe(_keyframe(3.5))
    writer.write_end({})
    writer.close()
    assert not paths.is_complete()  # the segments CSV (written by the pipeline before `end`) is part of it
    write_segments_csv(paths.segments_csv, "vid", [])
    assert paths.is_complete()
    # Both CSVs read back with the project's strict AVA readers (what `sfdet eval` uses).
    predictions = read_predictions_csv(paths.csv)
    assert len(predictions) == 8 and sorted(set(predictions["timestamp"])) == [3.0, 3.5]
    assert read_gt_csv(paths.tracks_csv)["person_id"].tolist() == [4, 4, 5, 4, 4, 5]


def test_video_ids_with_commas_and_quotes_are_quoted_and_read_back(tmp_path):
    video_id = 'clip, "take" 2'
    paths = OutputPaths.for_video(tmp_path, video_id, render=False)
    with PredictionWriter(paths, LABELS, min_score=0.5, label_threshold=0.5) as writer:
        keyframe = _keyframe(3.0)
        keyframe.video_id = video_id
        writer.write_header({"video_id": video_id})
        writer.write_keyframe(keyframe)
        writer.write_end({})
    assert paths.csv.read_text(encoding="utf-8").splitlines()[0] == '"clip, ""take"" 2",0003,0.1,0.2,0.5,0.9,3,0.9'
    assert read_predictions_csv(paths.csv)["video_id"].tolist() == [video_id] * 3
    assert read_gt_csv(paths.tracks_csv)["video_id"].tolist() == [video_id] * 3
    assert read_jsonl(paths.jsonl)[0]["video_id"] == video_id


def test_output_names_fit_the_file_system_limit(tmp_path):
    assert output_stem(tmp_path, "clip, take 2") == "clip, take 2"
    for stem in ("a" * 250, "é" * 125, "x" * 240 + "東京"):  # legal names (<= 255 bytes with .mp4)
        short = output_stem(tmp_path, stem)
        assert short != stem and short == output_stem(tmp_path, stem)  # stable: --resume finds the outputs
        head, digest = short.rsplit("~", 1)
        assert stem.startswith(head) and len(digest) == 8  # whole UTF-8 characters of the stem, + 8 hex of its SHA-1
        paths = OutputPaths.for_video(tmp_path, stem, render=True)
        assert all(len(p.name.encode()) <= 255 for p in paths.all())
        PredictionWriter(paths, LABELS).close()  # the file system takes them
    assert output_stem(tmp_path, "a" * 250) != output_stem(tmp_path, "a" * 249 + "b")


def test_a_writer_that_cannot_open_its_files_leaves_none_behind(tmp_path):
    paths = OutputPaths.for_video(tmp_path, "vid", render=False)
    paths.tracks_csv = tmp_path / "missing" / "vid.tracks.csv"
    with pytest.raises(FileNotFoundError):
        PredictionWriter(paths, LABELS)
    assert list(tmp_path.iterdir()) == []


def test_overlay_draws_boxes_in_the_track_colour():
    frame = np.zeros((90, 160, 3), np.uint8)
    drawn = draw_overlay(frame, Overlay(np.array([[0.25, 0.5, 0.75, 1.0]]), np.array([2]), [["run 0.90"]]))
    assert drawn.shape == frame.shape and frame.max() == 0  # the input is not modified
    colour = np.array(track_colour(2))
    assert (drawn[60, 40] == colour).all()  # left edge of the box at x = 40
    assert (drawn[75, 80] == 0).all()  # inside the box: untouched
    assert (draw_overlay(frame, Overlay.empty()) == frame).all()


@pytest.mark.parametrize("size", [(64, 48), (63, 47)])
def test_h264_writer_keeps_size_rate_and_frame_count(tmp_path, size):
    width, height = size
    path = tmp_path / "out.mp4"
    writer = H264Writer(path, width, height, fps=30000 / 1001)
    for i in range(12):
        writer.write(np.full((height, width, 3), i * 20, np.uint8))
    writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == size and stream.codec_context.name == "h264"
        assert float(stream.average_rate) == pytest.approx(30000 / 1001, rel=1e-4)
        assert sum(1 for _ in container.decode(video=0)) == 12


def test_videos_are_sharded_disjointly_over_ranks(tmp_path):
    for name in ["c.mp4", "a.mp4", "b.mkv", "notes.txt", "d.MP4"]:
        (tmp_path / name).write_bytes(b"")
    videos, errors = find_videos([tmp_path, tmp_path / "missing.mp4"])
    assert [v.name for v in videos] == ["a.mp4", "b.mkv", "c.mp4", "d.MP4"]
    assert errors == [f"{tmp_path / 'missing.mp4'}: no such file or directory"]
    shares = [shard_for_rank(videos, rank, 3) for rank in range(3)]
    assert [[v.name for v in share] for share in shares] == [["a.mp4", "d.MP4"], ["b.mkv"], ["c.mp4"]]


def test_detector_weights_download_to_the_torch_cache_and_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    served = tmp_path / "server" / "detector-weights.pth"
    served.parent.mkdir()
    torch.save({"w": torch.arange(3)}, served)
    path = torchvision_weights_file(served.as_uri(), progress=False)
    assert path == tmp_path / "hub" / "checkpoints" / "detector-weights.pth"
    assert path.read_bytes() == served.read_bytes()
    served.unlink()
    assert torchvision_weights_file(served.as_uri(), progress=False) == path  # cached: no download

    def offline(url):
        raise urllib.error.URLError("no network")

    url = "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"
    with pytest.raises(CheckpointError) as exc:
        torchvision_weights_file(url, opener=offline)
    message = str(exc.value)
    assert url in message and str(tmp_path / "hub" / "checkpoints" / Path(url).name) in message
