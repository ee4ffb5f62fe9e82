"""An exported action detector run by ONNX Runtime, called like sfdet's torch inference model.

    model = OnnxActionModel("model.onnx", device="cpu")    # or "cuda": TensorRT / CUDA providers when present
    scores = model([slow, fast], boxes)                     # (K, num_classes) float32 torch tensor, on the CPU
    model.cfg, model.label_map, model.recipe, model.precision

`boxes` is what `ActionDetector` takes: a list (len B) of (N_i, 4) boxes_xyxy_abs in input
pixels, or one (K, 5) [batch_index, x1, y1, x2, y2] tensor. Inputs may be any torch tensors
(any layout, device or float dtype): they are handed to ONNX Runtime as contiguous float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sfdet.errors import ConfigError, SfdetError
from sfdet.export.onnx import OUTPUT_NAMES, OnnxMetadata, require_onnx
from sfdet.models.roi_head import boxes_to_rois

# Execution providers tried for --device cuda, best first (only those this onnxruntime build has).
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def pick_providers(device: str | torch.device = "cpu", providers: list[str] | None = None) -> list[str]:
    """The execution providers for a device: CPU; or TensorRT / CUDA (those present), then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is not None:
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise ConfigError(f"ONNX Runtime here has no {', '.join(unknown)} (it has {', '.join(available)})")
        return list(providers)
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ConfigError(f"the onnxruntime backend runs on cpu or cuda, not {device.type}")
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if not gpu:
        raise ConfigError("--device cuda with --backend onnxruntime needs onnxruntime-gpu (CUDA / TensorRT "
                          f"execution providers); this onnxruntime has {', '.join(available)}")
    return gpu + ["CPUExecutionProvider"]


class OnnxActionModel:
    """A drop-in for the torch inference model (`optimize_for_inference`) inside `ActionPredictor`."""

    is_onnx = True  # ActionPredictor runs it as it is (it is already the inference form)

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", providers: list[str] | None = None,
                 threads: int | None = None):
        require_onnx("the onnxruntime backend", runtime_only=True)
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise SfdetError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
        options.log_severity_level = 3  # errors only (not the per-node placement warnings)
        self.providers = pick_providers(device, providers)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / NotImplemented types
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise SfdetError(f"ONNX Runtime cannot load {self.path} with {', '.join(self.providers)}: "
                             f"{message}") from None
        self.metadata = OnnxMetadata.from_props(self.session.get_modelmeta().custom_metadata_map,
                                                source=str(self.path))
        self.cfg = self.metadata.build_model_config()
        self.label_map = self.metadata.label_map
        self.recipe = self.metadata.recipe
        self.precision = self.metadata.precision
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.device = torch.device("cpu")  # where results come back
        self.training = False

    # The parts of the nn.Module interface that ActionPredictor / callers use.
    def eval(self) -> OnnxActionModel:
        return self

    def to(self, *args, **kwargs) -> OnnxActionModel:
        return self

    def parameters(self):
        return iter(())

    def run(self, inputs: list[torch.Tensor], boxes: list[torch.Tensor] | torch.Tensor,
            outputs: tuple[str, ...] = OUTPUT_NAMES) -> list[torch.Tensor]:
        """Pathway clips + boxes -> the named outputs ("scores", "logits") as float32 CPU tensors."""
        if len(inputs) != len(self.input_names) - 1:
            raise ValueError(f"{self.path.name} takes {len(self.input_names) - 1} pathway clip(s) "
                             f"({', '.join(self.input_names[:-1])}), got {len(inputs)}")
        rois = boxes_to_rois(boxes, inputs[0].shape[0], torch.float32, torch.device("cpu"))
        feed = {name: _as_numpy(x) for name, x in zip(self.input_names, list(inputs) + [rois])}
        results = self.session.run(list(outputs), feed)
        return [torch.from_numpy(r) for r in results]

    def __call__(self, inputs: list[torch.Tensor], boxes: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """(K, num_classes) sigmoid probabilities, as the torch model in eval mode."""
        return self.run(inputs, boxes, outputs=("scores",))[0]

    forward = __call__


def _as_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def load_onnx_model(path: str | Path, device: str | torch.device = "cpu",
                    providers: list[str] | None = None) -> OnnxActionModel:
    return OnnxActionModel(path, device=device, providers=providers)


# --------------------------------------------------------------------------
# `sfdet predict --backend onnxruntime`
# --------------------------------------------------------------------------

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
    from sfdet.predict.actions import clip_settings

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
    data_cfg = clip_settings(weights, info, config_path, overrides, log=log)
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
