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
