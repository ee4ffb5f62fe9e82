"""Inflate a torchvision 2D ImageNet ResNet into sfdet's Slow pathway.

The I3D recipe (as PySlowFast's `inflate_weight`): a 2D kernel (O, I, kh, kw)
becomes (O, I, kt, kh, kw) by repeating it over time and dividing by kt, so a
clip of identical frames gives the 2D response. BN layers are copied.

What PySlowFast does not cover and sfdet decides:

- Lateral connections widen the Slow input of res2..res5 (and their first
  block's shortcut) by the fused Fast channels. The 2D weights fill the first
  I input channels (the Slow features come first in the concatenation) and the
  lateral channels start at ZERO, so at initialisation the Slow pathway
  computes exactly the inflated 2D network and learns to use the laterals.
- The Fast pathway has 1/beta of the channels; a channel subset of a 2D network
  is not a meaningful network, so the Fast pathway, the laterals, the
  non-local blocks and the head keep their own initialisation (PySlowFast's
  inflation also leaves every tensor whose shape does not match untouched).
- The ImageNet classifier `fc.*` is dropped.
"""

from __future__ import annotations

import re

import torch

_TORCHVISION_RULES = [
    (r"conv1\.weight", "backbone.stem.slow.conv.weight"),
    (r"bn1\.(?P<rest>.+)", "backbone.stem.slow.bn.{rest}"),
    (r"layer(?P<l>\d)\.(?P<i>\d+)\.conv(?P<n>[123])\.weight", "backbone.res{s}.slow.blocks.{i}.conv_{x}.weight"),
    (r"layer(?P<l>\d)\.(?P<i>\d+)\.bn(?P<n>[123])\.(?P<rest>.+)", "backbone.res{s}.slow.blocks.{i}.bn_{x}.{rest}"),
    (r"layer(?P<l>\d)\.(?P<i>\d+)\.downsample\.0\.weight", "backbone.res{s}.slow.blocks.{i}.shortcut.conv.weight"),
    (r"layer(?P<l>\d)\.(?P<i>\d+)\.downsample\.1\.(?P<rest>.+)", "backbone.res{s}.slow.blocks.{i}.shortcut.bn.{rest}"),
]
_TORCHVISION_RULES = [(re.compile(pattern), template) for pattern, template in _TORCHVISION_RULES]
_DROPPED_PREFIX = "fc."  # the ImageNet classifier


def is_torchvision_resnet_state(state_dict: dict) -> bool:
    return "conv1.weight" in state_dict and any(key.startswith("layer1.0.") for key in state_dict)


def torchvision_depth(state_dict: dict) -> tuple[int, list[int]]:
    """(depth, blocks per stage) of a torchvision ResNet state dict: basic blocks have no conv3."""
    blocks = []
    for layer in range(1, 5):
        indices = {int(m[1]) for key in state_dict if (m := re.match(rf"layer{layer}\.(\d+)\.", key))}
        if indices:
            blocks.append(max(indices) + 1)
    bottleneck = "layer1.0.conv3.weight" in state_dict
    known = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50, (True, (3, 4, 23, 3)): 101}
    return known.get((bottleneck, tuple(blocks)), 50 if bottleneck else 18), blocks


def torchvision_key_to_sfdet(key: str) -> str | None:
    """`layer2.0.downsample.1.weight` -> `backbone.res3.slow.blocks.0.shortcut.bn.weight`; None if unknown."""
    for pattern, template in _TORCHVISION_RULES:
        match = pattern.fullmatch(key)
        if match:
            groups = match.groupdict()
            stage = int(groups.pop("l")) + 1 if "l" in groups else None
            letter = "abc"[int(groups.pop("n")) - 1] if "n" in groups else None
            return template.format(s=stage, x=letter, **groups)
    return None


def inflate_conv_weight(weight_2d: torch.Tensor, target_shape: torch.Size) -> torch.Tensor:
    """(O, I, kh, kw) -> target (O, I', kt, kh, kw), I' >= I: repeat over kt, divide by kt, zero extra inputs."""
    out_ch, in_ch, kh, kw = weight_2d.shape
    t_out, t_in, kt, t_kh, t_kw = target_shape
    if (out_ch, kh, kw) != (t_out, t_kh, t_kw) or in_ch > t_in:
        raise ValueError(f"2D kernel {tuple(weight_2d.shape)} cannot be inflated to {tuple(target_shape)}")
    repeated = (weight_2d / kt).unsqueeze(2).expand(-1, -1, kt, -1, -1)
    lateral = weight_2d.new_zeros(out_ch, t_in - in_ch, kt, kh, kw)
    return torch.cat([repeated, lateral], dim=1)


def inflate_resnet2d(state_dict_2d: dict, model_state: dict) -> tuple[dict, list[str], list[str]]:
    """Inflate a torchvision ResNet state dict onto `model_state` (the target model's tensors, for shapes).

    Returns (inflated sfdet state dict covering the Slow stem and res stages,
    2D keys with no place in the model, "key: why" for 2D tensors whose place
    has an incompatible shape, i.e. another architecture).
    """
    inflated, unplaced, misfits = {}, [], []
    for key, value in state_dict_2d.items():
        if key.startswith(_DROPPED_PREFIX):
            continue
        target_key = torchvision_key_to_sfdet(key)
        if target_key is None or target_key not in model_state:
            unplaced.append(key)
            continue
        target = model_state[target_key]
        if value.dim() == 4 and target.dim() == 5:
            try:
                inflated[target_key] = inflate_conv_weight(value.to(target.dtype), target.shape)
            except ValueError as exc:
                misfits.append(f"{key}: {exc}")
        elif value.shape == target.shape:
            inflated[target_key] = value.to(target.dtype).clone()
        else:
            misfits.append(f"{key}: 2D {tuple(value.shape)} vs model {tuple(target.shape)}")
    return inflated, unplaced, misfits
