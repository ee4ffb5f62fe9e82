"""`sfdet demo`: the whole story offline, in one command (see `sfdet.demo`).

    sfdet demo                  # full demo into runs/demo, planned to fit 20 minutes (--budget)
    sfdet demo --budget 30      # plan for 30 minutes: the action model trains longer where the CPU is slow
    sfdet demo --budget 0       # no planning: the preset's fixed schedule (13 epochs)
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
    parser.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                        help="plan the run to fit MINUTES: time a few training steps first, train the action "
                             "model as many epochs as fit (at most the preset's), say up front what it takes and "
                             "what accuracy to expect (default 20 for the full demo, none with --quick; "
                             "0: no planning)")


def run(args: argparse.Namespace) -> int:
    from sfdet.demo import DEFAULT_BUDGET_MINUTES, run_demo
    from sfdet.errors import ConfigError

    budget = args.budget if args.budget is not None else (None if args.quick else DEFAULT_BUDGET_MINUTES)
    if budget is not None and budget < 0:
        raise ConfigError(f"--budget must be >= 0 minutes (0: no planning), got {budget:g}")
    run_demo(args.out, quick=args.quick, seed=args.seed, overwrite=args.overwrite, config=args.config,
             device=args.device, budget_minutes=budget or None)
    return 0
