"""`sfdet demo`: the whole story offline, in one command (see `sfdet.demo`).

    sfdet demo                  # full demo into runs/demo (about 20 minutes on 2 CPU cores)
    sfdet demo --quick          # the same story on tiny data in a few minutes (no accuracy target)

Re-running the same command resumes: finished stages are skipped.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and a few iterations per model: a smoke run of every stage (no accuracy target)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of every model (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over: remove the demo's previous outputs in --out (default: resume)")
    parser.add_argument("--config", default=None,
                        help="action model config (default configs/toy/slowfast_tiny.yaml of this checkout)")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                        help="where the models run (default auto: CUDA when available)")


def run(args: argparse.Namespace) -> int:
    from sfdet.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, overwrite=args.overwrite, config=args.config,
             device=args.device)
    return 0
