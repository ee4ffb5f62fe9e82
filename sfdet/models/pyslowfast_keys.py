"""PySlowFast checkpoint names -> sfdet state-dict names.

PySlowFast publishes AVA models in two layouts:

- its PyTorch format, `{"epoch", "model_state", "optimizer_state", "cfg"}`,
  with keys such as `s2.pathway0_res0.branch2.a_bn.weight`;
- caffe2 pickles, `{"blobs": {name: ndarray}}`, with blob names such as
  `res2_0_branch2a_bn_s`.

Caffe2 names are first turned into PySlowFast keys (the names PySlowFast's own
caffe2 loader produces), then PySlowFast keys into sfdet names, so both layouts
share the second step. Pure functions on names and dicts: no model needed.
"""

from __future__ import annotations

import re

import numpy as np
import torch

_PATHWAY_NAMES = {"0": "slow", "1": "fast"}

# ---------------------------------------------------------------------------
# PySlowFast PyTorch keys -> sfdet
# ---------------------------------------------------------------------------

# (pattern over the whole key, sfdet template). Named groups fill the template;
# `p` (the pathway index) becomes `pathway` = slow | fast.
_PYSLOWFAST_RULES = [
    (r"s1\.pathway(?P<p>[01])_stem\.(?P<m>conv|bn)\.(?P<rest>.+)", "backbone.stem.{pathway}.{m}.{rest}"),
    (r"s(?P<k>\d)_fuse\.conv_f2s\.(?P<rest>.+)", "backbone.fuse{k}.conv.{rest}"),
    (r"s(?P<k>\d)_fuse\.bn\.(?P<rest>.+)", "backbone.fuse{k}.bn.{rest}"),
    (r"s(?P<s>\d)\.pathway(?P<p>[01])_res(?P<i>\d+)\.branch1\.(?P<rest>.+)",
     "backbone.res{s}.{pathway}.blocks.{i}.shortcut.conv.{rest}"),
    (r"s(?P<s>\d)\.pathway(?P<p>[01])_res(?P<i>\d+)\.branch1_bn\.(?P<rest>.+)",
     "backbone.res{s}.{pathway}.blocks.{i}.shortcut.bn.{rest}"),
    (r"s(?P<s>\d)\.pathway(?P<p>[01])_res(?P<i>\d+)\.branch2\.(?P<x>[abc])\.(?P<rest>.+)",
     "backbone.res{s}.{pathway}.blocks.{i}.conv_{x}.{rest}"),
    (r"s(?P<s>\d)\.pathway(?P<p>[01])_res(?P<i>\d+)\.branch2\.(?P<x>[abc])_bn\.(?P<rest>.+)",
     "backbone.res{s}.{pathway}.blocks.{i}.bn_{x}.{rest}"),
    (r"s(?P<s>\d)\.pathway(?P<p>[01])_nonlocal(?P<i>\d+)\.conv_(?P<x>theta|phi|g|out)\.(?P<rest>.+)",
     "backbone.res{s}.{pathway}.nonlocal_blocks.{i}.{x}.{rest}"),
    # Older PySlowFast names the non-local BN `bn`, newer versions `norm`.
    (r"s(?P<s>\d)\.pathway(?P<p>[01])_nonlocal(?P<i>\d+)\.(?:bn|norm)\.(?P<rest>.+)",
     "backbone.res{s}.{pathway}.nonlocal_blocks.{i}.bn.{rest}"),
    (r"head\.projection\.(?P<rest>weight|bias)", "head.proj.{rest}"),
]
_PYSLOWFAST_RULES = [(re.compile(pattern), template) for pattern, template in _PYSLOWFAST_RULES]


def pyslowfast_key_to_sfdet(key: str) -> str | None:
    """`s2.pathway1_res0.branch2.a_bn.weight` -> `backbone.res2.fast.blocks.0.bn_a.weight`; None if unknown."""
    for pattern, template in _PYSLOWFAST_RULES:
        match = pattern.fullmatch(key)
        if match:
            groups = match.groupdict()
            pathway = _PATHWAY_NAMES[groups.pop("p")] if "p" in groups else None
            return template.format(pathway=pathway, **groups)
    return None


def is_pyslowfast_state(state_dict: dict) -> bool:
    """PySlowFast models (SlowFast and Slow alike) start with `s1.pathway0_stem`."""
    return any(key.startswith("s1.pathway0_stem.") for key in state_dict)


