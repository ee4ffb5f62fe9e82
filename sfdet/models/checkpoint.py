"""Load any published SlowFast/Slow AVA checkpoint into an sfdet model; save sfdet's own format.

Formats are recognised from the file's CONTENT, never its extension:

  sfdet         {"format": "sfdet", "version": 1, "model_config", "label_map", "model_state", "source"}
                (a bare sfdet `state_dict()` is read too, its architecture inferred)
  pytorchvideo  {"model_state": {"model.blocks.0.multipathway_blocks.0.conv.weight", ...}}
  pyslowfast    {"epoch", "model_state": {"s1.pathway0_stem.conv.weight", ...}, "optimizer_state", "cfg"}
  caffe2        {"blobs": {"conv1_w": ndarray, ...}}  (a Python-2 pickle)
  torchvision   a 2D ImageNet ResNet state dict, inflated into the Slow pathway (see inflate.py)

Safe reading: PyTorch files are read with `torch.load(weights_only=True)`.
PySlowFast files may hold a pickled yacs `CfgNode`, which weights_only refuses;
those, and caffe2 pickles, are read with a restricted unpickler that builds
only tensors, numpy arrays and plain containers (a yacs config becomes a plain
dict) and refuses every other class, so reading a checkpoint never runs code.

The architecture comes from, in order: the `cfg` argument, the registry entry,
the config stored in an sfdet checkpoint, or inference from the tensor shapes
(depth from the block counts, widths, kernels, non-local positions, classes)
plus what a PySlowFast `cfg` says about the rest (alpha, RoIAlign, ...).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from sfdet.config import from_dict, to_dict
from sfdet.errors import CheckpointError, ConfigError
from sfdet.models import registry
from sfdet.models.config import STAGE_DEPTHS, ModelConfig
from sfdet.models.detector import build_model
from sfdet.models.inflate import inflate_resnet2d, is_torchvision_resnet_state, torchvision_depth
from sfdet.models.pyslowfast_keys import caffe2_to_sfdet, is_pyslowfast_state, pyslowfast_to_sfdet
from sfdet.models.pytorchvideo_keys import is_pytorchvideo_state, pytorchvideo_to_sfdet

FORMATS = ("sfdet", "pytorchvideo", "pyslowfast", "caffe2", "torchvision")
SFDET_FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) layout
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of torch.save's legacy layout
_SHOWN = 5  # keys listed per category in an error line


@dataclass
class CheckpointInfo:
    """What `load_checkpoint` read and how it fitted the model."""

    source: str  # the file read (after downloading, for a registry name)
    format: str  # one of FORMATS
    model_config: ModelConfig
    label_map: dict[int, str] | None
    registry_entry: registry.PublishedModel | None = None
    missing: list[str] = field(default_factory=list)  # model tensors the file lacks (left at their init)
    unexpected: list[str] = field(default_factory=list)  # file tensors with no place in the model
    mismatched: list[str] = field(default_factory=list)  # "key: file (..) vs model (..)"
    # How the model's clips are made, in `DataConfig` field names (num_frames, sampling_rate, slow_sampling,
    # test_short_side, mean, std, video_resample_fps), as far as the registry entry or the file says
    # (sfdet checkpoints keep them under "input", written by `sfdet convert`; PySlowFast files in their `cfg`).
    input_hints: dict = field(default_factory=dict)
    # The resolved training config (`Config` as a plain dict) that `sfdet train` stores in its checkpoints
    # under "config"; None for every other file.
    train_config: dict | None = None

    @property
    def fits_exactly(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def skipped_summary(self) -> str:
        """One line about what did not load ("" if everything did)."""
        problems = (("missing", self.missing), ("unexpected", self.unexpected), ("mis-shaped", self.mismatched))
        return "; ".join(_describe(what, keys) for what, keys in problems if keys)


def _describe(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    more = f", ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f"{len(keys)} {what} ({shown}{more})"


def _first_line(exc: BaseException, limit: int = 160) -> str:
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
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # holds objects beyond tensors (e.g. a PySlowFast yacs cfg): try the restricted unpickler
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged files
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({_first_line(exc)})") from None
    try:
        return _plain(torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE))
    except _RefusedGlobal as exc:
        raise CheckpointError(f"{path}: not loaded because {exc}; save its tensors alone with torch.save") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({_first_line(exc)})") from None


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
                                  f"{_first_line(exc)})") from None
    if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:  # torch.save(..., _use_new_zipfile_serialization=False)
        return _torch_load(path)
    return _plain(obj)


# ---------------------------------------------------------------------------
# Format detection and conversion to sfdet names
# ---------------------------------------------------------------------------


def _state_dict_of(obj: Any) -> dict | None:
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
    state = _state_dict_of(obj)
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


def _pyslowfast_cfg_hints(cfg: Any) -> tuple[dict, dict]:
    """(ModelConfig fields, input hints) from a PySlowFast `cfg` (a YAML dump or a dict); {} where absent."""
    if isinstance(cfg, str):
        try:
            cfg = yaml.safe_load(cfg)
        except yaml.YAMLError:
            return {}, {}
    if not isinstance(cfg, dict):
        return {}, {}

    def get(*path: str) -> Any:
        node = cfg
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    fields, inputs = {}, {}
    candidates = {
        "alpha": get("SLOWFAST", "ALPHA"),
        "roi_aligned": get("DETECTION", "ALIGNED"),
        "roi_resolution": get("DETECTION", "ROI_XFORM_RESOLUTION"),
        "nonlocal_instantiation": get("NONLOCAL", "INSTANTIATION"),
        "dropout": get("MODEL", "DROPOUT_RATE"),
    }
    strides, dilations, pools = (get("RESNET", "SPATIAL_STRIDES"), get("RESNET", "SPATIAL_DILATIONS"),
                                 get("NONLOCAL", "POOL"))
    try:  # per-stage lists of per-pathway values: take the Slow pathway's
        candidates["spatial_strides"] = [int(s[0]) for s in strides] if strides else None
        candidates["spatial_dilations"] = [int(d[0]) for d in dilations] if dilations else None
        candidates["nonlocal_pool"] = [int(v) for v in pools[2][0]] if pools else None
    except (TypeError, IndexError, ValueError):
        pass
    fields = {k: v for k, v in candidates.items() if v is not None}
    for key, name in (("NUM_FRAMES", "num_frames"), ("SAMPLING_RATE", "sampling_rate"),
                      ("TEST_CROP_SIZE", "test_short_side")):
        if isinstance(get("DATA", key), int):
            inputs[name] = get("DATA", key)
    for key, name in (("MEAN", "mean"), ("STD", "std")):
        value = get("DATA", key)
        if isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
            inputs[name] = [float(v) for v in value]
    if "num_frames" in inputs:  # a PySlowFast model: its Slow pathway is packed by `pack_pathway_output`
        inputs["slow_sampling"] = "linspace"
    return fields, inputs


# Non-local settings of every published PySlowFast AVA model (its files do not say).
_PYSLOWFAST_NONLOCAL = {"nonlocal_instantiation": "dot_product", "nonlocal_pool": [2, 2, 2]}


def to_sfdet_state(obj: Any, fmt: str, source: str) -> tuple[dict, list[str], dict, dict]:
    """(sfdet-named state dict, source keys with no sfdet name, ModelConfig hints, input hints).

    Not for "torchvision": inflation needs the target model (see `load_checkpoint`).
    """
    if fmt == "caffe2":
        blobs = obj.get("blobs") if isinstance(obj, dict) else None
        if not isinstance(blobs, dict):
            raise CheckpointError(f"{source}: not a caffe2 checkpoint (no 'blobs' dict)")
        state, unknown = caffe2_to_sfdet(blobs)
        return state, unknown, dict(_PYSLOWFAST_NONLOCAL), {}
    state = _state_dict_of(obj)
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
        fields, inputs = _pyslowfast_cfg_hints(obj.get("cfg"))
        return converted, unknown, {**_PYSLOWFAST_NONLOCAL, **fields}, inputs
    if fmt == "pytorchvideo":
        # Unknown keys are kept under their own names, so they show up as unexpected.
        return pytorchvideo_to_sfdet(state), [], {}, {}
    raise CheckpointError(f"{source}: cannot convert format '{fmt}' here")


# ---------------------------------------------------------------------------
# Architecture inference from sfdet-named tensors
# ---------------------------------------------------------------------------


def infer_model_config(state: dict, hints: dict | None = None, source: str = "checkpoint") -> ModelConfig:
    """The ModelConfig whose model has exactly `state`'s tensors (shapes decide; `hints` fill the rest).

    Inferred: arch, depth/stage_depths, block type, width, in_channels, beta_inv,
    lateral conv ratio and kernel, stem and stage temporal kernels (and how many
    blocks per stage have them), non-local positions, num_classes. Not visible
    in the weights, so from `hints` or the defaults: alpha, strides and
    dilations, non-local pooling/instantiation, RoIAlign settings.
    """
    hints = dict(hints or {})

    def shape(key: str) -> tuple | None:
        return tuple(state[key].shape) if key in state else None

    slow_stem = shape("backbone.stem.slow.conv.weight")
    if slow_stem is None or len(slow_stem) < 2:
        raise CheckpointError(f"{source}: no Slow stem conv (backbone.stem.slow.conv.weight): "
                              f"not a checkpoint of a SlowFast or Slow ResNet")
    fast_stem = shape("backbone.stem.fast.conv.weight")
    fields: dict[str, Any] = {"arch": "slowfast" if fast_stem else "slow", "width": slow_stem[0],
                              "in_channels": slow_stem[1]}
    if len(slow_stem) == 5:
        fields["slow_stem_kernel"] = list(slow_stem[2:])
    pathways = ("slow", "fast") if fast_stem else ("slow",)

    blocks: dict[int, int] = {}
    for key in state:
        match = re.match(r"backbone\.res(\d)\.slow\.blocks\.(\d+)\.", key)
        if match:
            stage, index = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
    stages = sorted(blocks)
    if not stages or stages != list(range(2, 2 + len(stages))):
        raise CheckpointError(f"{source}: residual stages {stages or 'none'} found, expected res2, res3, ...")
    num_stages = len(stages)
    stage_depths = [blocks[s] for s in stages]
    bottleneck = any(".conv_c." in key for key in state)
    fields["num_stages"] = num_stages
    for depth in (50, 101, 18):
        if stage_depths == STAGE_DEPTHS[depth][:num_stages] and bottleneck == (depth >= 50):
            fields["depth"] = depth
            break
    else:
        fields["depth"] = 50 if bottleneck else 18  # picks the block type; stage_depths the counts
        fields["stage_depths"] = stage_depths

    # Temporal kernel of each stage (its first block's conv_a) and how many blocks use it.
    with_kernel = []
    for p in pathways:
        kernels = []
        for j, s in enumerate(stages):
            kts = [shape(f"backbone.res{s}.{p}.blocks.{i}.conv_a.weight") for i in range(stage_depths[j])]
            kts = [k[2] if k and len(k) == 5 else 1 for k in kts]
            kernels.append(kts[0])
            if kts[0] > 1:
                count = next((i for i, k in enumerate(kts) if k != kts[0]), len(kts))
                if len(with_kernel) <= j:
                    with_kernel.extend([None] * (j + 1 - len(with_kernel)))
                with_kernel[j] = max(with_kernel[j] or 0, count)
        fields[f"{p}_temporal_kernels"] = kernels
    counts = [(with_kernel[j] if j < len(with_kernel) and with_kernel[j] is not None else stage_depths[j])
              for j in range(num_stages)]
    if counts != stage_depths:
        fields["num_block_temp_kernel"] = counts

    if fast_stem:
        fields["beta_inv"] = slow_stem[0] // fast_stem[0]
        if len(fast_stem) == 5:
            fields["fast_stem_kernel"] = list(fast_stem[2:])
        lateral = shape("backbone.fuse1.conv.weight")
        if lateral is None:
            raise CheckpointError(f"{source}: a SlowFast model without lateral convs (backbone.fuse1.conv): "
                                  f"its lateral form cannot be inferred; give its config")
        fields["fusion_conv_channel_ratio"] = lateral[0] // lateral[1]
        if len(lateral) == 5:
            fields["fusion_kernel"] = lateral[2]

    nonlocal_blocks = sorted({int(m[1]) for key in state
                              if (m := re.match(r"backbone\.res4\.slow\.nonlocal_blocks\.(\d+)\.", key))})
    fields["nonlocal_res4"] = nonlocal_blocks
    head = shape("head.proj.weight")
    if head is not None:
        fields["num_classes"] = head[0]

    defaults = ModelConfig()
    for key in ("spatial_strides", "spatial_dilations"):  # per-stage defaults for shorter networks
        fields[key] = list(getattr(defaults, key))[:num_stages]
    for key, value in hints.items():
        if key in {f.name for f in dataclasses.fields(ModelConfig)} and key not in _SHAPE_FIELDS:
            fields[key] = value
    try:
        return from_dict(ModelConfig, fields, prefix="model")
    except ConfigError as exc:
        raise CheckpointError(f"{source}: the inferred architecture is invalid ({exc}); give its config") from None


# Fields the tensor shapes decide; hints from a file's metadata never override them.
_SHAPE_FIELDS = {"arch", "depth", "num_stages", "stage_depths", "width", "in_channels", "beta_inv",
                 "fusion_conv_channel_ratio", "fusion_kernel", "slow_stem_kernel", "fast_stem_kernel",
                 "slow_temporal_kernels", "fast_temporal_kernels", "num_block_temp_kernel", "nonlocal_res4",
                 "num_classes"}


# ---------------------------------------------------------------------------
# Fitting a state dict to a model
# ---------------------------------------------------------------------------


def _without_trailing_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _fit_trailing_ones(value: torch.Tensor, target_shape: torch.Size) -> torch.Tensor:
    """caffe2 blobs may lack (or carry extra) trailing size-1 dims: (O, I) <-> (O, I, 1, 1, 1)."""
    if value.shape != target_shape and _without_trailing_ones(value.shape) == _without_trailing_ones(target_shape):
        return value.reshape(target_shape)
    return value


def fit_state_dict(model: torch.nn.Module, state: dict, unknown: list[str] = (),
                   reshape_trailing: bool = False) -> tuple[dict, list[str], list[str], list[str]]:
    """Split `state` against `model`: (tensors that fit, missing, unexpected, mis-shaped descriptions).

    `num_batches_tracked` counters are not required (caffe2 and PyTorchVideo
    files lack them; they only matter for BN momentum=None).
    """
    model_state = model.state_dict()
    fitting, mismatched = {}, []
    unexpected = list(unknown)
    for key, value in state.items():
        if key not in model_state:
            unexpected.append(key)
            continue
        target = model_state[key]
        if not isinstance(value, torch.Tensor):
            mismatched.append(f"{key}: {type(value).__name__} vs model tensor {tuple(target.shape)}")
            continue
        if reshape_trailing:
            value = _fit_trailing_ones(value, target.shape)
        if value.shape != target.shape:
            mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target.shape)}")
            continue
        fitting[key] = value.to(target.dtype)
    missing = [key for key in model_state if key not in state and not key.endswith("num_batches_tracked")]
    return fitting, missing, unexpected, mismatched


def _architecture_name(cfg: ModelConfig) -> str:
    name = f"{'SlowFast' if cfg.arch == 'slowfast' else 'Slow'} R{cfg.depth}"
    if cfg.stage_depths is not None:
        name += f" (blocks {cfg.stage_depths})"
    return name + (f" +NL{cfg.nonlocal_res4}" if cfg.nonlocal_res4 else "") + f", {cfg.num_classes} classes"


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _as_model_config(cfg: ModelConfig | dict) -> ModelConfig:
    if isinstance(cfg, ModelConfig):
        return cfg
    return from_dict(ModelConfig, dict(cfg), prefix="model")


def _resolve(path_or_name: str | Path, download_progress: bool) -> tuple[Path, registry.PublishedModel | None]:
    """A path that exists, or a registry name (downloaded if needed)."""
    path = Path(path_or_name)
    if path.exists():
        return path, None
    name = str(path_or_name)
    if name in registry.MODELS:
        return registry.fetch(name, progress=download_progress), registry.MODELS[name]
    if os.sep in name or path.suffix:
        raise CheckpointError(f"checkpoint not found: {path}")
    registry.get(name)  # raises, naming the closest registered model
    raise AssertionError("unreachable")


def _inflate_2d(obj: Any, cfg: ModelConfig | dict | None, source: str):
    """torchvision 2D ResNet -> (model, cfg, fitting, missing, unexpected, mis-shaped).

    Without `cfg` the model is a SlowFast of the 2D network's depth.
    """
    state_2d = _state_dict_of(obj)
    if not state_2d:
        raise CheckpointError(f"{source}: no state dict found for format 'torchvision'")
    if cfg is None:
        depth, blocks = torchvision_depth(state_2d)
        cfg = ModelConfig(depth=depth) if depth in STAGE_DEPTHS else ModelConfig(depth=18, stage_depths=blocks)
    model_cfg = _as_model_config(cfg)
    model = build_model(model_cfg)
    state, unplaced, misfits = inflate_resnet2d(state_2d, model.state_dict())
    fitting, missing, unexpected, mismatched = fit_state_dict(model, state, unplaced)
    return model, model_cfg, fitting, missing, unexpected, mismatched + misfits


def load_checkpoint(
    path_or_name: str | Path,
    strict: bool = True,
    cfg: ModelConfig | dict | None = None,
    format: str = "auto",
    label_map: dict[int, str] | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, CheckpointInfo]:
    """Build the model a checkpoint describes and load its weights -> (model in eval mode, info).

    `path_or_name`: a file in any of FORMATS, or a registry name (downloaded to
    the torch hub cache on first use). `cfg` overrides the architecture.
    `strict`: every model tensor must come from the file and every file tensor
    must fit, else ONE CheckpointError lists what does not; `strict=False`
    loads what fits and lists the rest in `info`. Torchvision 2D weights fill
    the Slow pathway only: the other tensors keep their initialisation and are
    listed in `info.missing` without failing the strict check.
    """
    if format not in ("auto",) + FORMATS:
        raise CheckpointError(f"unknown checkpoint format '{format}'; expected auto or one of {', '.join(FORMATS)}")
    path, entry = _resolve(path_or_name, progress)
    source = str(path)
    obj = read_checkpoint_file(path)
    fmt = detect_format(obj, source) if format == "auto" else format

    if fmt == "torchvision":
        model, model_cfg, fitting, missing, unexpected, mismatched = _inflate_2d(obj, cfg, source)
        hints_inputs: dict = {}
    else:
        state, unknown, hints, hints_inputs = to_sfdet_state(obj, fmt, source)
        if cfg is not None:
            model_cfg = _as_model_config(cfg)
        elif entry is not None:
            model_cfg = entry.build_config()
        elif fmt == "sfdet" and hints:
            try:
                model_cfg = _as_model_config(hints)
            except ConfigError as exc:
                raise CheckpointError(f"{source}: its stored model_config is invalid ({exc})") from None
        else:
            model_cfg = infer_model_config(state, hints, source)
        model = build_model(model_cfg)
        fitting, missing, unexpected, mismatched = fit_state_dict(model, state, unknown,
                                                                  reshape_trailing=(fmt == "caffe2"))

    info = CheckpointInfo(source=source, format=fmt, model_config=model_cfg, label_map=None, registry_entry=entry,
                          missing=missing, unexpected=unexpected, mismatched=mismatched,
                          train_config=_stored_train_config(obj, fmt, source))
    # Inflated 2D weights cover the Slow pathway only: the rest keeps its init by design.
    problems = [("missing", [] if fmt == "torchvision" else missing), ("unexpected", unexpected),
                ("mis-shaped", mismatched)]
    if strict and any(keys for _, keys in problems):
        shown = "; ".join(_describe(what, keys) for what, keys in problems if keys)
        raise CheckpointError(f"{source} ({fmt}) does not fit the {_architecture_name(model_cfg)} model: {shown}; "
                              f"use strict=False (--non-strict) to load what fits")
    model.load_state_dict(fitting, strict=False)

    if label_map is not None:
        if len(label_map) != model_cfg.num_classes:
            raise CheckpointError(f"the label map has {len(label_map)} classes but {source} outputs "
                                  f"{model_cfg.num_classes}; give the label map the model was trained with")
        info.label_map = dict(label_map)
    elif fmt == "sfdet" and isinstance(obj, dict) and obj.get("label_map"):
        info.label_map = {int(k): str(v) for k, v in obj["label_map"].items()}
    elif entry is not None:
        info.label_map = entry.label_map()
    if entry is not None:
        hints_inputs = {**entry.input_spec(), **hints_inputs}
    info.input_hints = hints_inputs
    return model.eval(), info


# The key under which `sfdet train` stores its resolved config (sfdet/engine/trainer.py).
TRAIN_CONFIG_KEY = "config"


def _stored_train_config(obj: Any, fmt: str, source: str) -> dict | None:
    """The training config an sfdet checkpoint carries (a plain dict), or None."""
    if fmt != "sfdet" or not isinstance(obj, dict) or obj.get(TRAIN_CONFIG_KEY) is None:
        return None
    stored = obj[TRAIN_CONFIG_KEY]
    if not isinstance(stored, dict):
        raise CheckpointError(f"{source}: its stored training config ('{TRAIN_CONFIG_KEY}') is not a mapping")
    return stored


def save_sfdet_checkpoint(path: str | Path, model: torch.nn.Module, label_map: dict[int, str] | None = None,
                          source: str = "", **extra: Any) -> Path:
    """Write sfdet's own format (architecture + label map + weights), atomically.

    `model.cfg` (a ModelConfig) is stored as a plain dict, so `load_checkpoint`
    rebuilds the exact model from the file alone. `extra` keys (e.g. a
    trainer's epoch, `input` hints) are stored alongside; they cannot replace the keys above.
    """
    path = Path(path)
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise CheckpointError("the model has no `cfg` ModelConfig: build it with sfdet.models.build_model")
    checkpoint = {
        **extra,
        "format": "sfdet",
        "version": SFDET_FORMAT_VERSION,
        "model_config": to_dict(cfg),
        "label_map": {int(k): str(v) for k, v in label_map.items()} if label_map else None,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "source": source,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        torch.save(checkpoint, partial)
        os.replace(partial, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return path
