"""`sfdet plot RUN_DIR`: PNG curves (loss, learning rate, val mAP) of a training run's metrics log."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="output directory of `sfdet train` (holds metrics.jsonl)")
    parser.add_argument("--out", help="PNG path (default: RUN_DIR/curves.png)")


def run(args: argparse.Namespace) -> int:
    from sfdet.engine.plots import plot_run

    out = plot_run(args.run_dir, args.out)
    print(f"wrote {out}")
    return 0
