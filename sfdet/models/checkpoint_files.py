"""Reading checkpoint files safely and telling their format from their content.

Formats are recognised from the file's CONTENT, never its extension:

  sfdet         {"format": "sfdet", "version": 1, "model_config", "label_map", "model_state", "source",
                 "recipe"}  (a bare sfdet `state_dict()` is read too, its architecture inferred)
  pytorchvideo  {"model_state": {"model.blocks.0.multipathway_blocks.0.conv.weight", ...}}
  pyslowfast    {"epoch", "model_state": {"s1.pathway0_stem.conv.weight", ...}, "optimizer_state", "cfg"}
  caffe2        {"blobs": {"conv1_w": ndarray, ...}}  (a Python-2 pickle)
  torchvision   a 2D ImageNet ResNet state dict, inflated into the Slow pathway (see inflate.py)

Safe reading: PyTorch files are read with `sfdet.fileio.load_torch_file` (`weights_only=True`).
PySlowFast files may hold a pickled yacs `CfgNode`, which weights_only refuses;
those, and caffe2 pickles, are read with a restricted unpickler that builds
only tensors, numpy arrays and plain containers (a yacs config becomes a plain
dict) and refuses every other class, so reading a checkpoint never runs code.

`to_sfdet_state` renames a file's tensors to sfdet's names and returns what the
file says beyond its tensors (ModelConfig fields, clip settings).
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

import torch

from sfdet.errors import CheckpointError
from sfdet.fileio import load_torch_file
from sfdet.models.checkpoint_arch import PYSLOWFAST_NONLOCAL, pyslowfast_cfg_hints
from sfdet.models.inflate import is_torchvision_resnet_state
from sfdet.models.pyslowfast_keys import caffe2_to_sfdet, is_pyslowfast_state, pyslowfast_to_sfdet
from sfdet.models.pytorchvideo_keys import is_pytorchvideo_state, pytorchvideo_to_sfdet

FORMATS = ("sfdet", "pytorchvideo", "pyslowfast", "caffe2", "torchvision")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) layout
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of torch.save's legacy layout
_SHOWN = 5  # top-level keys listed in an error line


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, at most `limit` characters."""
    text = str(exc).strip().splitlines()
    text = text[0] if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# Reading files safely
# ---------------------------------------------------------------------------


class _ForeignConfig(dict):
    """Stands in for a pickled yacs `CfgNode` (a dict subclass): keeps the items, runs no code."""


class _RefusedGlobal(pickle.UnpicklingError):
    pass


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("builtins", "dict"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # numpy arrays pickled by Python 3 carry their bytes this way
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds tensors, numpy arrays and containers only; a yacs CfgNode becomes `_ForeignConfig`."""

    def find_class(self, module: str, name: str):
        module = _PYTHON2_MODULES.get(module, module)  # protocol-2 pickles (torch.save, caffe2) use Python 2 names
        if module.startswith("yacs") and name == "CfgNode":
            return _ForeignConfig
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"it contains a pickled {module}.{name}, which sfdet does not unpickle")


# `torch.load(pickle_module=...)` wants something module-like with `Unpickler` and `load`.
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="sfdet_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda f, **kwargs: _RestrictedUnpickler(f, **kwargs).load(),
)


def _plain(obj: Any) -> Any:
    """Recursively turn `_ForeignConfig` nodes into plain dicts."""
    if isinstance(obj, dict):
        plain = {k: _plain(v) for k, v in obj.items()}
        return plain if isinstance(obj, _ForeignConfig) or type(obj) is dict else type(obj)(plain)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _torch_load(path: Path) -> Any:
    """A torch.save file: tensors and containers through `load_torch_file`; if that refuses the file
    (objects beyond tensors, e.g. a PySlowFast yacs cfg), through the restricted unpickler."""
    try:
        return load_torch_file(path)
    except CheckpointError:
        pass  # a weights_only refusal or a damaged file: the restricted unpickler tells which
    try:
        return _plain(torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE))
    except _RefusedGlobal as exc:
        raise CheckpointError(f"{path}: not loaded because {exc}; save its tensors alone with torch.save") from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged files
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({first_line(exc)})") from None


def read_checkpoint_file(path: str | Path) -> Any:
    """The Python object stored in a checkpoint file, read without running code from it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory, expected a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
        if not head:
            raise CheckpointError(f"{path} is empty (an interrupted download or copy?)")
        if head == _ZIP_MAGIC:
            return _torch_load(path)
        f.seek(0)
        try:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
        except _RefusedGlobal as exc:
            raise CheckpointError(f"{path}: not loaded because {exc}") from None
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, MemoryError, UnicodeDecodeError) as exc:
            if isinstance(exc, EOFError) or "truncated" in str(exc):
                raise CheckpointError(f"{path}: truncated file (an interrupted download or copy?)") from None
            raise CheckpointError(f"{path}: not a checkpoint (neither a PyTorch file nor a pickle: "
                                  f"{first_line(exc)})") from None
    if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:  # torch.save(..., _use_new_zipfile_serialization=False)
        return _torch_load(path)
    return _plain(obj)


