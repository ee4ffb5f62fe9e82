"""Plain YAML configs mapped onto typed dataclasses.

A config file is a YAML mapping whose sections mirror the dataclasses below
(`model`, `data`, `train`, ...). A file may start from another one with
`_base_: relative/path.yaml` (deep-merged, the file's own keys win).
Command-line overrides are dotted `key=value` pairs (`model.alpha=4`,
`train.lr=0.1`, `data.train_jitter=[256,320]`), parsed as YAML scalars.

Every unknown key is an error naming the key and the closest valid one, and
every value is checked against the field's type, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from sfdet.errors import ConfigError

__all__ = [
    "Config",
    "load_config",
    "from_dict",
    "to_dict",
    "save_config",
    "apply_overrides",
    "parse_overrides",
]


# --------------------------------------------------------------------------
# Generic dataclass <-> dict machinery
# --------------------------------------------------------------------------


def _closest(name: str, candidates: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert `value` to the annotated type `tp`; `key` names it in errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:  # try the next alternative
                errors.append(str(exc))
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"config key '{key}': expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads "1e-7" (no dot) as a string; accept numeric strings.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = f"'{prefix}'" if prefix else "the config file"
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            valid = [f"{prefix}.{n}" if prefix else n for n in fields]
            raise ConfigError(f"unknown config key '{full}'{_closest(full, valid)}")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{prefix or cls.__name__}': {exc}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict of YAML-friendly values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------
# YAML files and overrides
# --------------------------------------------------------------------------


def _deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read a config YAML, resolving `_base_` (a path or list of paths, relative to the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: '_base_' includes itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        merged = _deep_merge(merged, read_yaml(path.parent / base, _seen + (path.resolve(),)))
    return _deep_merge(merged, data)


def parse_overrides(overrides: typing.Sequence[str]) -> list[tuple[str, Any]]:
    """['model.alpha=4', ...] -> [('model.alpha', 4), ...] (values parsed as YAML)."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. model.alpha=4")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        pairs.append((key, value))
    return pairs


def apply_overrides(data: dict, overrides: typing.Sequence[str]) -> dict:
    """Set dotted keys in a nested dict; unknown keys are caught later by `from_dict`."""
    data = copy.deepcopy(data)
    for key, value in parse_overrides(overrides):
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"override '{key}': '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


# --------------------------------------------------------------------------
# The root config
# --------------------------------------------------------------------------

from sfdet.data.config import DataConfig  # noqa: E402
from sfdet.engine.config import TrainConfig  # noqa: E402
from sfdet.models.config import ModelConfig  # noqa: E402


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
    """Write the fully-resolved config as YAML (kept with every run)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
