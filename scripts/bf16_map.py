"""Does bf16 inference cost accuracy? Val frame-mAP of one trained model, predicted in fp32 and in bf16.

    .venv/bin/python scripts/bf16_map.py --weights runs/toy/best.pt --data data/toy [--device cpu]

Runs `sfdet predict` (library calls) over every val video of an AVA-format dataset with its val
proposals (`data.val_proposals`, cut at `data.detection_score_thresh`, as validation does), once per
precision, scores each CSV with `frame_map` and prints a markdown table with the difference in
points and the time the action model took. bf16 is the `--precision bf16` path: weights cast once,
RoI head in float32 (`sfdet.models.inference`); on a CPU without AVX512-BF16/AMX it is slow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sfdet.data import ava  # noqa: E402
from sfdet.data.dataset import find_video  # noqa: E402
from sfdet.devices import pick_device  # noqa: E402
from sfdet.evaluation import frame_map  # noqa: E402
from sfdet.persons import PrecomputedDetector  # noqa: E402
from sfdet.predict.actions import load_action_predictor  # noqa: E402
from sfdet.predict.pipeline import PredictOptions, predict_videos  # noqa: E402

MAX_GAP_POINTS = 0.5


def predict_split(weights: str, data_root: Path, precision: str, device, out: Path) -> tuple[Path, float]:
    """Predictions CSV of every val video, and the seconds the action model took."""
    predictor = load_action_predictor(weights, device, precision=precision)
    cfg = predictor.cfg  # the clip settings stored with the checkpoint; its files are read under --data
    cfg.root = str(data_root)
    gt_path, _, proposals_path = cfg.split_files("val")
    video_ids = list(dict.fromkeys(ava.read_gt_csv(gt_path)["video_id"].astype(str)))
    videos = [find_video(cfg, v) for v in video_ids]
    detector = PrecomputedDetector(proposals_path, score_threshold=cfg.detection_score_thresh)
    results = predict_videos(videos, predictor, detector, PredictOptions(progress=False), out_dir=out / precision)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise SystemExit(f"predict failed on {failed[0].video}: {failed[0].error}")
    csv = out / f"val_predictions_{precision}.csv"
    csv.write_text("".join((out / precision / f"{v.stem}.csv").read_text() for v in videos))
    return csv, sum(r.times.action for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="an sfdet checkpoint trained on --data (best.pt)")
    parser.add_argument("--data", required=True, help="the AVA-format dataset root it was trained on")
    parser.add_argument("--out", default="runs/bf16_map")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    annotations = data / "annotations"
    rows = {}
    for precision in ("fp32", "bf16"):
        csv, action_s = predict_split(args.weights, data, precision, device, out)
        result = frame_map(annotations / "val.csv", csv, annotations / "label_map.pbtxt",
                           exclusions=annotations / "val_excluded_timestamps.csv")
        rows[precision] = {"map": result.map, "action_seconds": action_s}
    gap = 100 * (rows["bf16"]["map"] - rows["fp32"]["map"])
    lines = ["| precision | val frame-mAP | action model (s) |", "|---|---|---|"]
    lines += [f"| {p} | {r['map']:.4f} | {r['action_seconds']:.1f} |" for p, r in rows.items()]
    lines.append(f"\nbf16 - fp32: {gap:+.2f} mAP points on {device.type} (target: within {MAX_GAP_POINTS})")
    print("\n".join(lines))
    (out / "bf16_map.json").write_text(json.dumps({"rows": rows, "gap_points": gap, "device": device.type}, indent=2))
    return 0 if abs(gap) <= MAX_GAP_POINTS else 1


if __name__ == "__main__":
    sys.exit(main())
