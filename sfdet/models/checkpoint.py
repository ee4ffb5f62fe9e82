"""Load any published SlowFast/Slow AVA checkpoint into an sfdet model; save sfdet's own format.

    model, info = load_checkpoint(path_or_registry_name)   # model in eval mode, CheckpointInfo
    save_sfdet_checkpoint(path, model, label_map, source, recipe=ClipRecipe(...), **extra)

Three modules: `checkpoint_files` reads a file safely and tells its format (FORMATS) from
the content, `checkpoint_arch` infers the architecture from the tensors, and this one fits
the tensors to the model and saves sfdet's format:

    {"format": "sfdet", "version": 1, "model_config": dict, "label_map": {id: name},
     "model_state": state_dict, "source": str, "recipe": ClipRecipe.to_dict() or None, ...}

The architecture comes from, in order: the `cfg` argument, the registry entry,
the config stored in an sfdet checkpoint, or inference from the tensor shapes
(depth from the block counts, widths, kernels, non-local positions, classes)
plus what a PySlowFast `cfg` says about the rest (alpha, RoIAlign, ...).

The clip recipe (`info.recipe`: how the model's clips are made) comes from, in order: the
recipe an sfdet checkpoint stores; the registry entry of a registry name (fields the file
itself states win); a PySlowFast `cfg` DATA section (frames and stride at least); the
training config an older `sfdet train` checkpoint stores; else None. For a model-zoo file
with none, `registry_recipe(info)` gives the recipe of the registry model whose
architecture it has.

What a file does not state but changes the outputs (RoIAlign alignment, clip frames and stride,
the label map) is assumed; `info.assumed` lists each assumption and `assumed_line(info, name, command)`
is the one line that `sfdet convert`, `info` and `predict` print about them. A `label_map` given to
`load_checkpoint` whose names differ from the file's own is described by `label_map_conflict`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sfdet.typed_config import to_dict
from sfdet.errors import CheckpointError, ConfigError
from sfdet.fileio import atomic_save
from sfdet.models import registry
from sfdet.models.checkpoint_arch import architecture_name, as_model_config, infer_model_config, same_architecture
from sfdet.models.checkpoint_files import FORMATS, detect_format, read_checkpoint_file, state_dict_of, to_sfdet_state
from sfdet.models.config import STAGE_DEPTHS, ModelConfig
from sfdet.models.detector import build_model
from sfdet.models.inflate import inflate_resnet2d, torchvision_depth
from sfdet.models.recipe import ClipRecipe

__all__ = ["FORMATS", "CheckpointInfo", "RegistryRecipe", "assumed_line", "label_map_conflict", "load_checkpoint",
           "registry_recipe", "save_sfdet_checkpoint"]

SFDET_FORMAT_VERSION = 1
TRAIN_CONFIG_KEY = "config"  # where `sfdet train` stores its resolved config (sfdet/engine/trainer.py)
RECIPE_KEY = "recipe"
# Formats of the model zoos: a file of theirs whose architecture is a registry model's is that model.
MODEL_ZOO_FORMATS = ("pytorchvideo", "pyslowfast", "caffe2")
_SHOWN = 5  # keys listed per category in an error line
_SHOWN_NAMES = 3  # differing label-map names listed in a warning line

# Settings a file may leave unsaid although they change the outputs (keys of `CheckpointInfo.assumed`).
ASSUMED_ROI_ALIGNED = "model.roi_aligned"
ASSUMED_CLIPS = "clip frames x stride"
ASSUMED_LABEL_MAP = "label map"
# How each is stated instead, per command: (the way, what to put there). A way holding "{}" takes the
# "what" inside it; settings stated the same way share it: "--config YAML (model.roi_aligned: true; ...)".
_CONVERT_WAYS = {ASSUMED_ROI_ALIGNED: ("--config YAML{}", "model.roi_aligned: {}"),
                 ASSUMED_CLIPS: ("--config YAML{}", "data.num_frames, data.sampling_rate"),
                 ASSUMED_LABEL_MAP: ("--label-map FILE{}", "")}
_STATE_IT = {  # command -> (what precedes the ways, the ways)
    "convert": ("", _CONVERT_WAYS),
    "info": ("sfdet convert IN OUT ", _CONVERT_WAYS),
    # predict's --config sets the clips only: the architecture is the file's (convert it to change it)
    "predict": ("", {**_CONVERT_WAYS, ASSUMED_ROI_ALIGNED: ("sfdet convert IN OUT --config YAML{}, then --weights OUT",
                                                            "model.roi_aligned: {}")}),
}


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
    # How the model's clips are made, as far as the file or its registry entry says (module docstring); None: unknown.
    recipe: ClipRecipe | None = None
    # The resolved training config (`Config` as a plain dict) that `sfdet train` stores in its checkpoints
    # under "config"; None for every other file.
    train_config: dict | None = None
    # Settings that change the outputs which the file does not state, and what was assumed for each:
    # {ASSUMED_ROI_ALIGNED: "false", ASSUMED_CLIPS: "32x2, ...", ASSUMED_LABEL_MAP: "..."}; `assumed_line` says them.
    assumed: dict[str, str] = field(default_factory=dict)
    # The label map the file (or its registry entry) states, kept when a `label_map` argument replaced it.
    file_label_map: dict[int, str] | None = None

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


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


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
    state_2d = state_dict_of(obj)
    if not state_2d:
        raise CheckpointError(f"{source}: no state dict found for format 'torchvision'")
    if cfg is None:
        depth, blocks = torchvision_depth(state_2d)
        cfg = ModelConfig(depth=depth) if depth in STAGE_DEPTHS else ModelConfig(depth=18, stage_depths=blocks)
    model_cfg = as_model_config(cfg)
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
    try:
        obj = read_checkpoint_file(path)
        fmt = detect_format(obj, source) if format == "auto" else format
    except CheckpointError as exc:
        if entry is None:
            raise
        raise CheckpointError(f"{exc}; it is the cached download of '{entry.name}': delete it to download it "
                              f"again") from None

    assumed_roi = None
    if fmt == "torchvision":
        model, model_cfg, fitting, missing, unexpected, mismatched = _inflate_2d(obj, cfg, source)
        clip_fields: dict = {}
    else:
        state, unknown, hints, clip_fields = to_sfdet_state(obj, fmt, source)
        if cfg is not None:
            model_cfg = as_model_config(cfg)
        elif entry is not None:
            model_cfg = entry.build_config()
        elif fmt == "sfdet" and hints:
            try:
                model_cfg = as_model_config(hints)
            except ConfigError as exc:
                raise CheckpointError(f"{source}: its stored model_config is invalid ({exc})") from None
        else:
            model_cfg = infer_model_config(state, hints, source)
            if fmt in ("caffe2", "pyslowfast", "sfdet") and "roi_aligned" not in hints:
                # caffe2 pickles and bare state dicts have no config, a PySlowFast cfg may lack DETECTION.ALIGNED
                # (PyTorchVideo files: its builder's RoIAlign is always unaligned, as sfdet's default)
                assumed_roi = ASSUMED_ROI_ALIGNED
        model = build_model(model_cfg)
        fitting, missing, unexpected, mismatched = fit_state_dict(model, state, unknown,
                                                                  reshape_trailing=(fmt == "caffe2"))

    train_config = _stored_train_config(obj, fmt, source)
    info = CheckpointInfo(source=source, format=fmt, model_config=model_cfg, label_map=None, registry_entry=entry,
                          missing=missing, unexpected=unexpected, mismatched=mismatched, train_config=train_config,
                          recipe=_recipe(obj, fmt, source, model_cfg, clip_fields, entry, train_config))
    # Inflated 2D weights cover the Slow pathway only: the rest keeps its init by design.
    problems = [("missing", [] if fmt == "torchvision" else missing), ("unexpected", unexpected),
                ("mis-shaped", mismatched)]
    if strict and any(keys for _, keys in problems):
        shown = "; ".join(_describe(what, keys) for what, keys in problems if keys)
        raise CheckpointError(f"{source} ({fmt}) does not fit the {architecture_name(model_cfg)} model: {shown}; "
                              f"use strict=False (--non-strict) to load what fits")
    model.load_state_dict(fitting, strict=False)

    if fmt == "sfdet" and isinstance(obj, dict) and obj.get("label_map"):
        info.file_label_map = {int(k): str(v) for k, v in obj["label_map"].items()}
    elif entry is not None:
        info.file_label_map = entry.label_map()
    if label_map is not None:
        if len(label_map) != model_cfg.num_classes:
            raise CheckpointError(f"the label map has {len(label_map)} classes but {source} outputs "
                                  f"{model_cfg.num_classes}; give the label map the model was trained with")
        info.label_map = dict(label_map)
    elif info.file_label_map is not None:
        info.label_map = dict(info.file_label_map)
    if fmt != "torchvision":  # 2D ImageNet weights: no head, nothing about outputs to assume
        info.assumed = _assumptions(info, assumed_roi)
    return model.eval(), info


def _assumptions(info: CheckpointInfo, roi_key: str | None) -> dict[str, str]:
    """What `load_checkpoint` assumed about settings the file leaves unsaid (see `CheckpointInfo.assumed`)."""
    assumed = {}
    cfg = info.model_config
    if roi_key is not None:
        assumed[roi_key] = str(cfg.roi_aligned).lower()
    if info.recipe is None and info.train_config is None:
        try:
            match = registry_recipe(info)
        except CheckpointError:  # registry models of this architecture differ: nothing is assumed (predict asks)
            match = None
        if match is not None:
            which = "model" if len(match.models) == 1 else "models"
            assumed[ASSUMED_CLIPS] = (f"{match.recipe.num_frames}x{match.recipe.sampling_rate}, as registry {which} "
                                      f"{', '.join(match.models)} of the same architecture")
    if info.label_map is None:
        assumed[ASSUMED_LABEL_MAP] = f"{cfg.num_classes} classes without names, ids 1..{cfg.num_classes}"
    return assumed


def assumed_line(info: CheckpointInfo, name: str | None = None, command: str = "convert",
                 stated: tuple[str, ...] = ()) -> str:
    """The one line naming each assumed setting and how to state it ("" when nothing is assumed):

    "model.pkl: the file does not say: model.roi_aligned (assumed false), clip frames x stride (assumed 32x2, as
    registry model M of the same architecture), label map (assumed ...); override with --config YAML
    (model.roi_aligned: true; data.num_frames, data.sampling_rate) / --label-map FILE"

    `command`: convert, predict or info (whose options state them); `stated`: keys of `info.assumed` that
    the command's options stated after all (e.g. ASSUMED_CLIPS when predict is given --config).
    """
    assumed = {key: value for key, value in info.assumed.items() if key not in stated}
    if not assumed:
        return ""
    prefix, known_ways = _STATE_IT[command]
    ways: dict[str, list[str]] = {}
    for key in assumed:
        way, what = known_ways[key]
        if key == ASSUMED_ROI_ALIGNED:
            what = what.format(str(not info.model_config.roi_aligned).lower())
        ways.setdefault(way, [])
        if what:
            ways[way].append(what)
    assumptions = ", ".join(f"{key} (assumed {value})" for key, value in assumed.items())
    overrides = " / ".join(way.format(f" ({'; '.join(whats)})" if whats else "") for way, whats in ways.items())
    return f"{name or info.source}: the file does not say: {assumptions}; override with {prefix}{overrides}"


def label_map_conflict(info: CheckpointInfo, given: str = "--label-map") -> str:
    """One line naming the classes whose names in the given label map differ from the file's own ("" if none):

    "w.pt: --label-map names differ from the checkpoint's for 2 of 5 classes (id 3: checkpoint 'run',
    --label-map 'jog'; ...); its outputs are named by --label-map"

    Outputs are compared in order (output j is the j-th entry of each map); a differing id is named too.
    """
    if info.file_label_map is None or info.label_map is None:
        return ""
    differing = []
    for index, ((file_id, file_name), (given_id, given_name)) in enumerate(
            zip(info.file_label_map.items(), info.label_map.items())):
        if file_id == given_id and file_name != given_name:
            differing.append(f"id {file_id}: checkpoint '{file_name}', {given} '{given_name}'")
        elif file_id != given_id:
            differing.append(f"output {index + 1}: checkpoint id {file_id} '{file_name}', "
                             f"{given} id {given_id} '{given_name}'")
    if not differing:
        return ""
    shown = "; ".join(differing[:_SHOWN_NAMES])
    more = f"; ... and {len(differing) - _SHOWN_NAMES} more" if len(differing) > _SHOWN_NAMES else ""
    return (f"{info.source}: {given} names differ from the checkpoint's for {len(differing)} of "
            f"{len(info.label_map)} classes ({shown}{more}); its outputs are named by {given}")


def _stored_train_config(obj: Any, fmt: str, source: str) -> dict | None:
    """The training config an sfdet checkpoint carries (a plain dict), or None."""
    if fmt != "sfdet" or not isinstance(obj, dict) or obj.get(TRAIN_CONFIG_KEY) is None:
        return None
    stored = obj[TRAIN_CONFIG_KEY]
    if not isinstance(stored, dict):
        raise CheckpointError(f"{source}: its stored training config ('{TRAIN_CONFIG_KEY}') is not a mapping")
    return stored


# ---------------------------------------------------------------------------
# Clip recipes
# ---------------------------------------------------------------------------


def model_alpha(cfg: ModelConfig) -> int | None:
    """A recipe's `alpha` for a model: its Fast/Slow frame ratio, None for Slow-only."""
    return cfg.alpha if cfg.arch == "slowfast" else None


