"""Load MMAction2 0.24.1's AVA evaluator (the reference sfdet eval must equal) by file path.

Importing `mmaction` as a package would pull in mmcv, so the two evaluator files and their
`ava_evaluation/` helpers are loaded under a stub package in `sys.modules`. The reference predates
NumPy 2 (`np.float`, `np.NAN`); its `metrics` module gets a NumPy view with those aliases.
Test/benchmark-only: install with `pip install --no-deps mmaction2==0.24.1`.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

_PACKAGE = "_sfdet_reference_mmaction"


class _NumpyWithOldAliases(types.ModuleType):
    """numpy, plus the aliases removed since the reference was written."""

    float = float
    NAN = np.nan
    bool = np.bool_

    def __getattr__(self, name):
        return getattr(np, name)


def reference_dir() -> Path | None:
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "core" / "evaluation"
    return path if (path / "ava_utils.py").is_file() else None


def _load(name: str, path: Path, package: str | None = None):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=None)
    module = importlib.util.module_from_spec(spec)
    if package is not None:
        module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_ava_utils():
    """The reference `ava_utils` module (call `ava_eval(pred_csv, "mAP", label_map, gt_csv, excl, verbose=True)`)."""
    if f"{_PACKAGE}.ava_utils" in sys.modules:
        return sys.modules[f"{_PACKAGE}.ava_utils"]
    root = reference_dir()
    if root is None:
        raise ImportError("mmaction2 0.24.1 is not installed (pip install --no-deps mmaction2==0.24.1)")
    for package, path in ((_PACKAGE, root), (f"{_PACKAGE}.ava_evaluation", root / "ava_evaluation")):
        stub = types.ModuleType(package)
        stub.__path__ = [str(path)]
        sys.modules[package] = stub
    sub = f"{_PACKAGE}.ava_evaluation"
    for name in ("standard_fields", "np_box_ops", "np_box_list", "metrics", "per_image_evaluation",
                 "object_detection_evaluation"):
        module = _load(f"{sub}.{name}", root / "ava_evaluation" / f"{name}.py", package=sub)
        setattr(sys.modules[sub], name, module)
        if name == "metrics":
            module.np = _NumpyWithOldAliases("numpy")
    return _load(f"{_PACKAGE}.ava_utils", root / "ava_utils.py", package=_PACKAGE)
