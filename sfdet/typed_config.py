"""Typed configs: YAML mappings and dotted `key=value` overrides onto nested dataclasses.

A leaf module (imports only PyYAML and `sfdet.errors`): it knows nothing about sfdet's own
sections. `sfdet.config` composes those (`model`, `data`, `train`) into `Config`; any
dataclass works here.

- `read_yaml(path)`: a YAML mapping; `_base_: relative/path.yaml` (or a list) is read first and
  deep-merged under the file's own keys.
- `parse_overrides(["model.alpha=4"])` -> `[("model.alpha", 4)]` (values parsed as YAML scalars);
  `apply_overrides(data, overrides)` sets them in a nested dict.
- `from_dict(cls, data)`: a validated dataclass. Every unknown key is a `ConfigError` naming the
  key and a hint: the same key name in another section (`model.init` -> `train.init`), else the
  closest key of its own section. Every value is checked against the field's type, so a typo
  never silently falls back to a default.
- `to_dict(obj)`: the nested dataclass as plain YAML-friendly values.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from sfdet.errors import ConfigError

__all__ = ["from_dict", "to_dict", "read_yaml", "parse_overrides", "apply_overrides", "key_paths"]


# --------------------------------------------------------------------------
# Unknown keys and their hints
# --------------------------------------------------------------------------


class _UnknownKey(ConfigError):
    """An unknown key; the outermost `from_dict` call words the hint with the whole tree in view."""

    def __init__(self, key: str, section_keys: list[str]):
        self.key = key
        self.section_keys = section_keys
        super().__init__(f"unknown config key '{key}'{_hint(_closest(key, section_keys, SECTION_CUTOFF))}")


SECTION_CUTOFF = 0.6  # difflib ratio of key names (without their section) for a hint from the key's own section
TREE_CUTOFF = 0.8  # ... and from any other section


def _final(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _hint(paths: typing.Sequence[str]) -> str:
    quoted = " or ".join("'" + path + "'" for path in paths)
    return f" (did you mean {quoted}?)" if paths else ""


def _closest(key: str, paths: typing.Sequence[str], cutoff: float) -> list[str]:
    """The paths whose last name is the closest to `key`'s last name (ratio >= cutoff)."""
    match = difflib.get_close_matches(_final(key), sorted({_final(p) for p in paths}), n=1, cutoff=cutoff)
    return [p for p in paths if match and _final(p) == match[0]]


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass `tp` names, also through `X | None`; None for anything else."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        return found[0] if len(found) == 1 else None
    return None


def key_paths(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of dataclass `cls` (sections and their fields, depth first)."""
    hints = typing.get_type_hints(cls)
    paths = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = f"{prefix}.{f.name}" if prefix else f.name
        paths.append(path)
        inner = _dataclass_of(hints[f.name])
        if inner is not None:
            paths.extend(key_paths(inner, path))
    return paths


def _unknown_key_message(error: _UnknownKey, cls: type, prefix: str) -> str:
    """The hint for an unknown key, first found of: the same name in another section
    (`model.init` -> `train.init`), the closest name in its own section, a close name elsewhere."""
    tree = [p for p in key_paths(cls, prefix) if p != error.key]
    paths = (
        [p for p in tree if _final(p) == _final(error.key)]
        or _closest(error.key, error.section_keys, SECTION_CUTOFF)
        or _closest(error.key, tree, TREE_CUTOFF)
    )
    return f"unknown config key '{error.key}'{_hint(paths)}"


# --------------------------------------------------------------------------
# Generic dataclass <-> dict machinery
# --------------------------------------------------------------------------


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
        alternatives = [arg for arg in args if arg is not type(None)]
        for arg in alternatives:
            try:
                return _coerce(value, arg, key)
            except _UnknownKey:
                if len(alternatives) == 1:  # `Section | None`: the unknown key is the whole story
                    raise
            except ConfigError:  # try the next alternative
                pass
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, got {value!r}")
        return _from_dict(tp, value, prefix=key)
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


def _from_dict(cls: type, data: dict, prefix: str) -> Any:
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
            raise _UnknownKey(full, [f"{prefix}.{n}" if prefix else n for n in fields])
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{prefix or cls.__name__}': {exc}") from None
    return obj


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys.

    `prefix` names `cls` in errors (`from_dict(ModelConfig, d, prefix="model")` reports `model.x`).
    """
    try:
        return _from_dict(cls, data, prefix)
    except _UnknownKey as error:
        raise ConfigError(_unknown_key_message(error, cls, prefix)) from None


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
