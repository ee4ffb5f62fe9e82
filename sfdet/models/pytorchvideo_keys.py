"""PyTorchVideo `.pyth` checkpoints -> sfdet names, and the configs of its two AVA detectors.

A `.pyth` file is `{"model_state": state_dict}` of a `DetectionBBoxNetwork`:

    model.blocks.0.multipathway_blocks.{p}.{conv,norm}                          stems (p: 0 slow, 1 fast)
    model.blocks.{k}.multipathway_fusion.{conv_fast_to_slow,norm}               lateral after blocks.k
    model.blocks.{s}.multipathway_blocks.{p}.res_blocks.{i}.branch1_{conv,norm} shortcut
    model.blocks.{s}.multipathway_blocks.{p}.res_blocks.{i}.branch2.{conv,norm}_{a,b,c}
    detection_head.proj                                                         classifier

The Slow-only model has the same layout without the `multipathway_blocks.{p}`
level (`model.blocks.0.conv`, `model.blocks.{s}.res_blocks.{i}...`).
`model.blocks.{s}` is sfdet's `res{s+1}`; the lateral after `model.blocks.{k}` is `fuse{k+1}`.
Pure functions on names and dicts (no model needed), plus `randomize_reference`,
which gives a PyTorchVideo model non-trivial weights for equivalence tests and benchmarks.
"""

from __future__ import annotations

import re

import torch

from sfdet.models.config import ModelConfig

_PATHWAYS = {"0": "slow", "1": "fast"}
_TENSOR = r"(?P<tensor>weight|bias|running_mean|running_var|num_batches_tracked)"

# (pattern over the whole key, sfdet template). Group `p` (pathway index) is
# optional: the Slow-only model has no pathway level and means the slow one.
# `s`/`k` are PyTorchVideo block indices and become sfdet stage/lateral numbers + 1.
_PATHWAY = r"(?:multipathway_blocks\.(?P<p>[01])\.)?"
_RULES = [
    (rf"model\.blocks\.0\.{_PATHWAY}(?P<layer>conv|norm)\.{_TENSOR}", "backbone.stem.{pathway}.{layer}.{tensor}"),
    (rf"model\.blocks\.(?P<k>\d+)\.multipathway_fusion\.(?P<layer>conv_fast_to_slow|norm)\.{_TENSOR}",
     "backbone.fuse{k}.{layer}.{tensor}"),
    (rf"model\.blocks\.(?P<s>\d+)\.{_PATHWAY}res_blocks\.(?P<i>\d+)\.branch1_(?P<layer>conv|norm)\.{_TENSOR}",
     "backbone.res{s}.{pathway}.blocks.{i}.shortcut.{layer}.{tensor}"),
    (rf"model\.blocks\.(?P<s>\d+)\.{_PATHWAY}res_blocks\.(?P<i>\d+)\.branch2\.(?P<layer>conv|norm)_(?P<x>[abc])"
     rf"\.{_TENSOR}", "backbone.res{s}.{pathway}.blocks.{i}.{layer}_{x}.{tensor}"),
    (r"detection_head\.proj\.(?P<tensor>weight|bias)", "head.proj.{tensor}"),
]
_RULES = [(re.compile(pattern), template) for pattern, template in _RULES]
_LAYER_NAMES = {"conv": "conv", "norm": "bn", "conv_fast_to_slow": "conv"}


def pytorchvideo_key_to_sfdet(key: str) -> str | None:
    """`model.blocks.1.multipathway_blocks.1.res_blocks.0.branch2.norm_a.weight`
    -> `backbone.res2.fast.blocks.0.bn_a.weight`; None if the key is not a PyTorchVideo detector key."""
    for pattern, template in _RULES:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        groups = match.groupdict()
        values = {name: value for name, value in groups.items() if value is not None and name != "p"}
        values["pathway"] = _PATHWAYS[groups.get("p") or "0"]
        if "layer" in values:
            values["layer"] = _LAYER_NAMES[values["layer"]]
        for block_index in ("s", "k"):  # PyTorchVideo counts blocks from the stem (0), sfdet from res2 / fuse1
            if block_index in values:
                values[block_index] = int(values[block_index]) + 1
        return template.format(**values)
    return None


def is_pytorchvideo_state(state_dict: dict) -> bool:
    """PyTorchVideo detectors (SlowFast and Slow alike) hold `model.blocks.*` and `detection_head.*` keys."""
    return any(k.startswith("model.blocks.") for k in state_dict) and any(
        k.startswith("detection_head.") for k in state_dict)


def pytorchvideo_to_sfdet(state_dict: dict) -> dict:
    """Rename a PyTorchVideo `model_state` to sfdet names (tensors are shared, not copied).

    Keys that are not part of a PyTorchVideo detector are kept as they are, so
    a strict `load_state_dict` names them as unexpected instead of dropping them silently.
    """
    converted = {}
    for key, value in state_dict.items():
        new_key = pytorchvideo_key_to_sfdet(key)
        converted[new_key if new_key is not None else key] = value
    return converted


# The hub models (pytorchvideo/models/hub/{slowfast,resnet}.py, builders in
# pytorchvideo/models/{slowfast,resnet}.py): R50 bottlenecks, lateral kernel 7,
# res5 stride 1 / dilation 2, RoIAlign 7x7 at 1/16 with aligned=False, 80 classes.
# These are ModelConfig's defaults; only the differences are listed.
PYTORCHVIDEO_MODEL_CONFIGS: dict[str, dict] = {
    "slowfast_r50_detection": {"arch": "slowfast", "depth": 50},  # Slow 8 frames, Fast 32 (alpha 4)
    "slow_r50_detection": {"arch": "slow", "depth": 50},  # 4 frames
}


def pytorchvideo_model_config(name: str) -> ModelConfig:
    """The sfdet `ModelConfig` of PyTorchVideo's `slowfast_r50_detection` or `slow_r50_detection`."""
    if name not in PYTORCHVIDEO_MODEL_CONFIGS:
        raise KeyError(f"unknown PyTorchVideo detector {name!r}; known: {', '.join(PYTORCHVIDEO_MODEL_CONFIGS)}")
    return ModelConfig(**PYTORCHVIDEO_MODEL_CONFIGS[name])


def randomize_reference(reference: torch.nn.Module, seed: int) -> None:
    """Re-draw every BN of a PyTorchVideo detector (positive variance, scale < 1 so activations stay O(1))
    and its classifier, so no layer is an identity and a wrong mapping shows in the outputs.

    Used by the equivalence tests and `scripts/bench_model.py` (a random-weight hub model has
    BN at its defaults, which would hide BN mistakes).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.4 + 0.2)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        proj = reference.detection_head.proj
        proj.weight.normal_(0.0, 0.05, generator=g)
        proj.bias.normal_(0.0, 1.0, generator=g)
