"""Architecture config of the action detector (the `model:` section)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    """One dataclass describes every network, from the published R101 models to the toy one.

    Stages are counted res2..res5 (PySlowFast's s2..s5); per-stage lists have
    one entry per stage and their length must equal `num_stages`.
    """

    arch: str = "slowfast"  # "slowfast" | "slow"
    depth: int = 50  # 18 | 50 | 101: picks the block type and blocks per stage
    num_stages: int = 4  # 4 = res2..res5; the toy network uses 3
    stage_depths: list[int] | None = None  # blocks per stage; None = from `depth`
    width: int = 64  # Slow pathway stem channels (PySlowFast WIDTH_PER_GROUP)
    in_channels: int = 3
    # SlowFast
    alpha: int = 4  # frame-rate ratio Fast/Slow
    beta_inv: int = 8  # channel ratio Slow/Fast
    fusion_conv_channel_ratio: int = 2
    fusion_kernel: int = 7  # temporal kernel of the time-strided lateral conv
    lateral: str = "conv"  # "conv" (time-strided conv) | "ttoc" (time-to-channel) | "tsample" (time-strided sampling)
    fusion: str = "concat"  # "concat" | "sum"
    # Kernels and strides
    slow_stem_kernel: list[int] = field(default_factory=lambda: [1, 7, 7])
    fast_stem_kernel: list[int] = field(default_factory=lambda: [5, 7, 7])
    slow_temporal_kernels: list[int] = field(default_factory=lambda: [1, 1, 3, 3])
    fast_temporal_kernels: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    spatial_strides: list[int] = field(default_factory=lambda: [1, 2, 2, 1])  # detection: res5 stride 1
    spatial_dilations: list[int] = field(default_factory=lambda: [1, 1, 1, 2])  # detection: res5 dilation 2
    # Non-local blocks in the Slow pathway of res4 (block indices after which one is inserted)
    nonlocal_res4: list[int] = field(default_factory=list)
    nonlocal_pool: list[int] = field(default_factory=lambda: [1, 2, 2])
    # Norm
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    # Detection head
    num_classes: int = 80
    dropout: float = 0.5
    roi_resolution: int = 7
    roi_spatial_scale: float | None = None  # None = 1 / total spatial stride
    roi_sampling_ratio: int = 0
    roi_aligned: bool = False  # PyTorchVideo hub / PySlowFast c2 configs: False; PySlowFast SHORT configs: True
