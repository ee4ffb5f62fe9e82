"""`sfdet predict --backend onnxruntime`: the action model on ONNX Runtime, from an exported file or any weights."""

from __future__ import annotations

from pathlib import Path

import torch

from sfdet.errors import ConfigError
from sfdet.export.onnx import require_onnx
from sfdet.export.onnx_runtime import OnnxActionModel
from sfdet.predict.clip_settings import model_clip_settings


ORT_PRECISIONS = ("auto", "fp32", "fp16")


def load_for_predict(weights: str, device: torch.device, precision: str = "auto", config_path: str | None = None,
                     overrides: list[str] = (), label_map_path: str | None = None, log=print):
    """`--weights` (an exported .onnx, or anything `sfdet export` reads: exported on the fly to a temporary
    file) -> (OnnxActionModel, DataConfig of its clips, label map), for `ActionPredictor`.

    precision: "auto" (an .onnx file: its own; otherwise fp32 on the CPU, fp16 on CUDA), "fp32" or "fp16".
    The clip settings: `--config` / overrides, else the file's recipe (as `sfdet predict` finds it for weights).
    """
    require_onnx("--backend onnxruntime", runtime_only=str(weights).endswith(".onnx"))
    from sfdet.data.ava import read_label_map

    if precision not in ORT_PRECISIONS:
        raise ConfigError(f"--backend onnxruntime runs fp32 or fp16 graphs; got --precision {precision}")
    label_map = read_label_map(label_map_path) if label_map_path else None
    if str(weights).endswith(".onnx"):
        model = OnnxActionModel(weights, device=device)
        if precision != "auto" and precision != model.precision:
            raise ConfigError(f"{weights} is a {model.precision} graph; drop --precision or pass "
                              f"--precision {model.precision} (export again for another precision)")
        if config_path is not None or overrides:
            from sfdet.config import load_config

            data_cfg = load_config(config_path, overrides).data
        else:
            data_cfg = model.metadata.data_config()
        if label_map is not None and len(label_map) != model.cfg.num_classes:
            raise ConfigError(f"the label map has {len(label_map)} classes but {weights} outputs "
                              f"{model.cfg.num_classes}")
        return model, data_cfg, label_map or model.label_map

    import atexit
    import shutil
    import tempfile

    from sfdet.export.onnx import export_onnx
    from sfdet.models import load_checkpoint
    from sfdet.models.recipe import ClipRecipe

    torch_model, info = load_checkpoint(weights, label_map=label_map)
    data_cfg = model_clip_settings(weights, info, config_path, overrides, log=log)
    cfg = torch_model.cfg
    recipe = ClipRecipe.from_data(data_cfg, cfg.alpha if cfg.arch == "slowfast" else None)
    label_map = info.label_map or {i + 1: f"class_{i + 1}" for i in range(cfg.num_classes)}
    if precision == "auto":
        precision = "fp16" if torch.device(device).type == "cuda" else "fp32"
    folder = tempfile.mkdtemp(prefix="sfdet-onnx-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / "action_model.onnx"
    result = export_onnx(torch_model, path, label_map, recipe, precision=precision, source=str(weights), check=False)
    log(f"exported {weights} to ONNX ({precision}, opset {result.opset}, {result.seconds:.1f} s) for ONNX Runtime")
    del torch_model
    return OnnxActionModel(path, device=device), data_cfg, label_map
