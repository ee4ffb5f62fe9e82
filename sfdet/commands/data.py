"""`sfdet data check [ROOT] [--config YAML] [data.key=value ...]`: the dataset pre-flight report."""

from __future__ import annotations

import argparse

from sfdet.config import Config, load_config
from sfdet.data.check import check_dataset
from sfdet.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="report videos, keyframes, classes, exclusions and proposal recall; fail when nothing lines up",
        description="Pre-flight report of an AVA-format dataset. Exits 2 with one line when nothing lines up.",
    )
    check.add_argument("--config", help="YAML config with a `data:` section (e.g. configs/toy/data.yaml)")
    check.add_argument("items", nargs="*", metavar="ROOT | key=value",
                       help="the dataset root (sets data.root) and/or dotted overrides such as data.source=frames")


def run(args: argparse.Namespace) -> int:
    overrides = [item for item in args.items if "=" in item]
    roots = [item for item in args.items if "=" not in item]
    if len(roots) > 1:
        raise ConfigError(f"give one dataset ROOT, got {len(roots)}: {' '.join(roots)}")
    if roots:
        overrides.append(f"data.root={roots[0]}")
    cfg: Config = load_config(args.config, overrides)
    check_dataset(cfg.data)
    return 0
