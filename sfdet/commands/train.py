"""`sfdet train --config CONFIG.yaml [key=value ...]`: train or fine-tune an action detector.

    sfdet train --config configs/toy/slowfast_tiny.yaml
    sfdet train --config configs/toy/slowfast_tiny.yaml train.init=run/best.pt output_dir=runs/ft
    torchrun --nproc_per_node=4 -m sfdet train --config configs/ava/slowfast_r50_8x8.yaml

The run directory (`output_dir`, default `runs/<config name>`) receives
`config.yaml` (the fully-resolved config), `metrics.jsonl`,
`checkpoints/{last,best}.pt` and TensorBoard events. Running the same command
again continues an interrupted run from `checkpoints/last.pt`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sfdet.config import load_config
from sfdet.typed_config import parse_overrides, read_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config (model/data/train sections)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted config overrides, e.g. train.lr=0.05 data.root=data/toy")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue from this checkpoint (default: the run dir's checkpoints/last.pt, if any)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in the run dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def default_output_dir(config_path: str, overrides: list[str]) -> str | None:
    """`runs/<config file stem>` unless the file or an override sets `output_dir`."""
    if "output_dir" in read_yaml(config_path) or any(k == "output_dir" for k, _ in parse_overrides(overrides)):
        return None
    return str(Path("runs") / Path(config_path).stem)


def run(args: argparse.Namespace) -> int:
    from sfdet.engine.trainer import train

    overrides = list(args.overrides)
    output_dir = default_output_dir(args.config, overrides)
    if output_dir is not None:
        overrides.append(f"output_dir={output_dir}")
    cfg = load_config(args.config, overrides)
    train(cfg, resume=args.resume, fresh=args.fresh, progress=not args.no_progress)
    return 0
