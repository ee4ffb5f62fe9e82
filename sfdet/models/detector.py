"""The action detector (backbone + RoI head) and the one function that builds it from a `ModelConfig`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sfdet.models.config import ModelConfig
from sfdet.models.nonlocal_block import NonLocal
from sfdet.models.resnet3d import BasicBlock, BottleneckBlock
from sfdet.models.roi_head import RoIHead, boxes_to_rois
from sfdet.models.slowfast import SlowFast


class ActionDetector(nn.Module):
    """Scores every given person box for every action class.

        inputs  list of pathway clips: [slow (B,3,T/alpha,H,W), fast (B,3,T,H,W)], or [slow (B,3,T,H,W)]
        boxes   list (len B) of (N_i, 4) boxes_xyxy_abs in input pixels, or one (K, 5) [batch_idx, x1, y1, x2, y2]
        returns (K, num_classes): logits in train mode (for BCE-with-logits), sigmoid probabilities in
                eval mode; K = total number of boxes, possibly 0.
    """

    def __init__(self, backbone: nn.Module, head: RoIHead, cfg: ModelConfig | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.cfg = cfg

    def forward(self, inputs: list[torch.Tensor], boxes: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        features = self.backbone(inputs)
        rois = boxes_to_rois(boxes, inputs[0].shape[0], features[0].dtype, features[0].device)
        logits = self.head(features, rois)
        return logits if self.training else torch.sigmoid(logits)


def init_weights(model: nn.Module, zero_init_final_bn: bool = True) -> None:
    """PySlowFast's initialisation, for training from scratch.

    Convs: Kaiming normal (fan_out, ReLU); BN: weight 1, bias 0; linear: N(0, 0.01).
    The last BN of each residual branch (if `zero_init_final_bn`) and of each
    non-local block start at 0, so every block starts as the identity.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, (BasicBlock, BottleneckBlock)) and zero_init_final_bn:
            nn.init.zeros_(m.final_bn.weight)
        elif isinstance(m, NonLocal):
            nn.init.zeros_(m.bn.weight)


def build_model(cfg: ModelConfig) -> ActionDetector:
    """Every sfdet network (SlowFast, Slow-only, R18..R101, +non-local, toy) comes from here.

    The model keeps a copy of its config as `model.cfg` (checkpoints store it).
    """
    cfg = copy.deepcopy(cfg)
    cfg.validate()  # fields may have been changed after construction
    backbone = SlowFast(cfg)
    spatial_scale = cfg.roi_spatial_scale if cfg.roi_spatial_scale is not None else 1.0 / cfg.output_stride
    head = RoIHead(sum(backbone.out_channels), cfg.num_classes, cfg.roi_resolution, spatial_scale,
                   cfg.roi_sampling_ratio, cfg.roi_aligned, cfg.dropout)
    model = ActionDetector(backbone, head, cfg)
    init_weights(model, cfg.zero_init_final_bn)
    return model
