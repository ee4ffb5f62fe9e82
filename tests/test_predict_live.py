"""`sfdet predict SOURCE` online: a paced file (`--live`), standard input, a TCP stream (reconnected), dropped
keyframes under a slow scorer with bounded queues, the preview's endpoints (urllib) and page (headless Chromium).

Senders remux the toy video's packets into MPEG-TS (no re-encoding), so the decoded frames, and so the scores,
equal the offline `predict` of the file. Run as a script, this file is the stdin sender:
`python tests/test_predict_live.py VIDEO | sfdet predict - ...`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def send_mpegts(video, out, start_s: float = 0.0, end_s: float | None = None, paced: bool = True) -> None:
    """Remux `video`'s packets from `start_s` to `end_s` into MPEG-TS written to `out`, at real-time pace."""
    with av.open(str(video)) as source:
        stream = source.streams.video[0]
        with av.open(out, "w", format="mpegts", container_options={"flush_packets": "1"}, buffer_size=4096) as sink:
            out_stream = sink.add_stream_from_template(stream)
            origin = None
            for packet in source.demux(stream):
                if packet.dts is None:
                    continue
                t = float(packet.pts * stream.time_base)
                if t < start_s:
                    continue
                if end_s is not None and t >= end_s:
                    break
                if paced:
                    origin = time.monotonic() - t if origin is None else origin
                    time.sleep(max(0.0, origin + t - time.monotonic()))
                packet.stream = out_stream
                sink.mux(packet)


if __name__ == "__main__":  # the stdin sender
    send_mpegts(sys.argv[1], sys.stdout.buffer)
    raise SystemExit(0)

import pytest  # noqa: E402
import torch  # noqa: E402

