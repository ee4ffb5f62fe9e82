"""Per-box action classifier on top of the backbone features (PySlowFast / PyTorchVideo RoI head).

    features [(B, C_p, T_p, H, W) per pathway], rois (K, 5) [batch_idx, x1, y1, x2, y2] in input pixels
    -> logits (K, num_classes)

Each pathway is averaged over its whole clip, the pathways are concatenated
along channels, RoIAlign samples a R x R grid per box, a max over that grid,
dropout and a linear layer give one logit per class.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align


def boxes_to_rois(boxes: list[torch.Tensor] | torch.Tensor, batch_size: int, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """Per-clip boxes -> one (K, 5) [batch_idx, x1, y1, x2, y2] tensor, as RoIAlign wants.

    `boxes` is a list (len B) of (N_i, 4) boxes_xyxy_abs (N_i may be 0), or an
    already-indexed (K, 5) tensor, which is passed through.
    """
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"a boxes tensor must be (K, 5) [batch_idx, x1, y1, x2, y2], got {tuple(boxes.shape)}")
        return boxes.to(device=device, dtype=dtype)
    if len(boxes) != batch_size:
        raise ValueError(f"got boxes for {len(boxes)} clips but the batch has {batch_size}")
    rois = []
    for i, clip_boxes_xyxy_abs in enumerate(boxes):
        clip_boxes_xyxy_abs = torch.as_tensor(clip_boxes_xyxy_abs, device=device, dtype=dtype).reshape(-1, 4)
        index = torch.full((len(clip_boxes_xyxy_abs), 1), float(i), device=device, dtype=dtype)
        rois.append(torch.cat([index, clip_boxes_xyxy_abs], dim=1))
    return torch.cat(rois) if rois else torch.zeros((0, 5), device=device, dtype=dtype)


class RoIHead(nn.Module):
    """Temporal average pool -> concat pathways -> RoIAlign -> spatial max -> dropout -> linear."""

    def __init__(self, in_channels: int, num_classes: int, resolution: int, spatial_scale: float,
                 sampling_ratio: int = 0, aligned: bool = False, dropout: float = 0.5):
        super().__init__()
        self.resolution = resolution
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear(in_channels, num_classes)

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([f.mean(dim=2) for f in features], dim=1)  # (B, C, H, W)
        regions = roi_align(pooled, rois.to(pooled.dtype), output_size=self.resolution,
                            spatial_scale=self.spatial_scale, sampling_ratio=self.sampling_ratio,
                            aligned=self.aligned)  # (K, C, R, R)
        x = regions.amax(dim=(2, 3))  # (K, C)
        return self.proj(self.dropout(x))
