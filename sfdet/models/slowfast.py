"""SlowFast and Slow-only backbones (Feichtenhofer et al. 2019) and their Fast->Slow laterals.

    inputs  [slow (B, 3, T/alpha, H, W), fast (B, 3, T, H, W)]   ("slowfast")
            [slow (B, 3, T, H, W)]                                ("slow")
    outputs [slow (B, C_slow, T/alpha, H/s, W/s), fast (B, C_fast, T, H/s, W/s)],  s = cfg.output_stride

A lateral after the stem and after every stage but the last carries Fast
features into the Slow pathway: they are concatenated to (default) or summed
with the Slow features, and the next Slow stage reads the result.
"""

from __future__ import annotations

import torch
from torch import nn

from sfdet.errors import ConfigError
from sfdet.models.config import ModelConfig
from sfdet.models.resnet3d import ResStage, Stem, batch_norm


class Lateral(nn.Module):
    """Fast (B, C_f, alpha*T, H, W) -> (B, out_channels, T, H, W), to join the Slow pathway.

    Forms (SlowFast paper, Table 5):
      "conv"    time-strided conv, kernel (k,1,1), stride (alpha,1,1), padding k//2, + BN + ReLU;
                out_channels = fusion_conv_channel_ratio * C_f.
      "tsample" time-strided sampling: Fast frames 0, alpha, 2*alpha, ... (no parameters); C_f channels.
      "ttoc"    time-to-channel: each group of alpha consecutive frames becomes
                alpha*C_f channels (channel index = c*alpha + frame offset); no parameters.
    For `fusion="sum"` the lateral must have the Slow channel count: the conv
    form outputs `slow_channels` directly, and the parameter-free forms are
    followed by a 1x1x1 conv + BN + ReLU to `slow_channels` (the paper only
    evaluates concatenation; this is the smallest change that makes them summable).
    """

    def __init__(self, form: str, fast_channels: int, slow_channels: int, fusion: str, alpha: int,
                 kernel: int, channel_ratio: int, bn_eps: float, bn_momentum: float):
        super().__init__()
        self.form = form
        self.alpha = alpha
        sampled_channels = fast_channels * alpha if form == "ttoc" else fast_channels
        if form == "conv":
            self.out_channels = slow_channels if fusion == "sum" else channel_ratio * fast_channels
            self.conv = nn.Conv3d(fast_channels, self.out_channels, (kernel, 1, 1), stride=(alpha, 1, 1),
                                  padding=(kernel // 2, 0, 0), bias=False)
        elif fusion == "sum":
            self.out_channels = slow_channels
            self.conv = nn.Conv3d(sampled_channels, slow_channels, 1, bias=False)
        else:
            self.out_channels = sampled_channels
            self.conv = None
        self.bn = batch_norm(self.out_channels, bn_eps, bn_momentum) if self.conv is not None else None
        self.relu = nn.ReLU(inplace=True) if self.conv is not None else None

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        if self.form == "tsample":
            fast = fast[:, :, :: self.alpha]
        elif self.form == "ttoc":
            b, c, t, h, w = fast.shape
            fast = fast.reshape(b, c, t // self.alpha, self.alpha, h, w).transpose(2, 3)
            fast = fast.reshape(b, c * self.alpha, t // self.alpha, h, w)
        if self.conv is None:
            return fast
        return self.relu(self.bn(self.conv(fast)))


class SlowFast(nn.Module):
    """The backbone of every sfdet model; `cfg.arch == "slow"` builds the Slow pathway alone.

    Submodules (their names are the checkpoint keys): `stem.{slow,fast}`,
    `res{s}.{slow,fast}` for s = 2..1+num_stages, `fuse{k}` for k = 1..num_stages
    (after the stem, then after res2, res3, ...; none after the last stage),
    and `res4.slow.nonlocal_blocks.{i}`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pathways = cfg.pathways
        self.alpha = cfg.alpha
        self.fusion = cfg.fusion
        self.num_stages = cfg.num_stages
        bn = dict(bn_eps=cfg.bn_eps, bn_momentum=cfg.bn_momentum)
        width = {"slow": cfg.width, "fast": cfg.width // cfg.beta_inv}
        stem_kernels = {"slow": cfg.slow_stem_kernel, "fast": cfg.fast_stem_kernel}
        stage_kernels = {"slow": cfg.slow_temporal_kernels, "fast": cfg.fast_temporal_kernels}
        expansion = 4 if cfg.block_type == "bottleneck" else 1

        self.stem = nn.ModuleDict({p: Stem(cfg.in_channels, width[p], stem_kernels[p], **bn) for p in self.pathways})
        channels = dict(width)  # channels entering the next stage, per pathway
        self._add_lateral(1, cfg, channels)
        for j, blocks in enumerate(cfg.blocks_per_stage):
            s = j + 2
            with_kernel = blocks if cfg.num_block_temp_kernel is None else cfg.num_block_temp_kernel[j]
            stage = nn.ModuleDict()
            for p in self.pathways:
                dim_out = width[p] * expansion * 2**j
                stage[p] = ResStage(
                    cfg.block_type, channels[p], dim_out, width[p] * 2**j,
                    temporal_kernels=[stage_kernels[p][j] if i < with_kernel else 1 for i in range(blocks)],
                    stride=cfg.spatial_strides[j], dilation=cfg.spatial_dilations[j], **bn,
                    nonlocal_after=cfg.nonlocal_res4 if (s == 4 and p == "slow") else [],
                    nonlocal_pool=cfg.nonlocal_pool, nonlocal_instantiation=cfg.nonlocal_instantiation)
                channels[p] = dim_out
            self.add_module(f"res{s}", stage)
            if s <= cfg.num_stages:
                self._add_lateral(s, cfg, channels)
        self.out_channels = [channels[p] for p in self.pathways]

    def _add_lateral(self, k: int, cfg: ModelConfig, channels: dict[str, int]) -> None:
        """Add `fuse{k}` (SlowFast only) and update the Slow channel count it produces."""
        if len(self.pathways) < 2:
            return
        lateral = Lateral(cfg.lateral, channels["fast"], channels["slow"], cfg.fusion, cfg.alpha, cfg.fusion_kernel,
                          cfg.fusion_conv_channel_ratio, cfg.bn_eps, cfg.bn_momentum)
        self.add_module(f"fuse{k}", lateral)
        if cfg.fusion == "concat":
            channels["slow"] += lateral.out_channels

    def _fuse(self, k: int, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(self.pathways) < 2:
            return x
        slow, fast = x
        lateral = getattr(self, f"fuse{k}")(fast)
        slow = torch.cat([slow, lateral], dim=1) if self.fusion == "concat" else slow + lateral
        return [slow, fast]

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.pathways):
            raise ValueError(f"expected {len(self.pathways)} pathway tensors ({', '.join(self.pathways)}), "
                             f"got {len(inputs)}")
        if len(inputs) == 2 and inputs[1].shape[2] != self.alpha * inputs[0].shape[2]:
            raise ConfigError(f"the Slow pathway has {inputs[0].shape[2]} frames and the Fast pathway "
                              f"{inputs[1].shape[2]}, but Fast needs model.alpha ({self.alpha}) times as many: "
                              f"check data.num_frames and model.alpha")
        x = [self.stem[p](inp) for p, inp in zip(self.pathways, inputs)]
        x = self._fuse(1, x)
        for s in range(2, self.num_stages + 2):
            stage = getattr(self, f"res{s}")
            x = [stage[p](xp) for p, xp in zip(self.pathways, x)]
            if s <= self.num_stages:
                x = self._fuse(s, x)
        return x
