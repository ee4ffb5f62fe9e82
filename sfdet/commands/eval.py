"""`sfdet eval`: AVA frame-mAP of a prediction CSV, exactly as the official evaluator."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfdet.errors import DataError
from sfdet.evaluation import PROTOCOLS, frame_map, metric_names
from sfdet.evaluation.report import format_table, input_warnings, write_json, write_plot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="ground-truth CSV (video_id,timestamp,x1,y1,x2,y2,action_id[,person_id])")
    parser.add_argument("--pred", required=True, help="prediction CSV (video_id,timestamp,x1,y1,x2,y2,action_id,score)")
    parser.add_argument("--labelmap", required=True, help="label map .pbtxt: the classes evaluated")
    parser.add_argument("--exclusions", help="excluded keyframes CSV (video_id,timestamp)")
    parser.add_argument("--max-per-frame", type=int, help="keep the N best detections per keyframe (2019 challenge: 50)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    parser.add_argument("--classes", help="comma-separated subset of label-map ids to evaluate, e.g. 1,2,3")
    parser.add_argument("--protocol", default="activitynet", choices=PROTOCOLS,
                        help="activitynet (official, default) | pyslowfast (box-order matching) | "
                             "mmaction2-1.x (keyframes without GT ignored)")
    parser.add_argument("--out", help="folder for <pred stem>_eval.json/png (default: next to --pred)")


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
    for line in input_warnings(result):
        print(f"warning: {line}")
    print(format_table(result))
    map_name, _ = metric_names(result.iou)
    print(f"{map_name}=\t{result.map}")
    pred = Path(args.pred)
    out_dir = Path(args.out) if args.out else pred.parent
    json_path = write_json(result, out_dir / f"{pred.stem}_eval.json")
    png_path = write_plot(result, out_dir / f"{pred.stem}_eval.png")
    print(f"wrote {json_path} and {png_path}")
    return 0
