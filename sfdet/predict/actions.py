"""The action model at prediction time: clip settings, per-frame preprocessing, batched scoring.

Preprocessing is the evaluation path's, to the bit: each decoded frame goes
through the Dataset's test `ClipTransform` (short side resize + normalise)
on its own (bilinear resizing is per frame, so a clip of transformed frames
equals the transformed clip), boxes go through the same transform, and
clips are packed into pathways as `clip_sampling.pack_pathways` does (channels-last, see `ActionPredictor`).

Clip settings: `sfdet.predict.clip_settings`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from sfdet.data.clip_sampling import clip_offsets, slow_indices
from sfdet.data.config import DataConfig
from sfdet.data.transforms import ClipTransform
from sfdet.devices import resolve_precision
from sfdet.errors import ConfigError
from sfdet.models.inference import optimize_for_inference
from sfdet.predict.clip_settings import model_clip_settings

DEFAULT_MODEL = "slowfast_r50_detection"
# Keyframe clips per forward pass when --batch-size is not given: a GPU needs bigger batches to be busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 16}


def default_batch_size(device: torch.device) -> int:
    return DEFAULT_BATCH_SIZE.get(device.type, DEFAULT_BATCH_SIZE["cpu"])


class ActionPredictor:
    """Model + clip settings.

    prepare_frame: (H, W, 3) uint8 -> (H', W', 3) float, the test transform of one frame
    model_boxes:   (H, W, 3) uint8 centre frame + (N, 4) boxes_xyxy_abs -> (N, 4) boxes in model pixels
    clip:          T prepared frames -> (T, H', W', 3)
    score:         clips (B x (T, H', W', 3)) + boxes (B x (N_i, 4)) -> B x (N_i, num_classes) numpy

    Frames stay channels-last (RGB innermost) from the resize to the model, whose convolutions read
    that layout (`sfdet.models.inference`): the batch reaches the first conv without a transpose.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_cfg: DataConfig,
        label_map: dict[int, str],
        device: torch.device,
        precision: str = "auto",
        name: str = "",
    ):
        # auto: bf16 on a CUDA GPU with bf16 and on CPUs with AMX / AVX512-BF16 (toy val frame-mAP equal to
        # fp32's, see the README), fp32 elsewhere; `--precision fp32` gives scores exact to ~1e-5.
        onnx = getattr(model, "is_onnx", False)  # an ONNX Runtime model (sfdet.export.onnx_runtime): runs as it is
        precision = model.precision if onnx else resolve_precision(precision, device, key="--precision")
        if precision == "fp16" and device.type != "cuda" and not onnx:
            raise ConfigError("--precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        num_classes = model.cfg.num_classes
        if len(label_map) != num_classes:
            raise ConfigError(f"the label map has {len(label_map)} classes but the model outputs {num_classes}")
        # BN folded into the convs, channels-last memory, weights cast once for bf16/fp16
        # (`sfdet.models.inference`; same scores to ~1e-5 in fp32); it runs in its own precision.
        self.model = model if onnx else optimize_for_inference(model.eval().to(device), precision)
        self.cfg = data_cfg
        self.label_map = dict(label_map)
        self.device = device
        self.precision = precision
        self.name = name
        self.alpha = model.cfg.alpha if model.cfg.arch == "slowfast" else None
        self.offsets = clip_offsets(data_cfg.num_frames, data_cfg.sampling_rate)
        self.transform = ClipTransform.from_config(data_cfg, train=False)

    @property
    def window_span(self) -> int:
        """Raw frames from the first to the last frame of a clip window."""
        return max(self.offsets) - min(self.offsets) + 1

    def prepare_frame(self, frame_rgb: np.ndarray) -> torch.Tensor:
        clip, _, _, _ = self.transform(torch.from_numpy(frame_rgb)[None], torch.zeros(0, 4), channels_last=True)
        return clip[0]

    @staticmethod
    def clip(frames: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(frames)

    def model_boxes(self, frame_rgb: np.ndarray, boxes_xyxy_abs: np.ndarray) -> torch.Tensor:
        boxes = torch.as_tensor(boxes_xyxy_abs, dtype=torch.float64).float()
        return self.transform.test_boxes(*frame_rgb.shape[:2], boxes)  # the frame's pixels are not needed

    @torch.inference_mode()
    def score(self, clips: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[np.ndarray]:
        batch = self._stack_on_device(clips)  # (B, T, H', W', 3)
        fast = batch.permute(0, 4, 1, 2, 3)  # (B, 3, T, H', W') with channels_last_3d strides: no copy
        if self.alpha is None:
            inputs = [fast]
        else:  # as `clip_sampling.pack_pathways`
            slow_frames = slow_indices(fast.shape[2], self.alpha, self.cfg.slow_sampling).to(batch.device)
            inputs = [batch.index_select(1, slow_frames).permute(0, 4, 1, 2, 3), fast]
        boxes_device = [b.to(self.device, non_blocking=True) for b in boxes]
        scores = self.model(inputs, boxes_device)
        scores = scores.float().cpu().numpy()
        splits = np.cumsum([len(b) for b in boxes])[:-1]
        return np.split(scores, splits)

    def _stack_on_device(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """`torch.stack(tensors)` on the model's device. For CUDA it is stacked straight into pinned
        memory, so the copy is asynchronous and no extra host copy is made."""
        if self.device.type != "cuda":
            return torch.stack(tensors)
        pinned = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
        return torch.stack(tensors, out=pinned).to(self.device, non_blocking=True)

    def describe(self) -> dict:
        cfg = self.cfg
        return {
            "name": self.name,
            "arch": self.model.cfg.arch,
            "num_classes": self.model.cfg.num_classes,
            "num_frames": cfg.num_frames,
            "sampling_rate": cfg.sampling_rate,
            "slow_sampling": cfg.slow_sampling,
            "test_short_side": cfg.test_short_side,
            "video_resample_fps": cfg.video_resample_fps,
            "precision": self.precision,
            "backend": "onnxruntime" if getattr(self.model, "is_onnx", False) else "torch",
        }


def load_action_predictor(
    weights: str | None,
    device: torch.device,
    precision: str = "auto",
    config_path: str | None = None,
    overrides: list[str] = (),
    label_map_path: str | None = None,
    log: Callable[[str], None] = print,
    backend: str = "torch",
) -> ActionPredictor:
    """`--weights` (a file or registry name; default the PyTorchVideo SlowFast R50) -> ActionPredictor."""
    from sfdet.data.ava import read_label_map
    from sfdet.models import load_checkpoint

    weights = weights or DEFAULT_MODEL
    if backend == "onnxruntime":  # the action model on ONNX Runtime (an .onnx file, or exported on the fly)
        from sfdet.predict.onnx_backend import load_for_predict

        model, data_cfg, label_map = load_for_predict(weights, device, precision, config_path, overrides,
                                                      label_map_path, log=log)
        return ActionPredictor(model, data_cfg, label_map, device, precision, name=str(weights))
    label_map = read_label_map(label_map_path) if label_map_path else None
    model, info = load_checkpoint(weights, label_map=label_map)
    data_cfg = model_clip_settings(weights, info, config_path, overrides, log)
    label_map = info.label_map or {i + 1: f"class_{i + 1}" for i in range(model.cfg.num_classes)}
    return ActionPredictor(model, data_cfg, label_map, device, precision, name=str(weights))
