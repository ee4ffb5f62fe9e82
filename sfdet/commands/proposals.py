"""`sfdet proposals DATA --detector NAME|detector.pt --out proposals.csv`: person boxes for every keyframe of a dataset.

Writes the `ava_*_predicted_boxes.csv` layout (and with --pkl MMAction2's proposal pickle), then
prints the recall of the GT person boxes at IoU 0.5 and 0.9.
"""

from __future__ import annotations

import argparse

from sfdet.detection.data_args import add_data_arguments
from sfdet.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--detector", required=True,
                        help="a detector.pt from `sfdet train-detector`, or a torchvision detection model name "
                             "(e.g. fasterrcnn_resnet50_fpn_v2), torchvision:NAME or detectron2:CONFIG")
    parser.add_argument("--detector-weights", default="DEFAULT",
                        help="weights of a named detector (default: torchvision's COCO weights from the torch hub cache)")
    parser.add_argument("--out", required=True, help="output CSV (AVA predicted-boxes layout)")
    parser.add_argument("--pkl", default=None, help="also write MMAction2's proposal pickle here")
    parser.add_argument("--split", default="val", choices=["train", "val"], help="which split's keyframes (default val)")
    parser.add_argument("--score-thresh", type=float, default=0.05,
                        help="keep boxes scoring >= this (default 0.05; training configs cut again, e.g. at 0.8)")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from sfdet.data import ava
    from sfdet.detection.keyframes import data_config
    from sfdet.detection.proposals import make_proposals, report_lines
    from sfdet.devices import pick_device
    from sfdet.persons import build_person_detector

    if not 0.0 <= args.score_thresh <= 1.0:
        raise ConfigError(f"--score-thresh must be in [0, 1], got {args.score_thresh}")
    cfg = data_config(args.items, args.config)
    detector = build_person_detector(args.detector, args.detector_weights, args.score_thresh, pick_device(args.device))
    result = make_proposals(cfg, args.split, detector, progress=not args.no_progress)
    ava.write_proposals_csv(args.out, result.proposals)
    written = [args.out]
    if args.pkl:
        ava.write_proposals_pkl(args.pkl, result.proposals)
        written.append(args.pkl)
    print(f"{detector.name}: {len(result.proposals)} boxes (score >= {args.score_thresh:g}) on {result.detected} of "
          f"{result.keyframes} {args.split} keyframes -> {', '.join(written)}")
    for line in report_lines(result):
        print(line)
    return 0
