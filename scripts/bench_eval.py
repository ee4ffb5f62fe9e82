"""Benchmark `sfdet eval` against the reference AVA evaluator (MMAction2 0.24.1 `ava_eval`).

Generates an AVA-val-sized problem (64 videos x 897 keyframes x 3-8 people, 60 classes, ~2.9M prediction
rows) and times both evaluators from the CSV files, checking they give the same mAP:

- whole process (the headline): each side as a user runs it, process start to exit: `sfdet eval --gt ..
  --pred .. --labelmap .. --exclusions .. --out DIR` (imports, reading, evaluating, the printed table, the
  JSON and the PNG) against `python -c` importing the reference and calling `ava_eval(...)` on the same
  files (it prints its table and the script writes its metrics as JSON). Interleaved repeats, medians.
- in process (`frame_map(...)` vs `ava_eval(...)` from the CSV paths, imports done), with sfdet's peak
  traced memory; `--skip-in-process` leaves it out (it runs the reference once more).

    python scripts/bench_eval.py            # full size (the reference takes minutes per run)
    python scripts/bench_eval.py --quick    # 1/8 of the videos
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from sfdet.data.ava import read_label_map, write_exclusions, write_gt_csv, write_predictions_csv
from sfdet.evaluation import frame_map

REPO = Path(__file__).resolve().parents[1]
LABEL_MAP = Path("/work/shared/reference/ava_action_list_v2.2_for_activitynet_2019.pbtxt")


def load_reference():
    spec = importlib.util.spec_from_file_location("ava_reference", REPO / "tests" / "ava_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_ava_utils()


def make_problem(folder: Path, n_videos: int, seed: int = 0) -> dict:
    """AVA-like GT (1-3 actions per person) and detections (GT boxes jittered + false boxes, ~6.5 classes each)."""
    rng = np.random.default_rng(seed)
    class_ids = np.array(sorted(read_label_map(LABEL_MAP)), dtype=np.int64)
    gt_parts, pred_parts = [], []
    for v in tqdm(range(n_videos), desc="generating", unit="video"):
        video = f"video{v:03d}_{rng.integers(1 << 30):x}"
        seconds = np.arange(902, 1799)
        people = rng.integers(3, 9, size=len(seconds))
        sec = np.repeat(seconds, people)
        n = len(sec)
        xy = rng.random((n, 2)) * 0.6
        wh = 0.1 + rng.random((n, 2)) * 0.35
        boxes = np.concatenate([xy, np.minimum(xy + wh, 1.0)], axis=1).round(3)
        labels_per_person = rng.integers(1, 4, size=n)
        person = np.repeat(np.arange(n), labels_per_person)
        gt_parts.append(pd.DataFrame({
            "video_id": video, "timestamp": sec[person].astype(float),
            "x1": boxes[person, 0], "y1": boxes[person, 1], "x2": boxes[person, 2], "y2": boxes[person, 3],
            "action_id": rng.choice(class_ids, size=len(person), p=_class_frequencies(len(class_ids))),
            "person_id": (np.arange(n) - np.repeat(np.cumsum(people) - people, people))[person],
        }))
        # Detections: every GT person (jittered) with its true actions scored higher, plus ~20% false
        # boxes; each box also gets ~6 random classes with lower scores.
        det_boxes = np.clip(boxes + rng.normal(0, 0.02, boxes.shape), 0, 1)
        extra = rng.random(n) < 0.2
        det_boxes = np.concatenate([det_boxes, boxes[extra][:, [1, 0, 3, 2]]])
        det_sec = np.concatenate([sec, sec[extra]])
        per_box = rng.binomial(len(class_ids), 6.0 / len(class_ids), size=len(det_boxes)).clip(1)
        box_index = np.concatenate([person, np.repeat(np.arange(len(det_boxes)), per_box)])
        true_rows = len(person)
        action = np.concatenate([gt_parts[-1]["action_id"].to_numpy(), rng.choice(class_ids, size=len(box_index) - true_rows)])
        score = np.concatenate([0.3 + 0.7 * rng.random(true_rows), 0.6 * rng.random(len(box_index) - true_rows)])
        order = np.argsort(box_index, kind="stable")  # rows grouped by box, as a detector writes them
        box_index, action, score = box_index[order], action[order], score[order]
        pred_parts.append(pd.DataFrame({
            "video_id": video, "timestamp": det_sec[box_index].astype(float),
            "x1": det_boxes[box_index, 0], "y1": det_boxes[box_index, 1],
            "x2": det_boxes[box_index, 2], "y2": det_boxes[box_index, 3],
            "action_id": action,
            "score": score.round(4),  # 4 decimals, as PySlowFast writes them: many ties
        }))
    gt, pred = pd.concat(gt_parts, ignore_index=True), pd.concat(pred_parts, ignore_index=True)
    keys = gt[["video_id", "timestamp"]].drop_duplicates()
    exclusions = keys.sample(frac=0.01, random_state=seed)
    paths = {"gt": folder / "gt.csv", "pred": folder / "pred.csv", "exclusions": folder / "excluded.csv"}
    write_gt_csv(paths["gt"], gt)
    write_predictions_csv(paths["pred"], pred)
    write_exclusions(paths["exclusions"], exclusions)
    return {"paths": paths, "gt_rows": len(gt), "pred_rows": len(pred), "keyframes": len(keys)}


def _class_frequencies(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** 1.1  # long-tailed, like AVA
    return weights / weights.sum()


def run_reference(reference, paths) -> tuple[float, float]:
    logging.disable(logging.INFO)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = reference.ava_eval(str(paths["pred"]), "mAP", str(LABEL_MAP), str(paths["gt"]),
                                     str(paths["exclusions"]), verbose=True)
    return time.perf_counter() - start, float(metrics["mAP@0.5IOU"])


def run_sfdet(paths) -> tuple[float, float]:
    start = time.perf_counter()
    result = frame_map(paths["gt"], paths["pred"], LABEL_MAP, exclusions=paths["exclusions"])
    return time.perf_counter() - start, result.map


REFERENCE_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from ava_reference import load_ava_utils
metrics = load_ava_utils().ava_eval({pred!r}, "mAP", {label_map!r}, {gt!r}, {exclusions!r}, verbose=True)
with open({out!r}, "w") as f:
    json.dump({{k: float(v) for k, v in metrics.items()}}, f)
"""