def _recipe(obj: Any, fmt: str, source: str, model_cfg: ModelConfig, clip_fields: dict,
            entry: registry.PublishedModel | None, train_config: dict | None) -> ClipRecipe | None:
    """The clip recipe the file (or its registry entry) states, in the order of the module docstring."""
    if fmt == "sfdet" and isinstance(obj, dict) and obj.get(RECIPE_KEY) is not None:
        try:
            return ClipRecipe.from_dict(obj[RECIPE_KEY])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{source}: its stored clip recipe ('{RECIPE_KEY}') is invalid ({exc})") from None
    try:
        if entry is not None:
            return ClipRecipe.from_dict({**entry.recipe.to_dict(), **clip_fields})
        if "num_frames" in clip_fields and "sampling_rate" in clip_fields:
            return ClipRecipe.from_data(clip_fields, model_alpha(model_cfg))
        if train_config is not None and isinstance(train_config.get("data", {}), dict):
            return ClipRecipe.from_data(train_config.get("data", {}), model_alpha(model_cfg))
    except (ValueError, TypeError):  # values no recipe can hold: the file says nothing usable
        pass
    return None


def registry_models_like(info: CheckpointInfo) -> list[registry.PublishedModel]:
    """The registry models a model-zoo file (MODEL_ZOO_FORMATS) is, going by its architecture; of several,
    the one whose published file name it has (e.g. SLOWFAST_64x2_R101_50_50.pkl), if any."""
    if info.format not in MODEL_ZOO_FORMATS:
        return []
    entries = [entry for entry in registry.MODELS.values()
               if same_architecture(entry.build_config(), info.model_config)]
    named = [entry for entry in entries if entry.file_name == Path(info.source).name]
    return named or entries


