"""`train.init`: where a training run's weights start from.

* `random`: the model builder's initialisation (PySlowFast's).
* a checkpoint path or registry name in any format `sfdet.models.load_checkpoint`
  reads (sfdet, PyTorchVideo, PySlowFast, caffe2): the backbone must fit the
  configured architecture; the head is rebuilt when the classes differ.
* a torchvision 2D ImageNet ResNet state dict: inflated into the Slow pathway.

Fine-tuning onto another label map rebuilds the classifier for the new
classes; a class whose NAME is also in the checkpoint's label map keeps its
row of weights (ids may differ between label maps, names are what match).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sfdet.errors import CheckpointError
from sfdet.models.checkpoint import load_checkpoint
from sfdet.models.checkpoint_files import detect_format, read_checkpoint_file

HEAD_KEYS = ("head.proj.weight", "head.proj.bias")
_SHOWN = 5


def _source_model(spec: str, target_cfg):
    """(source model, CheckpointInfo); 2D torchvision weights are inflated into the target architecture."""
    cfg = None
    path = Path(spec)
    if path.is_file() and detect_format(read_checkpoint_file(path), str(path)) == "torchvision":
        cfg = target_cfg
    return load_checkpoint(spec, strict=False, cfg=cfg, progress=True)


def _list(keys: list[str]) -> str:
    more = f", ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def initialize_from(model: torch.nn.Module, spec: str, label_map: dict[int, str], strict: bool = True) -> list[str]:
    """Load `spec`'s weights into `model` (whose head has one output per `label_map` entry).

    Returns the one-line messages to show the user. With `strict`, backbone
    tensors of the model that the checkpoint lacks or cannot fill raise one
    CheckpointError listing them (torchvision 2D weights only ever fill the Slow pathway).
    """
    if spec == "random":
        return []
    source, info = _source_model(spec, model.cfg)
    provided = set(source.state_dict()) - set(info.missing)
    source_state = {k: v for k, v in source.state_dict().items() if k in provided}
    target_state = model.state_dict()

    loadable, problems = {}, []
    for key, target in target_state.items():
        if key in HEAD_KEYS or key.endswith("num_batches_tracked"):
            continue
        value = source_state.get(key)
        if value is None:
            if info.format != "torchvision":
                problems.append(f"{key} (missing)")
        elif value.shape != target.shape:
            problems.append(f"{key} (checkpoint {tuple(value.shape)} vs model {tuple(target.shape)})")
        else:
            loadable[key] = value
    if problems and strict:
        raise CheckpointError(
            f"train.init={spec}: {len(problems)} model tensors do not fit ({_list(problems)}); "
            f"use a checkpoint of the configured architecture or train.init_strict=false"
        )
    messages = [f"init: loaded {len(loadable)} tensors from {info.source} ({info.format})"]
    if problems:
        messages.append(f"init: {len(problems)} tensors left at their initialisation: {_list(problems)}")

    messages += _fit_head(loadable, source_state, info.label_map, label_map, target_state)
    model.load_state_dict(loadable, strict=False)
    return messages


def _fit_head(loadable: dict, source_state: dict, source_labels: dict[int, str] | None,
              target_labels: dict[int, str], target_state: dict) -> list[str]:
    """Copy the classifier as is, or row by row for classes whose names match."""
    weight, bias = (source_state.get(k) for k in HEAD_KEYS)
    if weight is None or bias is None:
        return []
    target_weight = target_state[HEAD_KEYS[0]]
    if weight.shape[1] != target_weight.shape[1]:
        return ["init: head rebuilt (the checkpoint's head has another input width)"]
    target_names = list(target_labels.values())
    same_classes = (list(source_labels.values()) == target_names) if source_labels else (
        weight.shape[0] == len(target_names))
    if same_classes and weight.shape == target_weight.shape:
        loadable[HEAD_KEYS[0]], loadable[HEAD_KEYS[1]] = weight, bias
        return []
    new_weight, new_bias = target_weight.clone(), target_state[HEAD_KEYS[1]].clone()
    source_row = {name: row for row, name in enumerate(source_labels.values())} if source_labels else {}
    kept = [name for name in target_names if name in source_row and source_row[name] < weight.shape[0]]
    for row, name in enumerate(target_names):
        if name in source_row and source_row[name] < weight.shape[0]:
            new_weight[row] = weight[source_row[name]]
            new_bias[row] = bias[source_row[name]]
    loadable[HEAD_KEYS[0]], loadable[HEAD_KEYS[1]] = new_weight, new_bias
    names = "no label map in the checkpoint" if not source_labels else f"{len(kept)} matched by name kept their weights"
    return [f"init: head rebuilt for {len(target_names)} classes (checkpoint has {weight.shape[0]}); {names}"]
