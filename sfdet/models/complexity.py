"""Model size and compute: parameter count and GFLOPs of one forward pass.

Convention: "GFLOPs" here are billions of multiply-adds (GMACs) of the
convolutions, linear layers and matrix products (non-local blocks), which is
what PySlowFast and fvcore report as GFLOPs. BN, ReLU, pooling and RoIAlign
are not counted. Multiply by 2 for the count of individual operations.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, inputs: list[torch.Tensor], boxes: list[torch.Tensor] | torch.Tensor) -> float:
    """GFLOPs (= GMACs, see the module docstring) of `model(inputs, boxes)` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs, boxes)
    finally:
        model.train(was_training)
    # FlopCounterMode counts a multiply-add as 2 FLOPs.
    return counter.get_total_flops() / 2 / 1e9
