"""Benchmark `sfdet predict`: peak memory must not grow with the video's length.

Writes two synthetic 640x360 videos (`--size`; 1 and 10 minutes, `--lengths`; `--quick`: 10 s and 100 s)
with moving person-like boxes and their proposals CSV, then runs `sfdet predict`
on each in a fresh process and reports peak RSS (the process's own `VmHWM`, from the JSONL `end` record), per-stage time
(decode, detect, action, write, from the JSONL `end` record) and keyframes/s.
The peak RSS of the long run must be within 15% of the short runs' highest.

The action model is the toy SlowFast (random init; its speed does not depend
on its weights) unless `--weights` names another; person boxes come from the
proposals CSV unless `--detector` names a torchvision detector (random weights,
nothing downloaded). Prints a markdown table for the README.

Baseline (on the short video): the PyTorchVideo tutorial's way, which re-decodes
each keyframe's window with `EncodedVideo.get_clip`, then the same detector,
preprocessing and action model, in this process. It reports both keyframes/s
(model loading excluded on both sides), their ratio, and the largest score
difference against sfdet's CSV, which must be the same detections. Streaming
and baseline runs alternate `--repeats` times (default 3) on the short video;
the ratio is that of the medians (one run of each varies by about 8% here).

    python scripts/bench_predict.py [--quick] [--workdir DIR] [--fps 30] [--device cpu] [--precision fp32]
                                    [--repeats 3] [--no-baseline]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sfdet.config import load_config  # noqa: E402
from sfdet.data.ava import read_predictions_csv, write_proposals_csv  # noqa: E402
from sfdet.data.video import write_video  # noqa: E402
from sfdet.models import build_model  # noqa: E402
from sfdet.models.checkpoint import save_sfdet_checkpoint  # noqa: E402
from sfdet.typed_config import to_dict  # noqa: E402

DEFAULT_SIZE = (640, 360)
NUM_CLASSES = 10


def person_boxes_norm(t: float) -> np.ndarray:
    """Two people walking back and forth: (2, 4) normalised boxes at time t."""
    centres = np.array([0.3 + 0.2 * np.sin(0.5 * t), 0.7 - 0.2 * np.sin(0.3 * t)])
    return np.stack([centres - 0.08, np.full(2, 0.15), centres + 0.08, np.full(2, 0.95)], axis=1)


def synthetic_frames(seconds: float, fps: float, width: int, height: int):
    background = np.zeros((height, width, 3), np.uint8)
    background[..., 0] = np.linspace(40, 120, width, dtype=np.uint8)[None, :]
    background[..., 1] = np.linspace(60, 100, height, dtype=np.uint8)[:, None]
    background[..., 2] = 90
    scale = np.array([width, height, width, height])
    for i in range(int(round(seconds * fps))):
        frame = background.copy()
        for k, (x1, y1, x2, y2) in enumerate((person_boxes_norm(i / fps) * scale).astype(int)):
            frame[y1:y2, x1:x2] = (220, 180, 150) if k == 0 else (90, 200, 230)
            arm = int(height / 36 * np.sin(i / fps * 6 + k))  # a little motion inside the box
            frame[y1 + height // 9 + arm : y1 + height // 6 + arm, x1:x2] = 30
        yield frame


def video_name(seconds: float, fps: float, size: tuple[int, int]) -> str:
    suffix = "" if size == DEFAULT_SIZE else f"_{size[0]}x{size[1]}"
    return f"synthetic_{int(seconds)}s_{int(fps)}fps{suffix}"


def make_video(workdir: Path, name: str, seconds: float, fps: float, size: tuple[int, int]) -> tuple[Path, Path]:
    video = workdir / f"{name}.mp4"
    boxes = workdir / f"{name}_boxes.csv"
    if not video.exists():
        print(f"writing {video} ({seconds:g} s at {fps:g} fps)...", flush=True)
        write_video(video, synthetic_frames(seconds, fps, *size), fps=fps, crf=23)
    if not boxes.exists():
        rows = []
        for t in range(int(seconds) + 1):
            for box in person_boxes_norm(float(t)):
                rows.append({"video_id": name, "timestamp": float(t), "x1": box[0], "y1": box[1], "x2": box[2],
                             "y2": box[3], "score": 0.99})
        write_proposals_csv(boxes, pd.DataFrame(rows))
    return video, boxes


def make_toy_checkpoint(workdir: Path) -> Path:
    """The toy SlowFast (random init) of the current `configs/toy/slowfast_tiny.yaml`; the file name
    carries a hash of the config, so an edited config never reuses an old checkpoint."""
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml")
    cfg.model.num_classes = NUM_CLASSES
    digest = hashlib.sha1(json.dumps(to_dict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:10]
    path = workdir / f"toy_model_{digest}.pt"
    if not path.exists():
        torch.manual_seed(0)
        model = build_model(cfg.model)
        label_map = {i + 1: f"action_{i + 1}" for i in range(NUM_CLASSES)}
        save_sfdet_checkpoint(path, model, label_map, config=to_dict(cfg))
    return path


def run_predict(video: Path, boxes: Path, weights: str, args) -> dict:
    out = video.parent / "out"
    command = [sys.executable, "-m", "sfdet", "predict", str(video), "--weights", weights, "--out", str(out),
               "--device", args.device, "--batch-size", str(args.batch_size), "--precision", args.precision,
               "--no-progress"]
    if args.detector:
        detector_weights = video.parent / f"{args.detector}_random.pth"
        if not detector_weights.exists():
            import torchvision

            torch.manual_seed(0)
            model = torchvision.models.get_model(args.detector, weights=None, weights_backbone=None)
            torch.save(model.state_dict(), detector_weights)
        command += ["--detector", args.detector, "--detector-weights", str(detector_weights),
                    "--detector-threshold", "0.0"]
    else:
        command += ["--boxes", str(boxes)]
    if args.render:
        command.append("--render")
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if process.wait() != 0:
        raise SystemExit(f"sfdet predict failed on {video}")
    end = json.loads((out / f"{video.stem}.jsonl").read_text().splitlines()[-1])
    # The child's own high-water mark (VmHWM): `wait4`'s ru_maxrss would report at least this process's
    # size, which Linux carries across exec.
    return {"peak_rss_mb": end["peak_rss_mb"], "keyframes": end["keyframes"], "frames": end["frames_decoded"],
            **end["seconds"]}


def per_clip_baseline(video: Path, boxes: Path, weights: str, args) -> dict:
    """PyTorchVideo's tutorial loop: `EncodedVideo.get_clip` per keyframe, then the same models as sfdet's run.

    Keyframes, centre frames and the clip window's frame indices are those sfdet wrote in its JSONL (the
    nearest-frame rule and edge repetition), so both paths must score the same pixels.
    """
    from pytorchvideo.data.encoded_video import EncodedVideo

    from sfdet.devices import pick_device
    from sfdet.persons import build_person_detector
    from sfdet.predict.actions import load_action_predictor

    records = [json.loads(line) for line in (video.parent / "out" / f"{video.stem}.jsonl").read_text().splitlines()]
    keyframes = [r for r in records if r["type"] == "keyframe"]
    num_frames = records[-1]["frames_decoded"]
    device = pick_device(args.device)
    predictor = load_action_predictor(weights, device, precision=args.precision)
    detector = build_person_detector(None, boxes_path=str(boxes))
    start = time.perf_counter()
    encoded = EncodedVideo.from_path(str(video), decode_audio=False, decoder="pyav")
    fps = Fraction(args.fps).limit_denominator(1001)
    rows, batch = [], []

    def flush():
        scores = predictor.score([predictor.clip(frames) for frames, _, _, _ in batch],
                                 [model_boxes for _, _, model_boxes, _ in batch])
        for (_, timestamp, _, boxes_norm), clip_scores in zip(batch, scores):
            for box, person_scores in zip(boxes_norm, clip_scores):
                for k, action_id in enumerate(predictor.label_map):
                    rows.append((timestamp, *box.tolist(), action_id, float(person_scores[k])))
        batch.clear()

    for keyframe in keyframes:
        centre = keyframe["frame_index"]
        indices = np.clip(centre + np.asarray(predictor.offsets), 0, num_frames - 1)
        first, last = int(indices.min()), int(indices.max())
        # Half a frame either side of the wanted frames: no rounding decides which frames come back.
        clip = encoded.get_clip((first - Fraction(1, 2)) / fps if first else 0, (last + Fraction(1, 2)) / fps)
        frames = clip["video"].permute(1, 2, 3, 0).to(torch.uint8).numpy()  # (T, H, W, 3) RGB in [0, 255]
        window = [frames[i - first] for i in indices]
        centre_rgb = frames[centre - first]
        boxes_xyxy_abs, _ = detector(centre_rgb, video.stem, keyframe["timestamp"])
        height, width = centre_rgb.shape[:2]
        boxes_norm = boxes_xyxy_abs / np.array([width, height, width, height], dtype=np.float32)
        model_boxes = predictor.model_boxes(centre_rgb, boxes_xyxy_abs)
        batch.append(([predictor.prepare_frame(f) for f in window], keyframe["timestamp"], model_boxes, boxes_norm))
        if len(batch) >= args.batch_size:
            flush()
    if batch:
        flush()
    seconds = time.perf_counter() - start
    encoded.close()
    ours = read_predictions_csv(video.parent / "out" / f"{video.stem}.csv")
    theirs = pd.DataFrame(rows, columns=["timestamp", "x1", "y1", "x2", "y2", "action_id", "score"])
    # Pair rows by keyframe, box and class. Boxes are float32 in one table and shortest-exact decimals in
    # the other: the keys are the boxes rounded to 1e-4 (people's boxes differ by far more).
    for table in (ours, theirs):
        for c in ("x1", "y1", "x2", "y2"):
            table[f"{c}_key"] = table[c].astype(float).round(4)
    keys = ["timestamp", "x1_key", "y1_key", "x2_key", "y2_key", "action_id"]
    merged = ours.merge(theirs, on=keys, suffixes=("", "_baseline"), how="outer", indicator=True)
    unmatched = int((merged["_merge"] != "both").sum())
    max_diff = float((merged["score"] - merged["score_baseline"]).abs().max()) if len(merged) else 0.0
    unmatched_at = sorted(set(merged.loc[merged["_merge"] != "both", "timestamp"]))
    return {"keyframes": len(keyframes), "total": seconds, "rows": len(theirs), "unmatched_rows": unmatched,
            "unmatched_timestamps": unmatched_at, "max_abs_score_diff": max_diff}


def rate(run: dict) -> float:
    return run["keyframes"] / run["total"]


def median_run(runs: list[dict]) -> dict:
    """The run with the median keyframes/s (the lower middle one for an even count)."""
    return sorted(runs, key=rate)[(len(runs) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s and 100 s videos instead of 1 and 10 minutes")
    parser.add_argument("--workdir", default="bench_predict_work", help="videos and outputs (reused between runs)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="640x360", help="synthetic video size WIDTHxHEIGHT (e.g. 1280x720)")
    parser.add_argument("--lengths", default="60,600", help="seconds of the short and the long video")
    parser.add_argument("--weights", default=None, help="action model (default: the toy SlowFast, random init)")
    parser.add_argument("--detector", default=None, help="torchvision detector name (random weights) instead of boxes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="action model precision, the same on both sides (bf16: CUDA or AVX512-BF16/AMX CPUs)")
    parser.add_argument("--render", action="store_true", help="also render the mp4 (the write stage)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the per-clip re-decoding baseline")
    parser.add_argument("--repeats", type=int, default=3,
                        help="streaming and baseline runs on the short video, alternating (medians reported)")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lengths = [10.0, 100.0] if args.quick else [float(v) for v in args.lengths.split(",")]
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(size) == 2 and min(size) >= 64
    except (ValueError, AssertionError):
        raise SystemExit(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    weights = args.weights or str(make_toy_checkpoint(workdir))
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    results, short_runs, base_runs = [], [], []
    for seconds in lengths:
        video, boxes = make_video(workdir, video_name(seconds, args.fps, size), seconds, args.fps, size)
        repeats = args.repeats if seconds == lengths[0] else 1
        for repeat in range(repeats):
            print(f"predicting {video} ({repeat + 1}/{repeats})...", flush=True)
            ours = run_predict(video, boxes, weights, args)
            if seconds != lengths[0]:
                results.append((seconds, ours))
                continue
            short_runs.append(ours)
            if not args.no_baseline:
                print(f"baseline: PyTorchVideo EncodedVideo.get_clip per keyframe on {video.name} "
                      f"({repeat + 1}/{repeats})...", flush=True)
                base_runs.append(per_clip_baseline(video, boxes, weights, args))
        if seconds == lengths[0]:
            results.append((seconds, median_run(short_runs)))

    print()
    print(f"| video ({size[0]}x{size[1]}, {args.fps:g} fps) | frames | keyframes | peak RSS (MB) | decode (s) | "
          "detect (s) | action (s) | write (s) | total (s) | keyframes/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seconds, r in results:
        print(f"| {seconds:g} s | {r['frames']} | {r['keyframes']} | {r['peak_rss_mb']:.0f} | {r['decode']:.1f} | "
              f"{r['detect']:.1f} | {r['action']:.1f} | {r['write']:.1f} | {r['total']:.1f} | "
              f"{r['keyframes'] / r['total']:.2f} |")
    if len(short_runs) > 1:
        print(f"({lengths[0]:g} s: the median of {len(short_runs)} runs)")
    if base_runs:
        ours, base = median_run(short_runs), median_run(base_runs)
        ours_rate, base_rate = rate(ours), rate(base)
        print(f"\n| {lengths[0]:g} s video | keyframes | total (s) | keyframes/s (median) | all runs |")
        print("|---|---|---|---|---|")
        for name, runs, r in (("sfdet predict (streaming)", short_runs, ours),
                              ("per-clip re-decoding (EncodedVideo.get_clip)", base_runs, base)):
            print(f"| {name} | {r['keyframes']} | {r['total']:.1f} | {rate(r):.2f} | "
                  f"{', '.join(f'{rate(x):.2f}' for x in runs)} |")
        unmatched = max(b["unmatched_rows"] for b in base_runs)
        max_diff = max(b["max_abs_score_diff"] for b in base_runs)
        print(f"\nstreaming / per-clip: {ours_rate / base_rate:.2f}x keyframes/s (medians of {len(short_runs)}); "
              f"same detections: {base['rows']} score rows, {unmatched} unmatched, max |score diff| {max_diff:.2e}")
    # The highest of the short runs: how far the bounded decode queue fills depends on timing.
    short, long = max(r["peak_rss_mb"] for r in short_runs), results[-1][1]["peak_rss_mb"]
    growth = (long - short) / short
    print(f"\npeak RSS: {short:.0f} MB ({lengths[0]:g} s, highest of {len(short_runs)}) vs {long:.0f} MB "
          f"({lengths[-1]:g} s): {growth:+.1%} "
          f"({'OK' if abs(growth) < 0.15 else 'FAIL'}: must be within 15%)")
    if abs(growth) >= 0.15:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