def sfdet_command(paths, out_dir: Path) -> list[str]:
    """`sfdet eval ...` as a user types it: the installed console script next to this Python."""
    script = Path(sys.executable).with_name("sfdet")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "sfdet"]
    return head + ["eval", "--gt", str(paths["gt"]), "--pred", str(paths["pred"]), "--labelmap", str(LABEL_MAP),
                   "--exclusions", str(paths["exclusions"]), "--out", str(out_dir)]


def reference_command(paths, out_json: Path) -> list[str]:
    code = REFERENCE_SCRIPT.format(tests=str(REPO / "tests"), pred=str(paths["pred"]), label_map=str(LABEL_MAP),
                                   gt=str(paths["gt"]), exclusions=str(paths["exclusions"]), out=str(out_json))
    return [sys.executable, "-c", code]


def timed_process(command: list[str]) -> float:
    """Wall seconds from process start to exit (stdout discarded; a failure raises with its stderr)."""
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} ... exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def run_whole_process(paths, folder: Path, repeats: int) -> dict:
    """Interleaved whole-process runs of both sides (sfdet first in each round); medians and the mAPs read
    back from what each wrote."""
    sfdet_times, ref_times = [], []
    out_dir, ref_json = folder / "sfdet_out", folder / "reference_metrics.json"
    for round_index in range(repeats):
        sfdet_times.append(timed_process(sfdet_command(paths, out_dir)))
        ref_times.append(timed_process(reference_command(paths, ref_json)))
        print(f"  round {round_index + 1}/{repeats}: sfdet eval {sfdet_times[-1]:6.2f} s, "
              f"reference {ref_times[-1]:7.2f} s  ({ref_times[-1] / sfdet_times[-1]:.1f}x)", flush=True)
    written = json.loads((out_dir / f"{paths['pred'].stem}_eval.json").read_text())
    sfdet_map = float(written["PascalBoxes_Precision/mAP@0.5IOU"])
    ref_map = float(json.loads(ref_json.read_text())["mAP@0.5IOU"])
    return {"sfdet_seconds": sfdet_times, "reference_seconds": ref_times,
            "sfdet_median_s": statistics.median(sfdet_times), "reference_median_s": statistics.median(ref_times),
            "speedup": statistics.median(ref_times) / statistics.median(sfdet_times),
            "speedup_per_round": [r / s for s, r in zip(sfdet_times, ref_times)],
            "sfdet_map": sfdet_map, "reference_map": ref_map,
            "identical_map": math.isclose(sfdet_map, ref_map, rel_tol=0, abs_tol=1e-9),
            "sfdet_command": "sfdet eval --gt gt.csv --pred pred.csv --labelmap LABELMAP --exclusions excluded.csv "
                             "--out DIR (writes pred_eval.json and pred_eval.png)"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1/8 of the size (8 videos)")
    parser.add_argument("--videos", type=int, help="number of videos (default 64, or 8 with --quick)")
    parser.add_argument("--out", default="bench_eval.json", help="where to write the JSON (default bench_eval.json)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="whole-process rounds (one sfdet run, one reference run each; default 3)")
    parser.add_argument("--skip-in-process", action="store_true",
                        help="only the whole-process timings (saves one reference run)")
    args = parser.parse_args(argv)
    n_videos = args.videos or (8 if args.quick else 64)
    reference = load_reference()

    with tempfile.TemporaryDirectory() as tmp:
        problem = make_problem(Path(tmp), n_videos)
        paths = problem["paths"]
        print(f"problem: {n_videos} videos, {problem['keyframes']} keyframes, {problem['gt_rows']} GT rows, "
              f"{problem['pred_rows']} prediction rows; {cpu_model()}, {os.cpu_count()} CPUs", flush=True)
        print(f"whole process, {args.repeats} interleaved rounds:", flush=True)
        whole = run_whole_process(paths, Path(tmp), args.repeats)
        print(f"whole process: sfdet eval {whole['sfdet_median_s']:.2f} s vs reference "
              f"{whole['reference_median_s']:.2f} s (medians) = {whole['speedup']:.1f}x   "
              f"mAP {whole['sfdet_map']!r} vs {whole['reference_map']!r}   identical: {whole['identical_map']}",
              flush=True)
        in_process = None
        if not args.skip_in_process:
            sfdet_seconds, sfdet_map = run_sfdet(paths)
            sfdet_seconds = min(sfdet_seconds, run_sfdet(paths)[0])  # best of two (first run warms caches)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            run_sfdet(paths)
            _, peak_bytes = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"in process: sfdet {sfdet_seconds:8.2f} s   mAP {sfdet_map!r}   "
                  f"peak traced memory {peak_bytes / 2**20:.0f} MiB", flush=True)
            ref_seconds, ref_map = run_reference(reference, paths)
            print(f"in process: reference {ref_seconds:8.2f} s   mAP {ref_map!r}", flush=True)
            in_process = {
                "sfdet_seconds": sfdet_seconds, "reference_seconds": ref_seconds, "speedup": ref_seconds / sfdet_seconds,
                "sfdet_map": sfdet_map, "reference_map": ref_map,
                "identical_map": math.isclose(sfdet_map, ref_map, rel_tol=0, abs_tol=1e-9),
                "sfdet_peak_traced_mib": peak_bytes / 2**20, "max_rss_growth_mib": (rss_after - rss_before) / 1024,
            }
            print(f"in process: speed-up {in_process['speedup']:.1f}x   identical mAP: {in_process['identical_map']}")

    same = whole["identical_map"] and (in_process is None or in_process["identical_map"])
    print(f"whole-process speed-up: {whole['speedup']:.1f}x   identical mAP: {same}")
    try:
        import pyarrow
        arrow = pyarrow.__version__
    except ImportError:
        arrow = None
    report = {
        "videos": n_videos, "keyframes": problem["keyframes"], "gt_rows": problem["gt_rows"],
        "pred_rows": problem["pred_rows"], "whole_process": whole, "in_process": in_process,
        "speedup": whole["speedup"], "identical_map": same,
        "cpu": cpu_model(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__, "pyarrow": arrow,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
