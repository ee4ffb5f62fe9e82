"""`sfdet predict` end to end on the synthetic dataset: equal to the evaluation path, interruptible,
rendered, resumable, and one clear line per bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from sfdet import cli
from sfdet.config import load_config
from sfdet.data.ava import read_label_map, read_predictions_csv, write_proposals_csv
from sfdet.data.dataset import AvaDataset
from sfdet.toy import generate_toy_dataset
from sfdet.data.video import write_video
from sfdet.engine.validation import ValidationData, evaluate_keyframes, score_keyframes
from sfdet.models import build_model, load_checkpoint
from sfdet.models.checkpoint import save_sfdet_checkpoint
from sfdet.predict.writers import OutputPaths, read_jsonl
from sfdet.typed_config import to_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """One 5 s synthetic val video with its annotations, and a random-init toy model in sfdet format."""
    root = tmp_path_factory.mktemp("toy")
    # seed 1: none of its four keyframes is excluded (an ambiguous person excludes a keyframe)
    generate_toy_dataset(root, seed=1, videos_train=0, videos_val=1, seconds=5, overwrite=True, workers=1)
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml", [f"data.root={root}"])
    label_map = read_label_map(root / "annotations/label_map.pbtxt")
    cfg.model.num_classes = len(label_map)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    with torch.no_grad():  # spread the scores: the default head init gives ~0.5 everywhere
        model.head.proj.weight.normal_(0, 0.5)
        model.head.proj.bias.normal_(0, 1.0)
    checkpoint = save_sfdet_checkpoint(root / "model.pt", model, label_map, config=to_dict(cfg))
    return {"root": root, "cfg": cfg, "label_map": label_map, "checkpoint": checkpoint,
            "video": root / "videos/toy_val_000.mp4", "boxes": root / "annotations/val_predicted_boxes.csv"}


def _predict(*args: str) -> int:
    # The default precision (auto) is bf16 on CPUs with AMX: pin fp32 so the numerics do not depend on the CPU.
    pinned = [] if "--precision" in args else ["--precision", "fp32"]
    return cli.main(["predict", *map(str, args), "--no-progress", *pinned])


def _map_of(eval_stdout: str) -> float:
    return float(re.search(r"mAP@0\.5IOU=\s*([0-9.eE+-]+|nan)", eval_stdout).group(1))


def test_predict_matches_the_evaluation_path(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(toy["video"], "--weights", toy["checkpoint"], "--boxes", toy["boxes"], "--out", out,
                    "--batch-size", "2", "--device", "cpu") == 0
    predicted = read_predictions_csv(out / "toy_val_000.csv")

    # The training evaluation path: the Dataset's val split + the same model.
    model, _ = load_checkpoint(toy["checkpoint"])
    dataset = AvaDataset(toy["cfg"].data, "val", alpha=toy["cfg"].model.alpha)
    keyframes = score_keyframes(model, dataset, list(range(len(dataset))), batch_size=1, num_workers=0,
                                device=torch.device("cpu"))
    assert len(keyframes) >= 3
    class_ids = np.array(list(toy["label_map"]))
    compared = 0
    for keyframe in keyframes:
        rows = predicted[(predicted["video_id"] == keyframe.video_id) & (predicted["timestamp"] == keyframe.timestamp)]
        assert len(rows) == len(keyframe.boxes_norm) * len(class_ids)
        for box, scores in zip(keyframe.boxes_norm, keyframe.scores):
            mine = rows[np.abs(rows[["x1", "y1", "x2", "y2"]].to_numpy() - box).max(axis=1) < 1e-6]
            mine = mine.set_index("action_id").loc[class_ids, "score"].to_numpy()
            np.testing.assert_allclose(mine, scores, rtol=0, atol=1e-5)
            compared += 1
    assert compared >= 5

    # Same mAP: `sfdet eval` on predict's CSV vs the evaluation path.
    annotations = toy["root"] / "annotations"
    from sfdet.data.ava import read_exclusions, read_gt_csv

    data = ValidationData(dataset, read_gt_csv(annotations / "val.csv"),
                          read_exclusions(annotations / "val_excluded_timestamps.csv"), toy["label_map"])
    expected = evaluate_keyframes(keyframes, data).map
    capsys.readouterr()
    assert cli.main(["eval", "--gt", str(annotations / "val.csv"), "--pred", str(out / "toy_val_000.csv"),
                     "--labelmap", str(annotations / "label_map.pbtxt"),
                     "--exclusions", str(annotations / "val_excluded_timestamps.csv")]) == 0
    assert _map_of(capsys.readouterr().out) == pytest.approx(expected, abs=1e-9)


def test_default_precision_and_batch_size_suit_the_device(toy, tmp_path, monkeypatch):
    from sfdet import devices
    from sfdet.predict.actions import default_batch_size

    assert default_batch_size(torch.device("cpu")) == 8 and default_batch_size(torch.device("cuda", 0)) == 16
    for fast in (False, True):  # auto = bf16 only where its kernels are fast
        monkeypatch.setattr(devices, "fast_low_precision_available", lambda device, fast=fast: fast)
        out = tmp_path / f"fast_{fast}"
        assert cli.main(["predict", str(toy["video"]), "--weights", str(toy["checkpoint"]), "--boxes",
                         str(toy["boxes"]), "--out", str(out), "--device", "cpu", "--timestamps", "1",
                         "--no-progress"]) == 0
        header = read_jsonl(out / "toy_val_000.jsonl")[0]
        assert header["model"]["precision"] == ("bf16" if fast else "fp32")


def test_resampled_predict_matches_the_resampled_dataset(toy, tmp_path):
    # data.video_resample_fps in the checkpoint's training config: the stream cuts the Dataset's grid clips.
    # 15 fps on a 30 fps grid at stride 1: every frame twice, so a clip that ignored the grid would differ.
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml",
                      [f"data.root={toy['root']}", "data.video_resample_fps=30", "data.sampling_rate=1"])
    cfg.model.num_classes = len(toy["label_map"])
    model, _ = load_checkpoint(toy["checkpoint"])
    checkpoint = save_sfdet_checkpoint(tmp_path / "resampled.pt", model, toy["label_map"], config=to_dict(cfg))
    out = tmp_path / "out"
    assert _predict(toy["video"], "--weights", checkpoint, "--boxes", toy["boxes"], "--out", out,
                    "--timestamps", "2,4", "--device", "cpu") == 0
    records = read_jsonl(out / "toy_val_000.jsonl")
    assert records[0]["model"]["video_resample_fps"] == 30.0
    assert [r["frame_index"] for r in records if r["type"] == "keyframe"] == [30, 60]  # decoded frames, 15 fps
    predicted = read_predictions_csv(out / "toy_val_000.csv")

    dataset = AvaDataset(cfg.data, "val", alpha=cfg.model.alpha)
    indices = [i for i, (_, t) in enumerate(dataset.samples) if t in (2.0, 4.0)]
    keyframes = score_keyframes(model, dataset, indices, batch_size=1, num_workers=0, device=torch.device("cpu"))
    class_ids = np.array(list(toy["label_map"]))
    compared = 0
    for keyframe in keyframes:
        rows = predicted[predicted["timestamp"] == keyframe.timestamp]
        for box, scores in zip(keyframe.boxes_norm, keyframe.scores):
            mine = rows[np.abs(rows[["x1", "y1", "x2", "y2"]].to_numpy() - box).max(axis=1) < 1e-6]
            np.testing.assert_allclose(mine.set_index("action_id").loc[class_ids, "score"].to_numpy(), scores,
                                       rtol=0, atol=1e-5)
            compared += 1
    assert compared >= 2


def test_clip_settings_come_from_the_config_or_the_clip_recipe(toy):
    from sfdet.errors import ConfigError
    from sfdet.models.checkpoint import CheckpointInfo
    from sfdet.models.registry import MODELS
    from sfdet.predict.clip_settings import clip_settings

    # The toy checkpoint predates clip recipes: its recipe is derived from the training config it stores.
    _, info = load_checkpoint(toy["checkpoint"])
    assert info.train_config is not None and info.recipe is not None
    data, trained = clip_settings("toy.pt", info), toy["cfg"].data
    assert {k: getattr(data, k) for k in info.recipe.data_fields()} == \
        {k: getattr(trained, k) for k in info.recipe.data_fields()}
    assert info.recipe.alpha == toy["cfg"].model.alpha
    # --config (or overrides) wins over the checkpoint's recipe.
    explicit = clip_settings("toy.pt", info, REPO / "configs/toy/slowfast_tiny.yaml", ["data.num_frames=4"])
    assert explicit.num_frames == 4
    published = CheckpointInfo("x.pyth", "pytorchvideo", info.model_config, None,
                               recipe=MODELS["slow_r50_detection"].recipe)
    data = clip_settings("slow_r50_detection", published)
    assert (data.num_frames, data.sampling_rate, data.slow_sampling, data.test_short_side, data.video_resample_fps) \
        == (4, 16, "linspace", 256, 30.0)
    with pytest.raises(ConfigError, match=r"x\.pyth does not say how its clips were made"):
        clip_settings("x.pyth", CheckpointInfo("x.pyth", "pytorchvideo", info.model_config, None))
    broken = CheckpointInfo("m.pt", "sfdet", info.model_config, None, train_config={"data": {"num_frame": 8}})
    with pytest.raises(ConfigError, match=r"m\.pt: its stored training config is invalid \(unknown config key "
                                          r"'data\.num_frame'"):
        clip_settings("m.pt", broken)


def test_outputs_json_tracks_and_rendered_video(toy, tmp_path):
    out = tmp_path / "out"
    assert _predict(toy["video"], "--weights", toy["checkpoint"], "--boxes", toy["boxes"], "--out", out,
                    "--render", "--render-threshold", "0.3", "--min-score", "0.2") == 0
    records = read_jsonl(out / "toy_val_000.jsonl")
    header, end = records[0], records[-1]
    keyframes = [r for r in records if r["type"] == "keyframe"]  # `segment` records come between them
    assert header["type"] == "video" and header["width"] == 320 and header["height"] == 180 and header["fps"] == 15
    assert header["label_map"] == {str(k): v for k, v in toy["label_map"].items()}
    # 75 frames: the last at 4.93 s, so t = 5 s is within one frame of it (the Dataset's end tolerance).
    assert [k["timestamp"] for k in keyframes] == [0, 1, 2, 3, 4, 5]
    assert end["type"] == "end" and end["keyframes"] == 6 and end["frames_decoded"] == 75
    assert 50 < end["peak_rss_mb"] < 100_000  # this process's high-water mark (MiB): torch alone is > 50
    persons = [p for k in keyframes for p in k["persons"]]
    assert persons and all(p["track_id"] >= 0 for p in persons)
    for person in persons:
        scores = [a["score"] for a in person["actions"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.2
        assert all(a["name"] == toy["label_map"][a["id"]] for a in person["actions"])
    # The CSV holds exactly the JSON's actions; the tracks CSV those >= the render threshold.
    csv = read_predictions_csv(out / "toy_val_000.csv")
    assert len(csv) == sum(len(p["actions"]) for p in persons)
    tracks = pd.read_csv(out / "toy_val_000.tracks.csv", header=None)
    assert len(tracks) == sum(a["score"] >= 0.3 for p in persons for a in p["actions"])
    assert set(tracks[7]) == {p["track_id"] for p in persons if any(a["score"] >= 0.3 for a in p["actions"])}

    with av.open(str(out / "toy_val_000.pred.mp4")) as rendered, av.open(str(toy["video"])) as source:
        out_stream, in_stream = rendered.streams.video[0], source.streams.video[0]
        assert out_stream.codec_context.name == "h264"
        assert (out_stream.width, out_stream.height) == (in_stream.width, in_stream.height)
        assert out_stream.average_rate == in_stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in rendered.decode(video=0)]
    assert abs(len(frames) - 75) <= 1
    # Boxes are drawn from the first keyframe with persons on: frame 15 (t = 1 s) differs from the input.
    with av.open(str(toy["video"])) as source:
        original = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
    first = next(k for k in keyframes if k["persons"])
    changed = np.abs(frames[first["frame_index"]].astype(int) - original[first["frame_index"]]).max(axis=2) > 60
    assert changed.sum() > 200
    assert np.abs(frames[0].astype(int) - original[0]).mean() < 3  # before: untouched (up to re-encoding)


def test_resume_skips_complete_videos_and_redoes_unfinished(toy, tmp_path, capsys):
    out = tmp_path / "out"
    args = (toy["video"], "--weights", toy["checkpoint"], "--boxes", toy["boxes"], "--out", out, "--timestamps", "1,2")
    assert _predict(*args) == 0
    paths = OutputPaths.for_video(out, "toy_val_000", render=False)
    assert paths.is_complete()
    stamp = paths.csv.stat().st_mtime_ns
    capsys.readouterr()
    assert _predict(*args, "--resume") == 0
    assert "1 already complete" in capsys.readouterr().out and paths.csv.stat().st_mtime_ns == stamp
    lines = paths.jsonl.read_text().splitlines()
    paths.jsonl.write_text("\n".join(lines[:-1]) + "\n")  # as if interrupted before the end
    assert not paths.is_complete()
    assert _predict(*args, "--resume") == 0
    assert paths.is_complete() and "predicted 1 video(s)" in capsys.readouterr().out


def test_bad_inputs_each_one_line_and_the_rest_still_processed(toy, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = videos / "toy_val_000.mp4"
    good.write_bytes(toy["video"].read_bytes())
    (videos / "notes.mp4").write_text("not a video\n" * 50)
    (videos / "empty.mp4").write_bytes(b"")
    sound = tmp_path / "sound.wav"  # given by name: a directory lists only video extensions
    with wave.open(str(sound), "wb") as audio:
        audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(8000)
        audio.writeframes(np.zeros(8000, np.int16).tobytes())
    # Damaged midway: big packets, index at the front, 2 kB of garbage in the middle.
    rng = np.random.default_rng(0)
    damaged = videos / "damaged.mp4"
    write_video(damaged, [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40)], fps=15,
                keyframe_interval=10, options={"movflags": "faststart"})
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2: len(data) // 2 + 2000] = rng.integers(0, 255, 2000, dtype=np.uint8).tobytes()
    damaged.write_bytes(bytes(data))

    # The toy video's boxes, for damaged.mp4 too (a video id absent from --boxes is an error of its own).
    boxes = tmp_path / "boxes.csv"
    proposals = pd.read_csv(toy["boxes"], header=None)
    pd.concat([proposals, proposals.replace({0: {"toy_val_000": "damaged"}})]).to_csv(boxes, header=False, index=False)
    out = tmp_path / "out"
    code = _predict(videos, tmp_path / "missing.mp4", sound, "--weights", toy["checkpoint"], "--boxes", boxes,
                    "--out", out)
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 4, captured.err
    assert any("missing.mp4: no such file or directory" in e for e in errors)
    assert any("notes.mp4" in e and "cannot open video" in e for e in errors)
    assert any("empty.mp4" in e for e in errors)
    assert any("sound.wav" in e and "no video stream" in e for e in errors)
    assert "Traceback" not in captured.err
    assert any("damaged.mp4: skipped 1 damaged packet(s)" in line for line in captured.err.splitlines())
    assert "predicted 2 video(s)" in captured.out and "4 failed" in captured.out
    assert OutputPaths.for_video(out, "toy_val_000", False).is_complete()
    assert OutputPaths.for_video(out, "damaged", False).is_complete()
    assert read_jsonl(out / "damaged.jsonl")[-1]["frames_decoded"] == 39
    assert not (out / "notes.csv").exists() and not (out / "sound.csv").exists()


def test_wrong_weights_and_offline_download_are_one_line(toy, tmp_path, capsys, monkeypatch):
    junk = tmp_path / "not_a_model.pt"
    torch.save({"optimizer": {"lr": 0.1}}, junk)
    assert _predict(toy["video"], "--weights", junk, "--boxes", toy["boxes"], "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("sfdet predict: error: ") and "not_a_model.pt" in err and len(err.splitlines()) == 1

    # The default model, not cached and no network: the error names the URL and where to put the file.
    import functools
    import urllib.error

    from sfdet.models import registry

    def offline(url):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(registry, "fetch", functools.partial(registry.fetch, opener=offline))
    assert _predict(toy["video"], "--boxes", toy["boxes"], "--out", tmp_path) == 2
    err = capsys.readouterr().err
    expected_path = tmp_path / "torch" / "hub" / "checkpoints" / "SLOWFAST_8x8_R50_DETECTION.pyth"
    assert "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/ava/SLOWFAST_8x8_R50_DETECTION.pyth" in err
    assert str(expected_path) in err and len(err.splitlines()) == 1


def test_sigint_leaves_valid_outputs_for_every_finished_keyframe(toy, tmp_path):
    # A 60 s video with one person box per second: long enough to interrupt midway, even when a loaded
    # machine leaves this process waiting for seconds between seeing the 3rd keyframe and sending SIGINT.
    rng = np.random.default_rng(0)
    video = tmp_path / "long.mp4"
    write_video(video, (rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(900)), fps=15)
    boxes = tmp_path / "boxes.csv"
    write_proposals_csv(boxes, pd.DataFrame({"video_id": "long", "timestamp": np.arange(60.0), "x1": 0.2, "y1": 0.1,
                                             "x2": 0.6, "y2": 0.9, "score": 0.95}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sfdet", "predict", str(video), "--weights", str(toy["checkpoint"]),
               "--boxes", str(boxes), "--out", str(out), "--batch-size", "1", "--no-progress", "--device", "cpu"]
    # SIGINT back to its default in the child: a shell's background job (`make test &`) starts with it ignored,
    # and Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    jsonl = out / "long.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if jsonl.exists() and jsonl.read_text().count('"keyframe"') >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line is valid JSON
    finished = [r["timestamp"] for r in records if r["type"] == "keyframe"]
    assert records[-1]["type"] != "end" and 3 <= len(finished) < 60
    csv = read_predictions_csv(out / "long.csv")
    assert sorted(set(csv["timestamp"])) == finished[: len(set(csv["timestamp"]))]
    assert set(finished) - set(csv["timestamp"]) <= {finished[-1]}  # at most the keyframe being written
    assert (csv.groupby("timestamp").size() == len(toy["label_map"])).all()  # no keyframe half written


def test_timestamps_with_a_time_offset(toy, tmp_path):
    # AVA-style timing: the video starts at timestamp 900; proposals are keyed by those timestamps.
    proposals = pd.read_csv(toy["boxes"], header=None)
    proposals[1] = proposals[1] + 900
    boxes = tmp_path / "boxes_900.csv"
    proposals.to_csv(boxes, header=False, index=False)
    out = tmp_path / "out"
    assert _predict(toy["video"], "--weights", toy["checkpoint"], "--boxes", boxes, "--out", out,
                    "--timestamps", "903,901,9999", "--time-offset", "900") == 0
    records = read_jsonl(out / "toy_val_000.jsonl")
    keyframes = [r for r in records if r["type"] == "keyframe"]
    assert [k["timestamp"] for k in keyframes] == [901, 903]
    assert [k["frame_index"] for k in keyframes] == [15, 45]
    assert all(k["persons"] for k in keyframes)
    assert "after the end of the video skipped (9999)" in records[-1]["warnings"][0]
    assert sorted(set(read_predictions_csv(out / "toy_val_000.csv")["timestamp"])) == [901.0, 903.0]


def test_each_rank_predicts_only_its_share(toy, tmp_path):
    from sfdet.predict.actions import load_action_predictor
    from sfdet.persons import build_person_detector
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "toy_val_000", "z"):
        (videos / f"{name}.mp4").write_bytes(toy["video"].read_bytes())
    predictor = load_action_predictor(str(toy["checkpoint"]), torch.device("cpu"), precision="bf16")
    detector = build_person_detector(None, boxes_path=str(toy["boxes"]))
    options = PredictOptions(timestamps=[1.0, 2.0], progress=False)
    results = predict_videos([videos], predictor, detector, options, out_dir=tmp_path / "out", rank=1, world_size=2)
    assert [r.video.name for r in results] == ["toy_val_000.mp4"]  # rank 0 takes a.mp4 and z.mp4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "toy_val_000.csv", "toy_val_000.jsonl", "toy_val_000.segments.csv", "toy_val_000.tracks.csv"]
    assert results[0].keyframes == 2 and results[0].error is None
    # bf16 autocast on CPU: the same rows as fp32, scores close.
    fp32_predictor = load_action_predictor(str(toy["checkpoint"]), torch.device("cpu"), precision="fp32")
    predict_videos([videos / "toy_val_000.mp4"], fp32_predictor, detector, options, out_dir=tmp_path / "fp32")
    bf16 = read_predictions_csv(tmp_path / "out" / "toy_val_000.csv")
    fp32 = read_predictions_csv(tmp_path / "fp32" / "toy_val_000.csv")
    assert len(bf16) == len(fp32) > 0
    keys = ["timestamp", "x1", "y1", "x2", "y2", "action_id"]
    merged = bf16.merge(fp32, on=keys, suffixes=("_bf16", "_fp32"))
    assert len(merged) == len(fp32)
    np.testing.assert_allclose(merged["score_bf16"], merged["score_fp32"], atol=0.05)
