"""Data config (the `data:` section): where the AVA-format files are and how clips are made."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    """Paths are relative to `root` unless absolute."""

    root: str = "data/ava"
