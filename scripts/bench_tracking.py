"""Person tracking in `sfdet predict` on the toy val set: IDF1 and ID switches (motmetrics) and keyframes/s.

Compares the keyframe-only IoU tracker (the default, `--track-every 0`) with the ByteTrack-style tracker fed
by the person detector on every Nth frame (`--track-every N`). The detector is the toy generator's simulated
person detector (`sfdet.toy.generate.simulate_proposals`: jittered boxes, misses, low scores, false positives
on distractors) applied to every frame of the regenerated scenes; its boxes are computed before the timed runs,
so keyframes/s measures decoding, tracking and the action model (a random-init toy model on the CPU), not a
real detector: with one, the cost per keyframe grows by (detector calls per keyframe) x (one detection).
With `--detector PATH` (a `detector.pt` written by `sfdet train-detector`, loaded as `sfdet predict --detector`
loads it, with the score threshold stored in it unless `--detector-threshold`) that detector runs inside the
timed runs instead, on the keyframes' centre frames and every Nth frame: keyframes/s then includes detection.
IDF1 / ID switches are counted on the annotated keyframes against the GT CSV's person ids (IoU >= 0.5).

    python scripts/bench_tracking.py --videos 3 --seconds 20 --track-every 5,1
    python scripts/bench_tracking.py --videos 3 --seconds 20 --track-every 5,1 --detector detector.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sfdet.boxes import box_iou  # noqa: E402
from sfdet.config import load_config  # noqa: E402
from sfdet.data.ava import read_gt_csv, read_label_map  # noqa: E402
from sfdet.models import build_model  # noqa: E402
from sfdet.models.checkpoint import save_sfdet_checkpoint  # noqa: E402
from sfdet.persons.base import PersonDetector  # noqa: E402
from sfdet.predict.writers import read_jsonl  # noqa: E402
from sfdet.toy import generate_toy_dataset  # noqa: E402
from sfdet.toy.generate import SPLITS, render_frame, sample_scene, simulate_proposals, visible_objects  # noqa: E402
from sfdet.typed_config import to_dict  # noqa: E402

SIZE, FPS = (320, 180), 15.0


class SimulatedDetector(PersonDetector):
    """The toy's simulated person detector on every frame, looked up by (video id, frame of the timestamp)."""

    name = "toy-simulated"

    def __init__(self, per_frame: dict[str, list], fps: float):
        self.per_frame, self.fps, self.calls = per_frame, fps, 0

    def _detect(self, frame_rgb, video_id, timestamp):
        self.calls += 1
        frames = self.per_frame[video_id]
        boxes, scores = frames[min(int(round(timestamp * self.fps)), len(frames) - 1)]
        height, width = frame_rgb.shape[:2]
        return boxes * np.array([width, height, width, height], np.float32), scores


class CountingDetector(PersonDetector):
    """A real person detector (e.g. a `detector.pt`), counting its calls."""

    def __init__(self, inner: PersonDetector):
        self.inner, self.calls = inner, 0
        self.name, self.score_threshold = inner.name, inner.score_threshold

    def _detect(self, frame_rgb, video_id, timestamp):
        self.calls += 1
        return self.inner._detect(frame_rgb, video_id, timestamp)

    def describe(self) -> dict:
        return self.inner.describe()


def simulate_video(video_id: str, index: int, seed: int, seconds: int) -> tuple[list, int]:
    """Per frame: (normalised boxes, scores) of the simulated detector; and the person pairs that cross
    (their visible boxes overlap with IoU >= 0.3 on some frame)."""
    width, height = SIZE
    scene = sample_scene(np.random.default_rng([seed, SPLITS.index("val"), index, 0]), video_id, width, height,
                         seconds, FPS)
    rng = np.random.default_rng([seed, 99, index])
    frames, crossing = [], set()
    for i in range(scene.n_frames):
        _, object_ids, areas = render_frame(scene, i)
        objects = visible_objects(object_ids, areas)
        rows = simulate_proposals(rng, scene, i / FPS, objects)
        boxes = np.array([r[2:6] for r in rows], np.float32).reshape(-1, 4)
        frames.append((boxes, np.array([r[6] for r in rows], np.float32)))
        persons = [o for o in objects if o.object_id < 1000 and o.visible >= 0.35]
        if len(persons) > 1:
            iou = box_iou(np.array([p.box_abs for p in persons], float), np.array([p.box_abs for p in persons], float))
            for a, b in zip(*np.nonzero(np.triu(iou >= 0.3, 1))):
                crossing.add((persons[a].object_id, persons[b].object_id))
    return frames, len(crossing)


