"""Mixed precision: fp32, bf16 (CUDA or CPU autocast), fp16 (CUDA, with a grad scaler), or auto."""

from __future__ import annotations

import contextlib

import torch

from sfdet.errors import ConfigError


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 where its kernels are fast (a CUDA GPU with bf16, a CPU with AMX / AVX512-BF16), else fp32.

    Why not bf16 everywhere: on a CPU without those units bf16 is emulated and several times slower.
    """
    if precision != "auto":
        return precision
    from sfdet.models.inference import fast_low_precision_available

    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if fast_low_precision_available(device) else "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("config key 'train.precision': fp16 needs CUDA; use bf16 or fp32 on CPU")


def autocast_context(precision: str, device: torch.device):
    """The autocast region of forward passes (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
