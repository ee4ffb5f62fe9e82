"""Device and precision choice: the one place that says which device and which float format a run uses.

A leaf module (imports only torch, `sfdet.errors` and the torch-free names in `sfdet.device_choices`),
used by training, prediction, the person-detector tools and the demo alike.
"""

from __future__ import annotations

import os

import torch

from sfdet.device_choices import CONCRETE_PRECISIONS, DEVICES, PRECISIONS
from sfdet.errors import ConfigError

__all__ = ["CONCRETE_PRECISIONS", "DEVICES", "PRECISIONS", "fast_low_precision_available", "pick_device",
           "resolve_precision"]


def pick_device(name: str, local_rank: int | None = None, key: str = "--device") -> torch.device:
    """`auto|cpu|cuda` -> a torch device; `auto` is CUDA when available, else the CPU.

    The CUDA index is `local_rank` (default: torchrun's `LOCAL_RANK`) modulo the GPU count.
    `key` names the setting in errors (`--device`, `train.device`).
    """
    if name not in DEVICES:
        raise ConfigError(f"{key} must be one of {', '.join(DEVICES)}, got '{name}'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{key}: 'cuda' requested but no CUDA device is available; use cpu or auto")
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def fast_low_precision_available(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 convolutions are fast here: any CUDA GPU, or a CPU with AVX512-BF16 or AMX tiles."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    # torch limited below AVX512 (ATEN_CPU_CAPABILITY=avx2, as on an AVX2-only CPU): bf16 is emulated, slow.
    if getattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")() not in ("AVX512", "AMX"):
        return False
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(amx or avx512_bf16)


def resolve_precision(precision: str, device: torch.device, key: str = "precision") -> str:
    """`auto`: bf16 where its kernels are fast (a CUDA GPU with bf16, a CPU with AMX / AVX512-BF16), else fp32.

    Why not bf16 everywhere: on a CPU without those units bf16 is emulated and several times slower.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{key} must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if fast_low_precision_available(device) else "fp32"
