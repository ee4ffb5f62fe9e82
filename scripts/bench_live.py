"""Benchmark online prediction: `sfdet predict VIDEO --live` on a paced synthetic stream.

Writes a synthetic 640x360 30 fps video (`--seconds`, default 600; `scripts/bench_predict.py`'s
generator, two moving persons with their boxes CSV) and runs `sfdet predict --live` on it in a fresh
process for each `--rates` keyframe rate: the file is read at its frame rate, as a camera would
deliver it. Reports keyframes/s scored, the dropped fraction, latency p50 / p95 / max (from the JSONL
keyframe records: written minus the arrival of the centre frame), the minimum latency (the clip
window after the centre) and the process's RSS (`VmRSS`, sampled) after 1 minute and at the end.

    python scripts/bench_live.py [--seconds 600] [--rates 1,4] [--weights toy|FILE] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from bench_predict import make_toy_checkpoint, make_video, video_name  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(video: Path, boxes: Path, weights: str, rate: float, args, out: Path) -> dict:
    command = [sys.executable, "-m", "sfdet", "predict", str(video), "--live", "--weights", weights,
               "--boxes", str(boxes), "--keyframe-rate", str(rate), "--out", str(out), "--device", args.device,
               "--precision", args.precision, "--no-progress"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    samples = []  # (seconds since start, RSS MB)
    while process.poll() is None:
        value = rss_mb(process.pid)
        if value is not None:
            samples.append((time.monotonic() - started, value))
        time.sleep(1.0)
    if process.returncode != 0:
        raise SystemExit(f"sfdet predict failed ({process.returncode})")
    records = [json.loads(line) for line in (out / f"{video.stem}.jsonl").read_text().splitlines()]
    keyframes = [r for r in records if r["type"] == "keyframe"]
    online = records[-1]["online"]
    latencies = np.array([k["latency_s"] for k in keyframes[:-1]])  # the last one's window is cut by the end
    wall = records[-1]["seconds"]["total"]
    at_1min = [v for t, v in samples if t <= 60 + 5]
    return {
        "rate": rate, "keyframes": len(keyframes), "dropped": online["keyframes_dropped"],
        "dropped_fraction": online["keyframes_dropped"] / max(1, len(keyframes) + online["keyframes_dropped"]),
        "keyframes_per_s": len(keyframes) / wall if wall else 0.0,
        "latency_p50": float(np.percentile(latencies, 50)), "latency_p95": float(np.percentile(latencies, 95)),
        "latency_max": float(latencies.max()), "min_latency": online["min_latency_s"],
        "rss_1min_mb": at_1min[-1] if at_1min else None, "rss_end_mb": samples[-1][1] if samples else None,
        "peak_rss_mb": records[-1]["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rates", default="1,4")
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--weights", default="toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--workdir", default="/tmp/sfdet_bench_live")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    name = video_name(args.seconds, args.fps, (640, 360))
    video, boxes = make_video(workdir, name, args.seconds, args.fps, (640, 360))
    weights = str(make_toy_checkpoint(workdir)) if args.weights == "toy" else args.weights
    print(f"{os.cpu_count()} CPU(s); {video.name}, weights {Path(weights).name}, {args.device} {args.precision}")
    print("| keyframes/s asked | scored | dropped | scored/s | latency p50 / p95 / max (s) | window after centre (s) "
          "| RSS at 1 min / end (MB) |")
    print("|---|---|---|---|---|---|---|")
    for rate in [float(r) for r in args.rates.split(",")]:
        result = run(video, boxes, weights, rate, args, workdir / f"live_{rate:g}")
        rss_1 = f"{result['rss_1min_mb']:.0f}" if result["rss_1min_mb"] else "-"
        print(f"| {rate:g} | {result['keyframes']} | {result['dropped']} ({100 * result['dropped_fraction']:.0f} %) "
              f"| {result['keyframes_per_s']:.2f} | {result['latency_p50']:.2f} / {result['latency_p95']:.2f} / "
              f"{result['latency_max']:.2f} | {result['min_latency']:.2f} | {rss_1} / {result['rss_end_mb']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
