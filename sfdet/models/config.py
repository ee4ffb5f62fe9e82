"""Architecture config of the action detector (the `model:` section)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sfdet.errors import ConfigError

ARCHS = ("slowfast", "slow")
LATERALS = ("conv", "ttoc", "tsample")
FUSIONS = ("concat", "sum")
NONLOCAL_INSTANTIATIONS = ("softmax", "dot_product")

# Residual blocks per stage (res2..res5) of the standard depths.
STAGE_DEPTHS = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
BASIC_BLOCK_MAX_DEPTH = 49  # ResNet convention: depth < 50 uses basic blocks, >= 50 bottlenecks


@dataclass
class ModelConfig:
    """One dataclass describes every network, from the published R101 models to the toy one.

    Stages are counted res2..res5 (PySlowFast's s2..s5); per-stage lists have
    one entry per stage and their length must equal `num_stages`.
    """

    arch: str = "slowfast"  # "slowfast" | "slow"
    depth: int = 50  # 18 | 50 | 101: blocks per stage; depth < 50 = basic blocks, else bottlenecks
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
    # Blocks per stage that get the temporal kernel, the rest use 1 (PySlowFast
    # NUM_BLOCK_TEMP_KERNEL; its R101 AVA models use [3, 4, 6, 3]). None = every block.
    num_block_temp_kernel: list[int] | None = None
    spatial_strides: list[int] = field(default_factory=lambda: [1, 2, 2, 1])  # detection: res5 stride 1
    spatial_dilations: list[int] = field(default_factory=lambda: [1, 1, 1, 2])  # detection: res5 dilation 2
    # Non-local blocks in the Slow pathway of res4 (block indices after which one is inserted)
    nonlocal_res4: list[int] = field(default_factory=list)
    nonlocal_pool: list[int] = field(default_factory=lambda: [1, 2, 2])
    nonlocal_instantiation: str = "softmax"  # "softmax" | "dot_product" (PySlowFast R101 AVA configs)
    # Norm and init
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    zero_init_final_bn: bool = True  # last BN of each residual branch starts at 0 (PySlowFast ZERO_INIT_FINAL_BN)
    # Detection head
    num_classes: int = 80
    dropout: float = 0.5
    roi_resolution: int = 7
    roi_spatial_scale: float | None = None  # None = 1 / total spatial stride
    roi_sampling_ratio: int = 0
    roi_aligned: bool = False  # PyTorchVideo hub / PySlowFast c2 configs: False; PySlowFast SHORT configs: True

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------
    # Derived values (used by the builders)
    # ------------------------------------------------------------------
    @property
    def pathways(self) -> tuple[str, ...]:
        return ("slow", "fast") if self.arch == "slowfast" else ("slow",)

    @property
    def blocks_per_stage(self) -> list[int]:
        if self.stage_depths is not None:
            return list(self.stage_depths)
        return STAGE_DEPTHS[self.depth][: self.num_stages]

    @property
    def block_type(self) -> str:
        return "basic" if self.depth <= BASIC_BLOCK_MAX_DEPTH else "bottleneck"

    @property
    def output_stride(self) -> int:
        """Input pixels per backbone output pixel: stem conv (2) x stem pool (2) x stage strides."""
        return 4 * math.prod(self.spatial_strides)

    # ------------------------------------------------------------------
    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad key; also called by `build_model`."""
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"config key 'model.{key}': {why}")

        def one_of(key: str, choices: tuple[str, ...]) -> None:
            if getattr(self, key) not in choices:
                raise bad(key, f"expected one of {', '.join(choices)}, got {getattr(self, key)!r}")

        one_of("arch", ARCHS)
        one_of("lateral", LATERALS)
        one_of("fusion", FUSIONS)
        one_of("nonlocal_instantiation", NONLOCAL_INSTANTIATIONS)

        if not 1 <= self.num_stages <= 4:
            raise bad("num_stages", f"must be 1..4 (res2..res5), got {self.num_stages}")
        if self.stage_depths is None:
            if self.depth not in STAGE_DEPTHS:
                raise bad("depth", f"expected one of {', '.join(map(str, STAGE_DEPTHS))} "
                                   f"(or set model.stage_depths), got {self.depth}")
        elif len(self.stage_depths) != self.num_stages or min(self.stage_depths) < 1:
            raise bad("stage_depths", f"needs {self.num_stages} positive block counts "
                                      f"(one per stage), got {self.stage_depths}")

        for key in ("width", "in_channels", "alpha", "beta_inv", "fusion_conv_channel_ratio", "num_classes",
                    "roi_resolution"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.arch == "slowfast" and self.width % self.beta_inv:
            raise bad("beta_inv", f"must divide model.width ({self.width}) so the Fast pathway has "
                                  f"width/beta_inv channels, got {self.beta_inv}")
        if self.fusion_kernel < 1 or self.fusion_kernel % 2 == 0:
            raise bad("fusion_kernel", f"must be odd and >= 1, got {self.fusion_kernel}")

        for key in ("slow_stem_kernel", "fast_stem_kernel", "nonlocal_pool"):
            value = getattr(self, key)
            if len(value) != 3 or min(value) < 1:
                raise bad(key, f"needs 3 positive sizes (T, H, W), got {value}")
        for key in ("slow_stem_kernel", "fast_stem_kernel"):
            if any(k % 2 == 0 for k in getattr(self, key)):
                raise bad(key, f"sizes must be odd so 'same' padding keeps the shape, got {getattr(self, key)}")

        per_stage = ["slow_temporal_kernels", "fast_temporal_kernels", "spatial_strides", "spatial_dilations"]
        if self.num_block_temp_kernel is not None:
            per_stage.append("num_block_temp_kernel")
        for key in per_stage:
            value = getattr(self, key)
            if len(value) != self.num_stages:
                raise bad(key, f"needs one value per stage ({self.num_stages}, model.num_stages), got {value}")
            if min(value) < (0 if key == "num_block_temp_kernel" else 1):
                raise bad(key, f"values must be positive, got {value}")
        for key in ("slow_temporal_kernels", "fast_temporal_kernels"):
            if any(k % 2 == 0 for k in getattr(self, key)):
                raise bad(key, f"temporal kernels must be odd, got {getattr(self, key)}")
        if self.num_block_temp_kernel is not None:
            for count, blocks in zip(self.num_block_temp_kernel, self.blocks_per_stage):
                if count > blocks:
                    raise bad("num_block_temp_kernel", f"{self.num_block_temp_kernel} exceeds the blocks "
                                                       f"per stage {self.blocks_per_stage}")

        if self.nonlocal_res4:
            if self.num_stages < 3:
                raise bad("nonlocal_res4", f"needs res4 (model.num_stages >= 3), got num_stages {self.num_stages}")
            res4_blocks = self.blocks_per_stage[2]
            if any(not 0 <= i < res4_blocks for i in self.nonlocal_res4):
                raise bad("nonlocal_res4", f"block indices must be in 0..{res4_blocks - 1} "
                                           f"(res4 has {res4_blocks} blocks), got {self.nonlocal_res4}")

        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.roi_spatial_scale is not None and self.roi_spatial_scale <= 0:
            raise bad("roi_spatial_scale", f"must be > 0 (or null for 1/output stride), got {self.roi_spatial_scale}")
        if self.roi_sampling_ratio < 0:
            raise bad("roi_sampling_ratio", f"must be >= 0 (0 = adaptive), got {self.roi_sampling_ratio}")
        if self.bn_eps <= 0:
            raise bad("bn_eps", f"must be > 0, got {self.bn_eps}")
        if not 0.0 <= self.bn_momentum <= 1.0:
            raise bad("bn_momentum", f"must be in [0, 1], got {self.bn_momentum}")
