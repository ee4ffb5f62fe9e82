"""Training config (the `train:` section).

The defaults are PySlowFast's AVA recipe (`configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml`):
SGD momentum 0.9, base LR 0.1 for a global batch of 64, weight decay 1e-7
(none on BN parameters), linear warmup from 0.000125 over 5 epochs, then
step decay x0.1 at epochs 10 and 15, 20 epochs, BCE on multi-hot targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfdet.device_choices import DEVICES, PRECISIONS
from sfdet.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "steps")


@dataclass
class TrainConfig:
    """Every knob of `sfdet train`; epochs may be fractional only through `max_iters`."""

    epochs: int = 20
    max_iters: int = 0  # stop after this many iterations in total (0 = no limit): budgets and tests
    batch_size: int = 64  # GLOBAL batch (clips per iteration over all processes)
    val_batch_size: int = 8  # per process
    num_workers: int = 2
    # Optimizer: "sgd" (PySlowFast's AVA recipe) or "adamw" (`momentum` is then beta1; small models from scratch)
    optimizer: str = "sgd"
    lr: float = 0.1  # base LR for `batch_size`
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-7
    bn_weight_decay: float = 0.0  # PySlowFast BN.WEIGHT_DECAY: BN weights/biases are not decayed
    # LR schedule: linear warmup, then cosine to `cosine_end_lr` or steps (x `lr_step_factor` at each epoch in `lr_steps`)
    schedule: str = "steps"
    warmup_epochs: float = 5.0
    warmup_start_lr: float = 0.000125
    lr_steps: list[float] = field(default_factory=lambda: [10.0, 15.0])
    lr_step_factor: float = 0.1
    cosine_end_lr: float = 0.0
    # Stability
    clip_grad_norm: float = 0.0  # max global grad norm (0 = no clipping)
    precision: str = "fp32"  # fp32 | fp16 (CUDA, with a grad scaler) | bf16 (CUDA or CPU autocast) | auto (bf16 where fast)
    # Weights and clips in channels-last 3D memory: the same maths, other kernels (on 2 CPU cores the toy
    # SlowFast trains 1.2x faster; results differ from contiguous memory at float rounding).
    channels_last: bool = False
    freeze_bn: bool = False  # BN layers use their running statistics while training (small batches, fine-tuning)
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA only)
    device: str = "auto"
    # Initialisation: "random", a checkpoint path (any format `load_checkpoint` reads),
    # a registry name, or a torchvision ImageNet ResNet state dict (inflated).
    init: str = "random"
    init_strict: bool = True  # backbone keys must all match (the head may always be rebuilt)
    # Bookkeeping
    checkpoint_every: int = 0  # also save every N iterations (0 = only at each epoch end)
    eval_every: int = 1  # validate every N epochs (0 = only after the last epoch)
    log_every: int = 10  # iterations between metrics-log records
    tensorboard: bool = True  # write TensorBoard events when `tensorboard` is installed

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"config key 'train.{key}': {why}")

        positive = ("epochs", "batch_size", "val_batch_size", "log_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("max_iters", "num_workers", "checkpoint_every", "eval_every"):
            if getattr(self, key) < 0:
                raise bad(key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("lr", "momentum", "weight_decay", "bn_weight_decay", "warmup_epochs",
                    "warmup_start_lr", "cosine_end_lr", "clip_grad_norm"):
            if getattr(self, key) < 0:
                raise bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.nesterov and self.optimizer != "sgd":
            raise bad("nesterov", "Nesterov momentum is an SGD option; set train.nesterov=false for adamw")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise bad("device", f"expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.nesterov and self.momentum == 0:
            raise bad("nesterov", "Nesterov momentum needs train.momentum > 0")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise bad("lr_steps", f"epochs must be increasing, got {self.lr_steps}")
        if not self.init:
            raise bad("init", "use 'random', a checkpoint path or a registry name")
