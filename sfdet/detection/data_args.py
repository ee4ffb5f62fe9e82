"""The dataset arguments `sfdet proposals` and `sfdet train-detector` share: `DATA`, `--config`, `data.key=value`.

`add_data_arguments(parser)` declares them; `sfdet.detection.keyframes.data_config(args.items, args.config)`
turns them into a DataConfig whose root exists.
"""

from __future__ import annotations

import argparse


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """`DATA` / `--config` / `data.key=value` -> `args.items`, `args.config`."""
    parser.add_argument("items", nargs="*", metavar="DATA | key=value",
                        help="dataset root laid out like `sfdet toy-data`'s (sets data.root) and/or dotted "
                             "overrides such as data.source=frames")
    parser.add_argument("--config", help="YAML config with a `data:` section (e.g. configs/toy/data.yaml)")