class RegistryRecipe(NamedTuple):
    recipe: ClipRecipe
    models: tuple[str, ...]  # the registry models with the file's architecture (and that recipe)
    note: str  # the one line that says so: "W: architecture equals registry model M; using its clip recipe (...); ..."


def registry_recipe(info: CheckpointInfo, name: str | None = None) -> RegistryRecipe | None:
    """For a model-zoo file whose architecture equals registry models': their clip recipe and the one line
    that says so. None: no registry model has its architecture (or the file is not a model-zoo format).

    CheckpointError (one line) when the registry models of that architecture differ in their recipes.
    `name`: how the user named the weights (default: the file).
    """
    name = name or info.source
    entries = registry_models_like(info)
    if not entries:
        return None
    names = ", ".join(entry.name for entry in entries)
    recipes = {entry.recipe for entry in entries}
    if len(recipes) > 1:
        frames = "; ".join(f"{e.name}: {e.recipe.num_frames}x{e.recipe.sampling_rate}" for e in entries)
        raise CheckpointError(f"{name}: its architecture equals registry models {names}, whose clip recipes "
                              f"differ ({frames}); pass the training config with --config YAML")
    recipe = recipes.pop()
    which = f"model {names}" if len(entries) == 1 else f"models {names}"
    note = (f"{name}: architecture equals registry {which}; using its clip recipe ({recipe.describe()}); "
            f"pass --config to override")
    return RegistryRecipe(recipe, tuple(entry.name for entry in entries), note)


