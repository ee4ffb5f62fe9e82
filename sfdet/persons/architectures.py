"""The architectures `sfdet train-detector` trains: a small Faster R-CNN from scratch, or a torchvision detector.

Why: the fine-tuner trains either a torchvision COCO detector (when the user has its weights)
or, offline with no pretrained weights at all, a small Faster R-CNN whose plain CNN trunk is
cheap enough to train from scratch on a few hundred keyframes on 2 CPU cores. Both are
torchvision `GeneralizedRCNN`-style models: `model(list of (3, H, W) float [0,1])` -> per image
`{"boxes": (N, 4) boxes_xyxy_abs, "scores": (N,), "labels": (N,)}`; the person is label 1 in
both (COCO's person index, and the one foreground class of the small model).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sfdet.errors import ConfigError
from sfdet.persons.torchvision_backend import torchvision_detection_models

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


def build_detector_model(arch: str, arch_params: dict, input_size: tuple[int, int]) -> nn.Module:
    """The architecture a detector checkpoint names, randomly initialised; `input_size` = (min_size, max_size)."""
    min_size, max_size = (int(v) for v in input_size)
    if arch == TINY_ARCH:
        return tiny_fasterrcnn(min_size, max_size, **arch_params)
    import torchvision

    names = torchvision_detection_models()
    if arch not in names:
        raise ConfigError(f"unknown detector architecture '{arch}'; choose {TINY_ARCH} or one of {', '.join(sorted(names))}")
    return torchvision.models.get_model(arch, weights=None, weights_backbone=None, min_size=min_size,
                                        max_size=max_size, **arch_params)
