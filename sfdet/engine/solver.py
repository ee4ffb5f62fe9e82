"""Optimizer and learning-rate schedule.

The LR is a pure function of the iteration (fractional epoch), as in
PySlowFast: linear warmup from `warmup_start_lr` to the schedule's value at
`warmup_epochs`, then cosine or step decay. Being a pure function, it resumes
exactly from the iteration count stored in a checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sfdet.engine.config import TrainConfig

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (or AdamW) with two parameter groups: normalisation layers get `bn_weight_decay`, the rest `weight_decay`."""
    norm_params, other_params = [], []
    for module in model.modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        (norm_params if isinstance(module, _NORM_TYPES) else other_params).extend(params)
    groups = [
        {"params": other_params, "weight_decay": cfg.weight_decay},
        {"params": norm_params, "weight_decay": cfg.bn_weight_decay},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


class LRSchedule:
    """`schedule(epoch) -> lr` for a fractional epoch; `total_epochs` is the cosine horizon."""

    def __init__(self, cfg: TrainConfig, total_epochs: float):
        self.cfg = cfg
        self.total_epochs = float(total_epochs)

    def _after_warmup(self, epoch: float) -> float:
        cfg = self.cfg
        if cfg.schedule == "cosine":
            progress = min(epoch / self.total_epochs, 1.0) if self.total_epochs > 0 else 1.0
            return cfg.cosine_end_lr + (cfg.lr - cfg.cosine_end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        passed = sum(1 for step in cfg.lr_steps if epoch >= step)
        return cfg.lr * cfg.lr_step_factor**passed

    def __call__(self, epoch: float) -> float:
        warmup = self.cfg.warmup_epochs
        if epoch < warmup:
            start, end = self.cfg.warmup_start_lr, self._after_warmup(warmup)
            return start + (end - start) * epoch / warmup
        return self._after_warmup(epoch)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, iters_per_epoch: int, total_iters: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration LambdaLR over `LRSchedule` (call `.step()` after every optimizer step).

    The factor is a closure, so the scheduler's state dict holds only numbers
    (checkpoints load with `torch.load(weights_only=True)`).
    """
    schedule = LRSchedule(cfg, total_iters / iters_per_epoch)
    base_lr = cfg.lr if cfg.lr > 0 else 1.0
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = base_lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda=lambda iteration: schedule(iteration / iters_per_epoch) / base_lr
    )