from sfdet import cli  # noqa: E402
from sfdet.data.ava import read_label_map, read_predictions_csv  # noqa: E402
from sfdet.predict.live import KeyframeQueue, LiveOptions, _Job, default_name, predict_live, redact, source_kind  # noqa: E402
from sfdet.predict.writers import read_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 4 s toy video (15 fps, 320x180) with detector boxes, a random toy model, and its offline predictions."""
    from sfdet.config import load_config
    from sfdet.models import build_model
    from sfdet.models.checkpoint import save_sfdet_checkpoint
    from sfdet.toy import generate_toy_dataset
    from sfdet.typed_config import to_dict

    root = tmp_path_factory.mktemp("live")
    generate_toy_dataset(root, seed=1, videos_train=0, videos_val=1, seconds=4, overwrite=True, workers=1)
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml", [f"data.root={root}"])
    label_map = read_label_map(root / "annotations/label_map.pbtxt")
    cfg.model.num_classes = len(label_map)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        model.head.proj.weight.normal_(0, 0.5)
        model.head.proj.bias.normal_(0, 1.0)
    checkpoint = save_sfdet_checkpoint(root / "model.pt", model, label_map, config=to_dict(cfg))
    toy = {"root": root, "checkpoint": checkpoint, "video": root / "videos/toy_val_000.mp4",
           "boxes": root / "annotations/val_predicted_boxes.csv"}
    assert _predict(toy["video"], *_models(toy), "--out", root / "offline") == 0
    toy["offline"] = read_predictions_csv(root / "offline/toy_val_000.csv")
    return toy


def _models(toy) -> list:
    return ["--weights", toy["checkpoint"], "--boxes", toy["boxes"], "--device", "cpu", "--batch-size", "1"]


def _predict(*args) -> int:
    return cli.main(["predict", *map(str, args), "--no-progress", "--precision", "fp32"])


def _scores(csv) -> dict:
    return {(round(r.timestamp, 3), r.x1, r.y1, r.action_id): r.score for r in csv.itertuples()}


def _assert_scored_keyframes_equal_offline(toy, csv_path: Path, timestamps) -> None:
    live, offline = _scores(read_predictions_csv(csv_path)), _scores(toy["offline"])
    mine = {k: v for k, v in live.items() if k[0] in set(timestamps)}
    assert mine, "no scored keyframe to compare"
    for key, score in mine.items():
        assert key in offline, key
        assert abs(score - offline[key]) <= 1e-5, (key, score, offline[key])
    expected = {k for k in offline if k[0] in set(timestamps)}
    assert set(mine) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keyframes(records) -> list[dict]:
    return [r for r in records if r["type"] == "keyframe"]


def test_source_kinds_names_and_the_dropping_queue():
    assert source_kind("-") == "stdin" and source_kind("/dev/video0") == "device"
    assert source_kind("rtsp://cam:554/s") == source_kind("tcp://127.0.0.1:9000") == "network"
    assert source_kind("videos/a.mp4") is None and source_kind("file://x.mp4") is None
    assert default_name("rtsp://user:pw@cam.local:554/live/1?x=y") == "cam_local_554_live_1"
    assert default_name("-") == "stdin" and default_name("/dev/video2") == "video2"
    assert redact("rtsp://user:secret@cam/s") == "rtsp://user:***@cam/s"
    queue = KeyframeQueue(2)
    jobs = [_Job(float(t), t, t, None, 0.0) for t in range(5)]
    for job in jobs:
        queue.put(job)
    assert queue.dropped == 3 and queue.max_len == 2 and queue.dropped_times == [0.0, 1.0, 2.0]
    assert [j.time for j in queue.take(8, 0.1)] == [3.0, 4.0]  # what is there, no waiting for a full batch
    queue.close()
    assert queue.take(8, 0.1) is None


def test_live_rehearsal_equals_offline_with_latency_stdout_and_preview(toy, tmp_path, capsys):
    port = _free_port()
    out = tmp_path / "out"
    codes = []
    run = threading.Thread(target=lambda: codes.append(_predict(
        toy["video"], "--live", *_models(toy), "--out", out, "--stdout", "jsonl", "--preview", port)))
    started = time.monotonic()
    run.start()
    base = f"http://127.0.0.1:{port}"
    status = {}
    while time.monotonic() - started < 60 and run.is_alive():
        try:
            status = json.load(urllib.request.urlopen(f"{base}/status.json", timeout=5))
        except OSError:
            time.sleep(0.1)
            continue
        if status.get("keyframes_scored", 0) >= 2:
            break
        time.sleep(0.1)
    assert status.get("keyframes_scored", 0) >= 2, status
    for key in ("fps_in", "keyframes_per_s", "dropped", "latency_s", "frames_in", "queues"):
        assert key in status
    assert status["fps_in"] > 5 and set(status["latency_s"]) >= {"p50", "p95", "max"}
    page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
    assert "/stream.mjpg" in page and "/status.json" in page
    tracks = json.load(urllib.request.urlopen(base + "/tracks.json", timeout=5))
    assert tracks and tracks[0]["actions"]
    with urllib.request.urlopen(base + "/stream.mjpg", timeout=5) as stream:  # the first part of the MJPEG stream
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = b""
        while b"\r\n\r\n" not in head:
            head += stream.read(1)
        length = int([line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0]
                     .split(b":")[1])
        jpeg = stream.read(length)
    from PIL import Image

    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (320, 180)
    run.join(timeout=60)
    assert codes == [0]
    # Paced: it took the video's 4 s; every keyframe scored (none dropped), with latency fields.
    assert time.monotonic() - started >= 3.5
    records = read_jsonl(out / "toy_val_000.jsonl")
    keyframes = _keyframes(records)
    assert [k["timestamp"] for k in keyframes] == [0.0, 1.0, 2.0, 3.0, 4.0]
    for k in keyframes:
        assert k["source_time"] == k["timestamp"] and k["written_at"] > 1e9
        assert 0 <= k["latency_s"] < 10 and k["dropped_so_far"] == 0
        if k["timestamp"] <= 3:  # its window reaches 14 frames past its centre (at the end: repeats the last)
            assert k["latency_s"] >= 14 / 15
    end = records[-1]
    assert end["type"] == "end" and end["online"]["keyframes_dropped"] == 0
    assert end["online"]["ended"] == "end of stream"
    # The CSV is the offline one, bit for bit.
    assert (out / "toy_val_000.csv").read_bytes() == (toy["root"] / "offline/toy_val_000.csv").read_bytes()
    # --stdout jsonl: the same records, each line JSON; the summary went to stderr.
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert [r["type"] for r in lines] == [r["type"] for r in records]
    assert "predicted" in captured.err


class _OneBox:
    """A detector that always sees one person (every keyframe is scored)."""

    def __call__(self, frame_rgb, video_id, timestamp):
        h, w = frame_rgb.shape[:2]
        return np.array([[0.3 * w, 0.2 * h, 0.6 * w, 0.9 * h]], np.float32), np.array([0.99], np.float32)

    def describe(self):
        return {"kind": "test"}


def test_a_slow_scorer_drops_whole_keyframes_with_bounded_queues_and_latency(toy, tmp_path):
    from sfdet.predict.actions import load_action_predictor
    from sfdet.predict.pipeline import PredictOptions

    predictor = load_action_predictor(str(toy["checkpoint"]), torch.device("cpu"), "fp32", log=lambda line: None)
    score = predictor.score
    delay = 0.6

    def slow_score(clips, boxes):
        time.sleep(delay * len(clips))
        return score(clips, boxes)

    predictor.score = slow_score
    options = PredictOptions(keyframe_rate=5.0, batch_size=1, progress=False)
    live = LiveOptions(paced=True, max_queued_keyframes=2)
    result = predict_live(str(toy["video"]), predictor, _OneBox(), options, live, out_dir=tmp_path)
    records = read_jsonl(tmp_path / "toy_val_000.jsonl")
    online = records[-1]["online"]
    keyframes = _keyframes(records)
    placed = 21  # 0.0, 0.2, ... 4.0 s: the last frame is at 3.93 s, 4.0 s is within one frame period of it
    assert online["keyframes_dropped"] > 0 and len(keyframes) + online["keyframes_dropped"] == placed
    assert result.keyframes == len(keyframes)
    assert online["max_keyframes_queued"] <= online["keyframes_queue_bound"] == 2
    assert online["max_frames_queued"] <= online["frames_queue_bound"]
    # Bounded: a keyframe waits at most for the one being scored and the queue ahead of it.
    bound = online["min_latency_s"] + (online["keyframes_queue_bound"] + 1) * delay + 1.5
    assert max(k["latency_s"] for k in keyframes) < bound, (keyframes, bound)
    assert [k["dropped_so_far"] for k in keyframes] == sorted(k["dropped_so_far"] for k in keyframes)


def test_stdin_mpegts_stream(toy, tmp_path):
    out = tmp_path / "out"
    sender = subprocess.Popen([sys.executable, __file__, str(toy["video"])], stdout=subprocess.PIPE)
    command = [sys.executable, "-m", "sfdet", "predict", "-", "--name", "toy_val_000", *map(str, _models(toy)),
               "--out", str(out), "--precision", "fp32", "--no-progress", "--stdout", "jsonl"]
    done = subprocess.run(command, stdin=sender.stdout, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    sender.stdout.close()
    sender.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # --stdout jsonl: every line parses
    assert lines[0]["type"] == "video" and lines[-1]["type"] == "end"
    assert lines[-1]["online"]["source"] == "-" and lines[-1]["frames_decoded"] == 60
    scored = [k["timestamp"] for k in _keyframes(lines)]
    assert len(scored) + lines[-1]["online"]["keyframes_dropped"] == 5
    _assert_scored_keyframes_equal_offline(toy, out / "toy_val_000.csv", [t for t in scored if 1 <= t <= 3])


def _tcp_sender(video, segments, ready: threading.Event, listener: socket.socket):
    """Serve `segments` ((start_s, end_s) of the video) to successive connections, then stop listening."""
    try:
        ready.set()
        for start, end in segments:
            connection, _ = listener.accept()
            with connection, connection.makefile("wb") as out:
                try:
                    send_mpegts(video, out, start, end)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
    finally:
        listener.close()


def test_tcp_stream_that_drops_is_reconnected_and_ends_cleanly(toy, tmp_path, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    ready = threading.Event()
    sender = threading.Thread(target=_tcp_sender, args=(toy["video"], [(0.0, 2.5), (0.0, 1.5)], ready, listener),
                              daemon=True)
    sender.start()
    ready.wait(5)
    out = tmp_path / "out"
    code = _predict(f"tcp://127.0.0.1:{port}", "--name", "toy_val_000", *_models(toy), "--out", out,
                    "--reconnect", "2", "--open-timeout", "5")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "reconnecting in 0.5 s (1/2)" in err and "reconnected" in err and "gave up after 2" in err
    records = read_jsonl(out / "toy_val_000.jsonl")
    gaps = [r for r in records if r["type"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["to_time"] > gaps[0]["from_time"] and gaps[0]["reconnects"] == 1
    end = records[-1]
    assert end["type"] == "end" and end["online"]["reconnects"] == 1 and "gave up" in end["online"]["ended"]
    assert end["frames_decoded"] == 38 + 23  # 0-2.5 s and 0-1.5 s, on one clock
    times = [k["source_time"] for k in _keyframes(records)]
    assert times == sorted(times) and times[-1] > 2.5  # the clock went on across the gap
    _assert_scored_keyframes_equal_offline(toy, out / "toy_val_000.csv", [1.0])  # before the gap


def test_a_source_that_sends_nothing_fails_in_one_line(toy, tmp_path, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection (the kernel does) and never sends
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        code = _predict(f"tcp://127.0.0.1:{port}", *_models(toy), "--out", tmp_path, "--open-timeout", "1",
                        "--reconnect", "0")
    finally:
        listener.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and time.monotonic() - started < 30
    assert len(err) == 1 and err[0].startswith(f"sfdet predict: error: tcp://127.0.0.1:{port}: "), err
    assert not list(tmp_path.glob("*.jsonl"))


def test_live_only_options_are_refused_for_files(toy, tmp_path, capsys):
    assert _predict(toy["video"], "--preview", "8000", *_models(toy)) == 2
    assert _predict("-", "--render", *_models(toy)) == 2
    err = capsys.readouterr().err.splitlines()
    assert "--preview is for live sources" in err[0] and "--render is for video files" in err[1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
def test_preview_page_in_headless_chromium_shows_frames_with_boxes(tmp_path):
    from types import SimpleNamespace

    from sfdet.predict.preview import PreviewServer
    from sfdet.predict.render import track_colour

    preview = PreviewServer(0, max_fps=20)
    try:
        preview.status = lambda: {"source": "test", "state": "running", "fps_in": 15, "frames_in": 1,
                                  "keyframes_scored": 1, "keyframes_per_s": 1, "dropped": 0,
                                  "latency_s": {"p50": 1.0, "p95": 1.2, "max": 1.3}}
        frame = np.full((360, 640, 3), 60, np.uint8)
        preview.offer_frame(frame)
        keyframe = SimpleNamespace(timestamp=1.0, boxes_norm=np.array([[0.2, 0.2, 0.6, 0.9]], np.float32),
                                   track_ids=np.array([0]))
        preview.update_keyframe(keyframe, [np.array([0.9, 0.1])], {1: "wave", 2: "stand"}, 0.5)
        stop = threading.Event()

        def feed():  # a live source: new frames keep arriving
            while not stop.wait(0.05):
                preview.offer_frame(frame)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        shot = tmp_path / "page.png"
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,700",
                   "--virtual-time-budget=3000", f"--screenshot={shot}", preview.url]
        subprocess.run(command, capture_output=True, timeout=60)
        dom = subprocess.run([*command[:-2], "--dump-dom", preview.url], capture_output=True, text=True,
                             timeout=60).stdout
        stop.set()
    finally:
        preview.close()
    assert "sfdet live" in dom and "#0" in dom and "wave" in dom  # the page loaded, the tracks table filled
    assert preview.frames_served >= 1  # frames were fetched
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    box = np.abs(pixels - np.array(track_colour(0))).sum(axis=2) < 40
    assert box.sum() > 200, "no box drawn in the screenshot"
