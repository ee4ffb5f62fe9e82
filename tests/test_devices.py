"""Device and precision choice (`sfdet.devices`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from sfdet import devices
from sfdet.errors import ConfigError


def test_bf16_is_not_fast_when_torch_is_limited_to_avx2():
    """`ATEN_CPU_CAPABILITY=avx2` (how an AVX2-only CPU is emulated): `precision auto` must not pick bf16."""
    code = "from sfdet.devices import fast_low_precision_available, resolve_precision; import torch; " \
           "print(fast_low_precision_available('cpu'), resolve_precision('auto', torch.device('cpu')))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "fp32"]


def test_pick_device_and_precision_errors_name_the_setting():
    assert devices.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device must be one of auto, cpu, cuda, got 'gpu'"):
        devices.pick_device("gpu")
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        devices.resolve_precision("fp8", torch.device("cpu"), key="train.precision")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            devices.pick_device("cuda")