def pyslowfast_to_sfdet(state_dict: dict) -> tuple[dict, list[str]]:
    """Rename a PySlowFast `model_state`; returns (sfdet state dict, keys with no sfdet name)."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        new_key = pyslowfast_key_to_sfdet(key)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    return converted, unknown


# ---------------------------------------------------------------------------
# caffe2 blob names -> PySlowFast keys
# ---------------------------------------------------------------------------

# Blob name = MODULE + "_" + PARAM. PARAM says which tensor of the module it is.
_CAFFE2_PARAMS = {
    "w": "weight",
    "b": "bias",
    "bn_s": "bn.weight",
    "bn_b": "bn.bias",
    "bn_rm": "bn.running_mean",
    "bn_riv": "bn.running_var",  # caffe2 stores the running variance under this name, not its inverse
}
_CAFFE2_BLOB = re.compile(r"(?P<module>.+?)_(?P<param>bn_s|bn_b|bn_rm|bn_riv|w|b)")

# (MODULE pattern, PySlowFast module for conv/fc params, PySlowFast module for BN params).
# A `t_` prefix marks the Fast pathway (PySlowFast pathway1). The lateral convs are
# named after the layer they read from: `t_pool1_subsample` (after the stem) and
# `t_res{s}_{last block}_branch2c_bn_subsample` (after stage s).
_CAFFE2_MODULES = [
    (r"(?P<t>t_)?conv1", "s1.pathway{p}_stem.conv", None),
    (r"(?P<t>t_)?res_conv1", None, "s1.pathway{p}_stem"),
    (r"(?P<t>t_)?res(?P<s>\d)_(?P<i>\d+)_branch1", "s{s}.pathway{p}_res{i}.branch1", "s{s}.pathway{p}_res{i}.branch1_"),
    (r"(?P<t>t_)?res(?P<s>\d)_(?P<i>\d+)_branch2(?P<x>[abc])",
     "s{s}.pathway{p}_res{i}.branch2.{x}", "s{s}.pathway{p}_res{i}.branch2.{x}_"),
    (r"t_pool1_subsample", "s1_fuse.conv_f2s", "s1_fuse"),
    (r"t_res(?P<s>\d)_\d+_branch2c_bn_subsample", "s{s}_fuse.conv_f2s", "s{s}_fuse"),
    (r"nonlocal_conv(?P<s>\d)_(?P<i>\d+)_(?P<x>theta|phi|g|out)", "s{s}.pathway0_nonlocal{i}.conv_{x}", None),
    (r"nonlocal_conv(?P<s>\d)_(?P<i>\d+)", None, "s{s}.pathway0_nonlocal{i}"),
    (r"pred", "head.projection", None),
]
_CAFFE2_MODULES = [(re.compile(pattern), conv, bn) for pattern, conv, bn in _CAFFE2_MODULES]

# Training state stored next to the weights; not part of the model.
CAFFE2_SKIPPED_SUFFIXES = ("_momentum",)
CAFFE2_SKIPPED_NAMES = ("lr", "model_iter")


def is_caffe2_training_state(name: str) -> bool:
    return name in CAFFE2_SKIPPED_NAMES or name.endswith(CAFFE2_SKIPPED_SUFFIXES)


def caffe2_name_to_pyslowfast(name: str) -> str | None:
    """`t_res4_22_branch2c_bn_subsample_bn_riv` -> `s4_fuse.bn.running_var`; None if unknown."""
    blob = _CAFFE2_BLOB.fullmatch(name)
    if blob is None:
        return None
    param = _CAFFE2_PARAMS[blob["param"]]
    is_bn = param.startswith("bn.")
    for pattern, conv_module, bn_module in _CAFFE2_MODULES:
        match = pattern.fullmatch(blob["module"])
        if match is None:
            continue
        template = bn_module if is_bn else conv_module
        if template is None:
            continue
        groups = match.groupdict()
        groups["p"] = "1" if groups.pop("t", None) else "0"
        module = template.format(**groups)
        # BN modules sit beside the conv: `branch1_` + `bn.weight` = `branch1_bn.weight`.
        return f"{module}{param}" if module.endswith("_") else f"{module}.{param}"
    return None


def caffe2_to_sfdet(blobs: dict) -> tuple[dict, list[str]]:
    """caffe2 `blobs` -> (sfdet state dict of float tensors, blob names with no sfdet name).

    Training state (`*_momentum`, `lr`, `model_iter`) is dropped silently. Blob
    shapes are kept as stored; fitting them to the model (trailing 1s) is the
    loader's job, because only the model knows the target shape.
    """
    converted, unknown = {}, []
    for name, blob in blobs.items():
        if is_caffe2_training_state(name):
            continue
        pyslowfast_key = caffe2_name_to_pyslowfast(name)
        sfdet_key = pyslowfast_key_to_sfdet(pyslowfast_key) if pyslowfast_key else None
        if sfdet_key is None:
            unknown.append(name)
            continue
        converted[sfdet_key] = torch.from_numpy(np.array(blob, copy=True))
    return converted, unknown
