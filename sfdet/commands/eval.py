"""`sfdet eval`: AVA frame-mAP of a prediction CSV, exactly as the official evaluator."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfdet.errors import DataError
from sfdet.evaluation import PROTOCOLS, frame_map, metric_names
from sfdet.evaluation.report import format_table, input_warnings, no_gt_left, write_json, write_plot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="ground-truth CSV (video_id,timestamp,x1,y1,x2,y2,action_id[,person_id])")
    parser.add_argument("--pred", required=True,
                        help="prediction CSV (video_id,timestamp,x1,y1,x2,y2,action_id,score), or a folder: its *.csv "
                             "files but *.tracks.csv (what `sfdet predict` writes), read in name order")
    parser.add_argument("--labelmap", required=True, help="label map .pbtxt: the classes evaluated")
    parser.add_argument("--exclusions", help="excluded keyframes CSV (video_id,timestamp)")
    parser.add_argument("--max-per-frame", type=int, help="keep the N best detections per keyframe (2019 challenge: 50)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    parser.add_argument("--classes", help="comma-separated subset of label-map ids to evaluate, e.g. 1,2,3")
    parser.add_argument("--protocol", default="activitynet", choices=PROTOCOLS,
                        help="activitynet (official, default) | pyslowfast (box-order matching) | "
                             "mmaction2-1.x (keyframes without GT ignored)")
    parser.add_argument("--out", help="folder for <pred stem>_eval.json/png (default: next to --pred; "
                                      "for a folder, <folder name>_eval.json/png beside it)")


def _parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DataError(f"--classes expects comma-separated integer ids, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    result = frame_map(args.gt, args.pred, args.labelmap, exclusions=args.exclusions, iou=args.iou,
                       max_per_frame=args.max_per_frame, classes=_parse_classes(args.classes),
                       protocol=args.protocol)
    pred = Path(args.pred)
    if pred.is_dir():
        files = result.notes.get("pred_files", [])
        shown = ", ".join(Path(f).name for f in files[:5]) + (", ..." if len(files) > 5 else "")
        print(f"read {len(files)} prediction file(s) from {pred} (*.csv, not *.tracks.csv): {shown}")
    empty = no_gt_left(result, args.gt)
    if empty:
        raise DataError(empty)
    for line in input_warnings(result):
        print(f"warning: {line}")
    print(format_table(result))
    map_name, _ = metric_names(result.iou)
    print(f"{map_name}=\t{result.map}")
    out_dir = Path(args.out) if args.out else pred.parent
    name = pred.name if pred.is_dir() else pred.stem
    json_path = write_json(result, out_dir / f"{name}_eval.json")
    png_path = write_plot(result, out_dir / f"{name}_eval.png")
    print(f"wrote {json_path} and {png_path}")
    return 0
