"""Load MMAction2 1.x's MultiSports evaluation (`mmaction/evaluation/functional/multisports_utils.py`) by path.

Test-only reference for `sfdet.evaluation.tubes` / `video_map`: numbers are compared, no code is taken.
The file is looked for at $SFDET_MULTISPORTS_REFERENCE, then `.venv/reference/mmaction2-1.2.0/` (`make test`
extracts it there from the mmaction2==1.2.0 wheel, `pip download --no-deps`). Its two logging/progress imports
(`mmengine.logging.MMLogger`, `rich.progress.track`) are stubbed. It predates NumPy 2.x's refusal to convert a
1-element array with `int()`, so its module-level `int` is one that takes `.item()` first (same value).

`load(fixed=True)` corrects the one name in `Dataset.get_vid_dets` that gives every detection the score of the
last detection of the input (`frm_det[3]` -> `frm_dets[3]`); `fixed=False` is the file as shipped.
"""

from __future__ import annotations

import builtins
import os
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_BUG, _FIX = "frm_det[3]", "frm_dets[3]"


def reference_file() -> Path | None:
    candidates = [os.environ.get("SFDET_MULTISPORTS_REFERENCE"),
                  ROOT / ".venv" / "reference" / "mmaction2-1.2.0" / "multisports_utils.py"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class _Logger:
    def info(self, *args, **kwargs):
        pass


def _stub_modules() -> dict:
    logging = types.ModuleType("mmengine.logging")
    logging.MMLogger = type("MMLogger", (), {"get_current_instance": staticmethod(lambda: _Logger())})
    progress = types.ModuleType("rich.progress")
    progress.track = lambda sequence, description=None, **kwargs: sequence
    return {"mmengine": types.ModuleType("mmengine"), "mmengine.logging": logging,
            "rich": types.ModuleType("rich"), "rich.progress": progress}


def _int(value=0, *args):
    if isinstance(value, np.ndarray):
        value = value.item()
    return builtins.int(value, *args)


_CACHE: dict[bool, types.ModuleType] = {}


def load(fixed: bool = True) -> types.ModuleType:
    if fixed in _CACHE:
        return _CACHE[fixed]
    path = reference_file()
    if path is None:
        raise ImportError("MultiSports reference not found: pip download --no-deps mmaction2==1.2.0 and extract "
                          "mmaction/evaluation/functional/multisports_utils.py to .venv/reference/mmaction2-1.2.0/")
    source = path.read_text()
    if source.count(_BUG) != 1:
        raise ImportError(f"{path}: expected one `{_BUG}` in Dataset.get_vid_dets")
    if fixed:
        source = source.replace(_BUG, _FIX)
    module = types.ModuleType(f"_sfdet_multisports_reference_{'fixed' if fixed else 'shipped'}")
    module.__file__ = str(path)
    module.int = _int
    saved = {name: sys.modules.get(name) for name in _stub_modules()}
    sys.modules.update(_stub_modules())
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    _CACHE[fixed] = module
    return module
