"""`sfdet eval`: AVA frame-mAP of a prediction CSV, exactly as the official evaluator; with `--video-map`,
video-mAP (and frame-mAP on every annotated frame) against a tube GT pickle, exactly as the MultiSports
evaluation (`sfdet.evaluation.video_map`)."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from sfdet.data.ava import read_label_map
from sfdet.errors import ConfigError, DataError
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
    parser.add_argument("--classes", help="comma-separated subset of the label map to evaluate, by id or name, "
                                          "e.g. 1,2,3 or 'stand,hand wave' (a model trained with data.classes)")
    parser.add_argument("--protocol", default="activitynet", choices=PROTOCOLS,
                        help="activitynet (official, default) | pyslowfast (box-order matching) | "
                             "mmaction2-1.x (keyframes without GT ignored)")
    parser.add_argument("--out", help="folder for <pred stem>_eval.json/png (default: next to --pred; "
                                      "for a folder, <folder name>_eval.json/png beside it)")
    tubes = parser.add_argument_group(
        "video-mAP (UCF101-24 / JHMDB-21 / MultiSports)",
        "--video-map: --gt is the tube GT pickle (labels, gttubes, nframes, resolution, test_videos); keyframe "
        "detections are linked into class tubes (ACT / MultiSports linking) and scored as the MultiSports "
        "evaluation does; frame-AP at --iou on every annotated frame. Label-map names must match the GT labels.")
    tubes.add_argument("--video-map", action="store_true", help="video-mAP against a tube GT pickle")
    tubes.add_argument("--fps", type=float, help="frame rate mapping timestamps to GT frames: "
                                                 "frame = round((timestamp - time offset) * fps) + frame shift")
    tubes.add_argument("--time-offset", type=float, default=0.0, help="seconds subtracted first (default 0)")
    tubes.add_argument("--frame-shift", type=int, default=0,
                       help="added to the frame (default 0: GT frame n shown at n/fps; 1 where 1-based frame n shows "
                            "at (n-1)/fps: decoded video and sfdet's frame folders, as `sfdet data import` writes)")
    tubes.add_argument("--video-iou", default="0.2,0.5", help="comma-separated tube IoU thresholds (default 0.2,0.5)")
    tubes.add_argument("--tube-min-frames", type=int, default=15,
                       help="drop linked tubes shorter than this (MultiSports: 15)")
    tubes.add_argument("--label-mode", default="argmax", choices=("argmax", "all"),
                       help="argmax: each box links under its best class (MMAction2's MultiSports metric, "
                            "default); all: every class score it has (ACT)")


def _parse_classes(text: str | None, labelmap: str) -> list[int] | None:
    """`--classes` -> label-map ids: ids or names, comma-separated (a name with commas, as AVA's
    "open (e.g., a window, a car door)", is recognised whole)."""
    if text is None:
        return None
    from sfdet.data.labels import select_classes  # imports torch: only when --classes is given

    label_map = read_label_map(labelmap)
    names = set(label_map.values())
    parts = text.split(",")
    entries: list[str] = []
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):  # the longest run of parts that is a class name, else one part
            joined = ",".join(parts[i:j]).strip()
            if j == i + 1 or joined in names:
                break
        if joined:
            entries.append(joined)
        i = j
    if not entries:
        raise ConfigError(f"--classes {text!r}: no class given; list ids or names, e.g. --classes 1,2,3")
    return list(select_classes(label_map, entries, what="--classes", source=labelmap))


def _run_video_map(args: argparse.Namespace) -> int:
    from sfdet.evaluation.video_map import format_video_table, video_map
    from sfdet.fileio import atomic_write_text

    if args.fps is None:
        raise DataError("--video-map needs --fps (the frame rate of the GT's frame numbers)")
    try:
        ious = [float(part) for part in args.video_iou.split(",") if part.strip()]
    except ValueError:
        raise DataError(f"--video-iou expects comma-separated numbers, got {args.video_iou!r}") from None
    result = video_map(args.gt, args.pred, args.labelmap, fps=args.fps, time_offset=args.time_offset,
                       frame_shift=args.frame_shift, label_mode=args.label_mode, ious=ious,
                       len_thre=args.tube_min_frames, frame_iou=args.iou)
    notes = result.notes
    for key, text in (("unknown_class_rows", "prediction rows of classes not in the label map (ignored)"),
                      ("unknown_video_rows", "prediction rows of videos not in the GT's test list (ignored)"),
                      ("outside_frames_rows", "prediction rows outside their video's frames (ignored; check "
                                              "--fps / --time-offset / --frame-shift)")):
        if notes.get(key):
            print(f"warning: {notes[key]} {text}")
    print(format_video_table(result))
    for name, value in result.metrics().items():
        print(f"{name}=\t{value}")
    pred = Path(args.pred)
    out_dir = Path(args.out) if args.out else pred.parent
    name = pred.name if pred.is_dir() else pred.stem
    payload = {"metrics": result.metrics(), "len_thre": result.len_thre, "notes": notes,
               "tubes_per_class": {result.labels[k]: n for k, n in result.num_tubes.items()},
               "video_ap": {f"{iou:g}": {result.labels[c]: ap for c, ap in r.per_class_ap.items()}
                            for iou, r in result.video.items()},
               "frame_ap": ({result.labels[c]: ap for c, ap in result.frame.per_class_ap.items()}
                            if result.frame else None)}
    path = out_dir / f"{name}_video_map.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")
    print(f"wrote {path}")
    return 0


def _import_matplotlib() -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except Exception:  # noqa: BLE001 - write_plot imports it again and reports the problem
        pass


def run(args: argparse.Namespace) -> int:
    if args.video_map:
        return _run_video_map(args)
    # matplotlib (~0.4 s of imports, for the PNG at the end) loads on the second core while the CSVs are
    # parsed (pandas' and pyarrow's parsers release the GIL); torch is never imported by `sfdet eval`.
    preload = threading.Thread(target=_import_matplotlib, name="sfdet-eval-import-matplotlib", daemon=True)
    preload.start()
    try:
        result = frame_map(args.gt, args.pred, args.labelmap, exclusions=args.exclusions, iou=args.iou,
                           max_per_frame=args.max_per_frame, classes=_parse_classes(args.classes, args.labelmap),
                           protocol=args.protocol)
    finally:
        preload.join()
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
