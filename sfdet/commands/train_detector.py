"""`sfdet train-detector DATA --out detector.pt`: fine-tune a person detector on a dataset's GT person boxes.

From a torchvision COCO detector (`--arch NAME --weights FILE`) or, with no weights, a small
Faster R-CNN from scratch. Prints the val person AP@0.5 (VOC all-points) and writes a
self-describing checkpoint usable by `sfdet proposals --detector detector.pt` and
`sfdet predict --detector detector.pt`.
"""

from __future__ import annotations

import argparse

from sfdet.detection.data_args import add_data_arguments
from sfdet.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sfdet.detection.train_detector import DetectorTrainOptions

    defaults = DetectorTrainOptions()
    add_data_arguments(parser)
    parser.add_argument("--out", default="detector.pt", help="checkpoint to write (default detector.pt)")
    parser.add_argument("--arch", default=defaults.arch,
                        help=f"architecture: {defaults.arch} (default, from scratch) or a torchvision detection model "
                             "name such as fasterrcnn_mobilenet_v3_large_fpn (with --weights: its COCO weights)")
    parser.add_argument("--weights", default=None, help="state dict of the torchvision COCO detector named by --arch")
    parser.add_argument("--epochs", type=float, default=defaults.epochs, help=f"default {defaults.epochs:g}")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"default {defaults.batch_size}")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"SGD base LR (default {defaults.lr:g}); "
                        "use ~10x lower when fine-tuning COCO weights")
    parser.add_argument("--min-size", type=int, default=None,
                        help="resize frames to this short side (default: native, at most "
                             f"{defaults.max_native_size})")
    parser.add_argument("--score-thresh", type=float, default=defaults.score_threshold,
                        help=f"person score threshold stored in the checkpoint (default {defaults.score_threshold:g})")
    parser.add_argument("--max-iters", type=int, default=None, help="stop after this many iterations (smoke runs)")
    parser.add_argument("--no-eval", action="store_true", help="skip the val person AP")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from sfdet.detection.keyframes import data_config
    from sfdet.detection.train_detector import DetectorTrainOptions, train_detector
    from sfdet.devices import pick_device

    for name in ("epochs", "batch_size", "lr", "max_iters", "min_size"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    cfg = data_config(args.items, args.config)
    options = DetectorTrainOptions(
        arch=args.arch, weights=args.weights, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        min_size=args.min_size, score_threshold=args.score_thresh, max_iters=args.max_iters,
        evaluate=not args.no_eval, device=str(pick_device(args.device)), seed=args.seed, progress=not args.no_progress,
    )
    result = train_detector(cfg, args.out, options)
    if result.person_ap is not None:
        print(f"val person AP@0.5 (VOC all-points): {result.person_ap:.4f} on {result.val_keyframes} keyframes")
    print(f"wrote {result.out_path} ({result.iterations} iterations on {result.train_keyframes} keyframes, "
          f"{result.seconds:.0f} s); use it with `sfdet proposals DATA --detector {result.out_path}` "
          f"or `sfdet predict VIDEO --detector {result.out_path}`")
    return 0