def id_metrics(gt: pd.DataFrame, jsonl_paths: list[Path]) -> dict:
    """IDF1, ID switches and MOTA over the GT keyframes (motmetrics, IoU >= 0.5)."""
    import motmetrics as mm

    accumulators, names = [], []
    for path in jsonl_paths:
        records = read_jsonl(path)
        video_id = records[0]["video_id"]
        predicted = {round(r["timestamp"], 3): r["persons"] for r in records if r["type"] == "keyframe"}
        acc = mm.MOTAccumulator(auto_id=True)
        for timestamp, rows in gt[gt["video_id"] == video_id].groupby("timestamp"):
            people = rows.drop_duplicates("person_id")
            gt_boxes = people[["x1", "y1", "x2", "y2"]].to_numpy(float)
            persons = predicted.get(round(float(timestamp), 3), [])
            pred_boxes = np.array([p["box_norm"] for p in persons], float).reshape(-1, 4)
            iou = box_iou(gt_boxes, pred_boxes) if len(pred_boxes) else np.zeros((len(gt_boxes), 0))
            distance = np.where(iou >= 0.5, 1 - iou, np.nan)
            acc.update(people["person_id"].tolist(), [p["track_id"] for p in persons], distance)
        accumulators.append(acc)
        names.append(video_id)
    summary = mm.metrics.create().compute_many(accumulators, metrics=["idf1", "num_switches", "mota"], names=names,
                                               generate_overall=True)
    overall = summary.loc["OVERALL"]
    return {"idf1": float(overall["idf1"]), "switches": int(overall["num_switches"]), "mota": float(overall["mota"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3, help="toy val videos (default 3)")
    parser.add_argument("--seconds", type=int, default=20, help="seconds per video (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="toy generator seed (default 0)")
    parser.add_argument("--track-every", default="5,1", help="comma-separated N for the ByteTracker rows (default 5,1)")
    parser.add_argument("--keyframe-rate", type=float, default=1.0, help="keyframes per second (default 1)")
    parser.add_argument("--detector", default=None,
                        help="a detector.pt from `sfdet train-detector` instead of the simulated detector; it runs "
                             "inside the timed runs, so keyframes/s includes detection")
    parser.add_argument("--detector-threshold", type=float, default=None,
                        help="with --detector: keep boxes scoring >= this (default: the threshold stored in it)")
    parser.add_argument("--work-dir", default=None, help="where the toy set and outputs go (default: a temp dir)")
    args = parser.parse_args(argv)
    from sfdet.predict.actions import load_action_predictor
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_tracking_"))
    root = work / "toy"
    generate_toy_dataset(root, seed=args.seed, videos_train=0, videos_val=args.videos, seconds=args.seconds,
                         fps=FPS, size=SIZE, overwrite=True)
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml", [f"data.root={root}"])
    label_map = read_label_map(root / "annotations/label_map.pbtxt")
    cfg.model.num_classes = len(label_map)
    torch.manual_seed(0)
    checkpoint = save_sfdet_checkpoint(work / "model.pt", build_model(cfg.model).eval(), label_map,
                                       config=to_dict(cfg))
    gt = read_gt_csv(root / "annotations/val.csv")
    videos = sorted((root / "videos").glob("toy_val_*.mp4"))
    per_frame, crossings = {}, 0
    for index, video in enumerate(videos):
        per_frame[video.stem], crossed = simulate_video(video.stem, index, args.seed, args.seconds)
        crossings += crossed
    predictor = load_action_predictor(str(checkpoint), torch.device("cpu"), precision="fp32")
    real_detector = None
    if args.detector:
        from sfdet.persons import build_person_detector

        real_detector = build_person_detector(args.detector, score_threshold=args.detector_threshold)
        real_detector(np.zeros((SIZE[1], SIZE[0], 3), np.uint8))  # warm-up, outside the timed runs
    settings = [("keyframe IoU tracker (default)", 0)] + [
        (f"ByteTracker, --track-every {n}", int(n)) for n in args.track_every.split(",") if n.strip()]
    rows = []
    for label, every in settings:
        detector = SimulatedDetector(per_frame, FPS) if real_detector is None else CountingDetector(real_detector)
        options = PredictOptions(keyframe_rate=args.keyframe_rate, batch_size=8, progress=False, track_every=every)
        out = work / f"out_{every}"
        started = time.perf_counter()
        results = predict_videos(videos, predictor, detector, options, out_dir=out)
        seconds = time.perf_counter() - started
        keyframes = sum(r.keyframes for r in results)
        metrics = id_metrics(gt, [out / f"{v.stem}.jsonl" for v in videos])
        rows.append((label, metrics, detector.calls / keyframes, keyframes / seconds))
    boxes = len(gt.drop_duplicates(["video_id", "timestamp", "person_id"]))
    print(f"toy val: {len(videos)} videos x {args.seconds} s at {FPS:g} fps, {boxes} "
          f"GT person boxes on {gt.groupby(['video_id', 'timestamp']).ngroups} keyframes; person pairs whose boxes "
          f"overlap (IoU >= 0.3) on some frame: {crossings}; CPU threads: {torch.get_num_threads()}")
    if real_detector is None:
        print("person detector: the toy's simulated detector (boxes computed before the timed runs: keyframes/s "
              "EXCLUDES detection)")
    else:
        print(f"person detector: {args.detector} ({real_detector.describe().get('arch', real_detector.name)}, "
              f"score threshold {real_detector.score_threshold:g}), run inside the timed runs: keyframes/s "
              "INCLUDES detection")
    print()
    print("| tracker | IDF1 | ID switches | MOTA | detector calls / keyframe | keyframes/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, m, calls, rate in rows:
        print(f"| {label} | {m['idf1']:.3f} | {m['switches']} | {m['mota']:.3f} | {calls:.1f} | {rate:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
