"""Person-detector architectures and sfdet's self-describing detector checkpoint.

Why: the fine-tuner trains either a torchvision COCO detector (when the user has its weights)
or, offline with no pretrained weights at all, a small Faster R-CNN whose plain CNN trunk is
cheap enough to train from scratch on a few hundred keyframes on 2 CPU cores. Both are
torchvision `GeneralizedRCNN`-style models: `model(list of (3, H, W) float [0,1])` -> per image
`{"boxes": (N, 4) boxes_xyxy_abs, "scores": (N,), "labels": (N,)}`; the person is label 1 in
both (COCO's person index, and the one foreground class of the small model).

Checkpoint (`detector.pt`), a plain dict readable with `torch.load(weights_only=True)`:
    format          "sfdet-detector"
    arch            "tiny_fasterrcnn" or a torchvision detection model name
    arch_params     keyword arguments that rebuild the architecture (e.g. num_classes, widths)
    input_size      [min_size, max_size]: the short side frames are resized to, and the long-side cap
    score_threshold boxes scoring below this are not persons (the proposals' default cut)
    person_label    the label of the person class in the model's output
    model_state     state dict
    info            how it was trained and measured (dataset, epochs, val person AP)
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sfdet.errors import CheckpointError, ConfigError
from sfdet.predict.detectors import PersonDetector

CHECKPOINT_FORMAT = "sfdet-detector"
TINY_ARCH = "tiny_fasterrcnn"
PERSON_LABEL = 1


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyTrunk(nn.Module):
    """Plain CNN, four stages of (3x3 stride-2 conv, 3x3 conv), BN + ReLU: (B, 3, H, W) -> strides 2..16.

    `forward` returns {"0": stride-8 (B, widths[2], H/8, W/8), "1": stride-16 (B, widths[3], H/16, W/16)}.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        stages, in_channels = [], 3
        for width in widths:
            stages.append(nn.Sequential(_conv_bn_relu(in_channels, width, 2), _conv_bn_relu(width, width, 1)))
            in_channels = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> OrderedDict:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return OrderedDict([("0", outputs[-2]), ("1", outputs[-1])])


class TinyBackbone(nn.Module):
    """`TinyTrunk` + FPN (+ a max-pooled stride-32 level): {"0", "1", "pool"} maps of `out_channels`."""

    def __init__(self, widths: tuple[int, ...], out_channels: int):
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        self.body = TinyTrunk(widths)
        self.fpn = FeaturePyramidNetwork(list(widths[-2:]), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(self.body(x))


def tiny_fasterrcnn(
    min_size: int,
    max_size: int,
    num_classes: int = 2,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    fpn_channels: int = 32,
    anchor_sizes: tuple[tuple[int, ...], ...] = ((32, 48), (64, 96), (128, 192)),
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 3.0),
    representation_size: int = 128,
):
    """A small Faster R-CNN for people seen at a few hundred pixels (anchors: height/width 1, 2, 3)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = TinyBackbone(tuple(widths), fpn_channels)
    anchors = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes), (tuple(aspect_ratios),) * len(anchor_sizes))
    roi_pool = MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=128,
        box_score_thresh=0.01,
        box_detections_per_img=50,
    )


def build_model(arch: str, arch_params: dict, input_size: tuple[int, int]) -> nn.Module:
    """The architecture a checkpoint names, randomly initialised; `input_size` = (min_size, max_size)."""
    min_size, max_size = (int(v) for v in input_size)
    if arch == TINY_ARCH:
        return tiny_fasterrcnn(min_size, max_size, **arch_params)
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models.detection)
    if arch not in names:
        raise ConfigError(f"unknown detector architecture '{arch}'; choose {TINY_ARCH} or one of {', '.join(sorted(names))}")
    return torchvision.models.get_model(arch, weights=None, weights_backbone=None, min_size=min_size,
                                        max_size=max_size, **arch_params)


def save_detector(path: str | Path, model: nn.Module, arch: str, arch_params: dict, input_size: tuple[int, int],
                  score_threshold: float, info: dict | None = None) -> None:
    """Write the checkpoint atomically (a `.part` file renamed at the end: never a half-written detector.pt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_params": dict(arch_params),
        "input_size": [int(v) for v in input_size],
        "score_threshold": float(score_threshold),
        "person_label": PERSON_LABEL,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "info": dict(info or {}),
    }
    part = path.with_name(path.name + ".part")
    torch.save(checkpoint, part)
    part.replace(path)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict of an sfdet detector file, validated (one-line `CheckpointError` otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"detector checkpoint not found: {path}; train one with `sfdet train-detector`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, ...
        raise CheckpointError(f"{path}: not a readable torch file ({type(exc).__name__}); re-run `sfdet train-detector`") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an sfdet detector checkpoint (written by `sfdet train-detector`); "
                              "for torchvision COCO weights use --detector NAME --detector-weights FILE")
    missing = [k for k in ("arch", "arch_params", "input_size", "score_threshold", "model_state") if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: detector checkpoint lacks {', '.join(missing)}; re-run `sfdet train-detector`")
    return checkpoint


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode on CPU, checkpoint dict without the state) of a detector checkpoint."""
    checkpoint = read_checkpoint(path)
    model = build_model(checkpoint["arch"], checkpoint["arch_params"], checkpoint["input_size"])
    try:
        model.load_state_dict(checkpoint.pop("model_state"))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: state does not fit architecture '{checkpoint['arch']}' ({first_line})") from None
    return model.eval(), checkpoint


class TrainedDetector(PersonDetector):
    """A detector checkpoint behind the `sfdet.predict` interface:

    detector(frame_rgb (H, W, 3) uint8) -> boxes_xyxy_abs (N, 4) float32, scores (N,) float32 (score >= threshold).
    """

    def __init__(self, path: str | Path, score_threshold: float | None = None, device: str | torch.device = "cpu"):
        model, checkpoint = load_model(path)
        self.path = Path(path)
        self.name = f"sfdet:{self.path.name}"
        self.arch = checkpoint["arch"]
        self.person_label = int(checkpoint.get("person_label", PERSON_LABEL))
        self.score_threshold = float(checkpoint["score_threshold"] if score_threshold is None else score_threshold)
        self.info = checkpoint.get("info", {})
        self.device = torch.device(device)
        self.model = model.to(self.device)
        # The model's own post-processing must not cut below the threshold asked for.
        if hasattr(self.model, "roi_heads"):
            self.model.roi_heads.score_thresh = min(self.model.roi_heads.score_thresh, self.score_threshold)

    @torch.inference_mode()
    def _detect(self, frame_rgb, video_id, timestamp):
        image = torch.as_tensor(np.ascontiguousarray(frame_rgb)).to(self.device).permute(2, 0, 1).float() / 255.0
        (output,) = self.model([image])
        keep = (output["labels"] == self.person_label) & (output["scores"] >= self.score_threshold)
        return output["boxes"][keep].float().cpu().numpy(), output["scores"][keep].float().cpu().numpy()

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "arch": self.arch, "score_threshold": self.score_threshold}


def load_detector(path: str | Path, score_threshold: float | None = None,
                  device: str | torch.device = "cpu") -> TrainedDetector:
    """`detector.pt` written by `sfdet train-detector` -> a detector implementing the `sfdet.predict` interface."""
    return TrainedDetector(path, score_threshold, device)
