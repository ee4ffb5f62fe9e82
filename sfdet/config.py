"""The root config: sfdet's sections composed into one typed `Config`, read from YAML + overrides.

A config file is a YAML mapping whose sections mirror `Config` (`model`, `data`, `train`,
`output_dir`, `seed`). A file may start from another one with `_base_: relative/path.yaml`
(deep-merged, the file's own keys win). Command-line overrides are dotted `key=value` pairs
(`model.alpha=4`, `train.lr=0.1`, `data.train_jitter=[256,320]`), parsed as YAML scalars.

Each section's owner defines its dataclass (`sfdet.models.config.ModelConfig`,
`sfdet.data.config.DataConfig`, `sfdet.engine.config.TrainConfig`); the generic machinery
(types, unknown-key hints, `_base_`, overrides) is `sfdet.typed_config`. Importing this module
loads neither torch nor PyAV.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sfdet.data.config import DataConfig
from sfdet.engine.config import TrainConfig
from sfdet.models.config import ModelConfig
from sfdet.typed_config import apply_overrides, from_dict, read_yaml, to_dict

__all__ = ["Config", "load_config", "save_config"]


@dataclass
class Config:
    """Everything a run needs; `sfdet train --config X.yaml key=value ...` fills it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs/default"
    seed: int = 0


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = (), cls: type = Config) -> Any:
    """YAML file (optional) + dotted overrides -> validated dataclass."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the fully-resolved config as YAML (kept with every run), atomically."""
    from sfdet.fileio import atomic_write_text  # here: sfdet.fileio loads torch, reading a config does not

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
