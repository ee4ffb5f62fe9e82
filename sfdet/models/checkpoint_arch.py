"""Architecture inference: the ModelConfig a checkpoint's tensors (and its metadata) describe.

    infer_model_config(state, hints, source)   # sfdet-named tensors -> ModelConfig (shapes decide)
    pyslowfast_cfg_hints(cfg)                  # a PySlowFast `cfg` -> (ModelConfig fields, clip fields)
    same_architecture(a, b)                    # equal networks at inference (ignores dropout, BN momentum, init)
    architecture_name(cfg)                     # "SlowFast R50 +NL[2, 5], 5 classes"
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml

from sfdet.typed_config import from_dict, to_dict
from sfdet.errors import CheckpointError, ConfigError
from sfdet.models.config import STAGE_DEPTHS, ModelConfig


def pyslowfast_cfg_hints(cfg: Any) -> tuple[dict, dict]:
    """(ModelConfig fields, clip fields) from a PySlowFast `cfg` (a YAML dump or a dict); {} where absent."""
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
PYSLOWFAST_NONLOCAL = {"nonlocal_instantiation": "dot_product", "nonlocal_pool": [2, 2, 2]}


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


def architecture_name(cfg: ModelConfig) -> str:
    """e.g. "SlowFast R50 +NL[2, 5], 5 classes" (for error lines)."""
    name = f"{'SlowFast' if cfg.arch == 'slowfast' else 'Slow'} R{cfg.depth}"
    if cfg.stage_depths is not None:
        name += f" (blocks {cfg.stage_depths})"
    return name + (f" +NL{cfg.nonlocal_res4}" if cfg.nonlocal_res4 else "") + f", {cfg.num_classes} classes"


def as_model_config(cfg: ModelConfig | dict) -> ModelConfig:
    """A ModelConfig, or a `model:` dict checked as one (ConfigError naming a bad key)."""
    if isinstance(cfg, ModelConfig):
        return cfg
    return from_dict(ModelConfig, dict(cfg), prefix="model")


# Settings that do not change what a trained network computes at inference.
_TRAINING_ONLY_FIELDS = {"dropout", "bn_momentum", "zero_init_final_bn"}


def _architecture_fields(cfg: ModelConfig) -> dict:
    fields = to_dict(cfg)
    for key in _TRAINING_ONLY_FIELDS:
        fields.pop(key)
    blocks = cfg.blocks_per_stage  # None means "the standard counts" / "every block": compare what is built
    fields["stage_depths"] = list(blocks)
    fields["num_block_temp_kernel"] = list(cfg.num_block_temp_kernel or blocks)
    if cfg.arch != "slowfast":  # Fast-pathway settings do not exist in a Slow-only network
        for key in ("alpha", "beta_inv", "fusion_conv_channel_ratio", "fusion_kernel", "lateral", "fusion",
                    "fast_stem_kernel", "fast_temporal_kernels"):
            fields.pop(key)
    if not cfg.nonlocal_res4:  # non-local settings do not exist in a network without non-local blocks
        for key in ("nonlocal_pool", "nonlocal_instantiation"):
            fields.pop(key)
    return fields


def same_architecture(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether `a` and `b` build networks that compute the same function of the same weights at inference."""
    return _architecture_fields(a) == _architecture_fields(b)