# ---------------------------------------------------------------------------
# Format detection and conversion to sfdet names
# ---------------------------------------------------------------------------


def state_dict_of(obj: Any) -> dict | None:
    """The tensors of a loaded checkpoint (under model_state / state_dict / model, or the dict itself)."""
    if not isinstance(obj, dict):
        return None
    for key in ("model_state", "state_dict", "model"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    return None


def detect_format(obj: Any, source: str) -> str:
    """Which of FORMATS `obj` (a loaded checkpoint) is; CheckpointError if none."""
    if isinstance(obj, dict) and obj.get("format") == "sfdet":
        return "sfdet"
    if isinstance(obj, dict) and isinstance(obj.get("blobs"), dict):
        return "caffe2"
    state = state_dict_of(obj)
    if not state:
        what = f"top-level keys: {', '.join(map(str, list(obj)[:_SHOWN]))}" if isinstance(obj, dict) and obj \
            else f"a {type(obj).__name__}"
        raise CheckpointError(f"{source}: not a model checkpoint (no state dict found; {what})")
    if is_pytorchvideo_state(state):
        return "pytorchvideo"
    if is_pyslowfast_state(state):
        return "pyslowfast"
    if is_torchvision_resnet_state(state):
        return "torchvision"
    if any(str(key).startswith("backbone.") for key in state):
        return "sfdet"
    first = ", ".join(map(str, list(state)[:3]))
    raise CheckpointError(f"{source}: unrecognised state dict (first keys: {first}); expected a PyTorchVideo, "
                          f"PySlowFast, caffe2, torchvision ResNet or sfdet checkpoint of a SlowFast/Slow model")


def to_sfdet_state(obj: Any, fmt: str, source: str) -> tuple[dict, list[str], dict, dict]:
    """(sfdet-named state dict, source keys with no sfdet name, ModelConfig hints, clip fields).

    Clip fields: what the file says about its clips, in `ClipRecipe` field names (a PySlowFast
    `cfg` DATA section; the "input" of sfdet files written by `sfdet convert` before clip recipes).
    Not for "torchvision": inflation needs the target model (see `load_checkpoint`).
    """
    if fmt == "caffe2":
        blobs = obj.get("blobs") if isinstance(obj, dict) else None
        if not isinstance(blobs, dict):
            raise CheckpointError(f"{source}: not a caffe2 checkpoint (no 'blobs' dict)")
        state, unknown = caffe2_to_sfdet(blobs)
        return state, unknown, dict(PYSLOWFAST_NONLOCAL), {}
    state = state_dict_of(obj)
    if state is None:
        raise CheckpointError(f"{source}: no state dict found for format '{fmt}'")
    if fmt == "sfdet":
        hints = (obj.get("model_config") or {}) if obj.get("format") == "sfdet" else {}
        if not isinstance(hints, dict):
            raise CheckpointError(f"{source}: its 'model_config' is not a mapping")
        inputs = obj.get("input") if isinstance(obj.get("input"), dict) else {}
        return dict(state), [], dict(hints), dict(inputs)
    if fmt == "pyslowfast":
        converted, unknown = pyslowfast_to_sfdet(state)
        fields, inputs = pyslowfast_cfg_hints(obj.get("cfg"))
        return converted, unknown, {**PYSLOWFAST_NONLOCAL, **fields}, inputs
    if fmt == "pytorchvideo":
        # Unknown keys are kept under their own names, so they show up as unexpected.
        return pytorchvideo_to_sfdet(state), [], {}, {}
    raise CheckpointError(f"{source}: cannot convert format '{fmt}' here")

