"""3D ResNet pieces of one pathway: stem, basic and bottleneck blocks, stages.

Conventions follow PySlowFast (STRIDE_1X1=False) and PyTorchVideo, so their
weights load unchanged: the temporal kernel sits in the block's first conv
(padded by kt//2, so T never changes), the spatial stride and dilation sit in
the 1x3x3 conv, and a 1x1x1 projection shortcut (conv + BN) appears only where
the channel count or the stride changes. Every tensor is (B, C, T, H, W).
"""

from __future__ import annotations

import torch
from torch import nn

from sfdet.models.nonlocal_block import NonLocal


def batch_norm(channels: int, eps: float, momentum: float) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=eps, momentum=momentum)


class ProjectionShortcut(nn.Module):
    """1x1x1 conv (spatial stride, no bias) + BN, for a residual whose channels or resolution change."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, bn_eps: float, bn_momentum: float):
        super().__init__()
        self.conv = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
        self.bn = batch_norm(dim_out, bn_eps, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Stem(nn.Module):
    """(B, C_in, T, H, W) -> (B, C, T, H/4, W/4): conv (stride 1,2,2) + BN + ReLU + max pool (1,3,3)/(1,2,2)."""

    def __init__(self, dim_in: int, dim_out: int, kernel: list[int], bn_eps: float, bn_momentum: float):
        super().__init__()
        self.conv = nn.Conv3d(dim_in, dim_out, tuple(kernel), stride=(1, 2, 2),
                              padding=tuple(k // 2 for k in kernel), bias=False)
        self.bn = batch_norm(dim_out, bn_eps, bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


def projection_shortcut(dim_in: int, dim_out: int, stride: int, bn_eps: float,
                        bn_momentum: float) -> ProjectionShortcut | None:
    """The shortcut of a block: None (identity) when the residual can be added as it is."""
    if dim_in == dim_out and stride == 1:
        return None
    return ProjectionShortcut(dim_in, dim_out, stride, bn_eps, bn_momentum)


class BottleneckBlock(nn.Module):
    """conv_a (kt,1,1) -> conv_b (1,3,3, stride, dilation) -> conv_c 1x1x1, BN after each, residual add, ReLU."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, temporal_kernel: int, stride: int,
                 dilation: int, bn_eps: float, bn_momentum: float):
        super().__init__()
        self.shortcut = projection_shortcut(dim_in, dim_out, stride, bn_eps, bn_momentum)
        self.conv_a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                                bias=False)
        self.bn_a = batch_norm(dim_inner, bn_eps, bn_momentum)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride),
                                padding=(0, dilation, dilation), dilation=(1, dilation, dilation), bias=False)
        self.bn_b = batch_norm(dim_inner, bn_eps, bn_momentum)
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.bn_c = batch_norm(dim_out, bn_eps, bn_momentum)
        self.relu = nn.ReLU(inplace=True)

    @property
    def final_bn(self) -> nn.BatchNorm3d:
        return self.bn_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + identity)


class BasicBlock(nn.Module):
    """conv_a (kt,3,3, stride) -> conv_b (1,3,3, dilation), BN after each, residual add, ReLU.

    The temporal kernel and the stride sit in conv_a as in PySlowFast's
    BasicTransform. Unlike it, conv_b honours the stage dilation, so a
    detection-style last stage (stride 1, dilation 2) keeps its receptive field.
    """

    def __init__(self, dim_in: int, dim_out: int, temporal_kernel: int, stride: int, dilation: int,
                 bn_eps: float, bn_momentum: float):
        super().__init__()
        self.shortcut = projection_shortcut(dim_in, dim_out, stride, bn_eps, bn_momentum)
        self.conv_a = nn.Conv3d(dim_in, dim_out, (temporal_kernel, 3, 3), stride=(1, stride, stride),
                                padding=(temporal_kernel // 2, 1, 1), bias=False)
        self.bn_a = batch_norm(dim_out, bn_eps, bn_momentum)
        self.conv_b = nn.Conv3d(dim_out, dim_out, (1, 3, 3), padding=(0, dilation, dilation),
                                dilation=(1, dilation, dilation), bias=False)
        self.bn_b = batch_norm(dim_out, bn_eps, bn_momentum)
        self.relu = nn.ReLU(inplace=True)

    @property
    def final_bn(self) -> nn.BatchNorm3d:
        return self.bn_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.bn_b(self.conv_b(y))
        return self.relu(y + identity)


class ResStage(nn.Module):
    """One stage of one pathway: `blocks`, with optional non-local blocks after some of them.

    `nonlocal_blocks[str(i)]` runs right after `blocks[i]` (PySlowFast's
    `pathway0_nonlocal{i}`). Only the first block changes channels and stride.
    """

    def __init__(self, block_type: str, dim_in: int, dim_out: int, dim_inner: int, temporal_kernels: list[int],
                 stride: int, dilation: int, bn_eps: float, bn_momentum: float,
                 nonlocal_after: list[int] = (), nonlocal_pool: list[int] = (1, 2, 2),
                 nonlocal_instantiation: str = "softmax"):
        super().__init__()
        blocks = []
        for i, kt in enumerate(temporal_kernels):
            block_in, block_stride = (dim_in, stride) if i == 0 else (dim_out, 1)
            if block_type == "bottleneck":
                blocks.append(BottleneckBlock(block_in, dim_out, dim_inner, kt, block_stride, dilation,
                                              bn_eps, bn_momentum))
            else:
                blocks.append(BasicBlock(block_in, dim_out, kt, block_stride, dilation, bn_eps, bn_momentum))
        self.blocks = nn.ModuleList(blocks)
        self.nonlocal_blocks = nn.ModuleDict({
            str(i): NonLocal(dim_out, dim_out // 2, nonlocal_pool, nonlocal_instantiation, bn_eps, bn_momentum)
            for i in sorted(nonlocal_after)
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if str(i) in self.nonlocal_blocks:
                x = self.nonlocal_blocks[str(i)](x)
        return x