def known_recipe(info: CheckpointInfo, name: str | None = None) -> tuple[ClipRecipe | None, str]:
    """(the clip recipe the weights are known to use without a config, where it comes from or why there is none):
    `info.recipe`, else a registry model's of the same architecture (`registry_recipe`). For `info` / `convert`."""
    if info.recipe is not None:
        return info.recipe, "stated by the file" if info.registry_entry is None else "of its registry entry"
    if info.train_config is not None:
        return None, "its stored training config holds no valid clip settings"
    try:
        match = registry_recipe(info, name)
    except CheckpointError as exc:
        return None, str(exc).split("; pass ")[0]
    if match is None:
        return None, "the file does not say how its clips were made"
    return match.recipe, f"architecture equals registry model {', '.join(match.models)}"


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------


def save_sfdet_checkpoint(path: str | Path, model: torch.nn.Module, label_map: dict[int, str] | None = None,
                          source: str = "", recipe: ClipRecipe | None = None, **extra: Any) -> Path:
    """Write sfdet's own format (architecture + label map + clip recipe + weights) atomically, fsynced.

    `model.cfg` (a ModelConfig) is stored as a plain dict, so `load_checkpoint` rebuilds the
    exact model from the file alone. `recipe`: how the model's clips are made (None: unknown).
    `extra` keys (e.g. a trainer's config and state) are stored alongside; they cannot replace
    the keys above.
    """
    path = Path(path)
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise CheckpointError("the model has no `cfg` ModelConfig: build it with sfdet.models.build_model")
    if recipe is not None and not isinstance(recipe, ClipRecipe):
        raise TypeError(f"recipe must be a ClipRecipe, got {type(recipe).__name__}")
    checkpoint = {
        **extra,
        "format": "sfdet",
        "version": SFDET_FORMAT_VERSION,
        "model_config": to_dict(cfg),
        "label_map": {int(k): str(v) for k, v in label_map.items()} if label_map else None,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "source": source,
        RECIPE_KEY: recipe.to_dict() if recipe is not None else None,
    }
    try:
        return atomic_save(checkpoint, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
