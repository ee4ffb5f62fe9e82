"""Mixed precision in training: fp32, bf16 (CUDA or CPU autocast), fp16 (CUDA, with a grad scaler).

`train.precision: auto` is resolved by `sfdet.devices.resolve_precision`, as `sfdet predict --precision auto`.
"""

from __future__ import annotations

import contextlib

import torch

from sfdet.errors import ConfigError


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("config key 'train.precision': fp16 needs CUDA; use bf16 or fp32 on CPU")


def autocast_context(precision: str, device: torch.device):
    """The autocast region of forward passes (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
