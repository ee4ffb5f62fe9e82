"""Non-local block (Wang et al. 2018) with PySlowFast's semantics, so its R101 AVA weights load.

    y = x + BN(out(sum_j f(theta(x_i), phi(x_j)) g(x_j)))

theta, phi and g are 1x1x1 convs (with bias) to `dim_inner` channels; phi and
g read a max-pooled copy of the input (`pool`, kernel = stride) to cut the
cost; f is either `softmax(theta.phi / sqrt(dim_inner))` over j ("softmax") or
`theta.phi / N_j` ("dot_product", the PySlowFast R101 AVA configs). The final
BN starts at zero (see `sfdet.models.detector.init_weights`), so a freshly
inserted block is the identity.
"""

from __future__ import annotations

import torch
from torch import nn


class NonLocal(nn.Module):
    """(B, C, T, H, W) -> (B, C, T, H, W)."""

    def __init__(self, dim: int, dim_inner: int, pool: list[int] = (1, 2, 2), instantiation: str = "softmax",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        if instantiation not in ("softmax", "dot_product"):
            raise ValueError(f"unknown non-local instantiation {instantiation!r}")
        self.dim_inner = dim_inner
        self.instantiation = instantiation
        self.theta = nn.Conv3d(dim, dim_inner, 1)
        self.phi = nn.Conv3d(dim, dim_inner, 1)
        self.g = nn.Conv3d(dim, dim_inner, 1)
        self.out = nn.Conv3d(dim_inner, dim, 1)
        self.bn = nn.BatchNorm3d(dim, eps=bn_eps, momentum=bn_momentum)
        pool = tuple(pool)
        self.pool = nn.MaxPool3d(pool, stride=pool) if any(p > 1 for p in pool) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        context = self.pool(x) if self.pool is not None else x
        theta = self.theta(x).flatten(2)  # (B, Ci, N_i)     N_i = T*H*W
        phi = self.phi(context).flatten(2)  # (B, Ci, N_j)   N_j = pooled positions
        g = self.g(context).flatten(2)  # (B, Ci, N_j)
        affinity = torch.matmul(theta.transpose(1, 2), phi)  # (B, N_i, N_j)
        if self.instantiation == "softmax":
            affinity = torch.softmax(affinity * self.dim_inner**-0.5, dim=2)
        else:
            affinity = affinity / affinity.shape[2]
        response = torch.matmul(g, affinity.transpose(1, 2))  # (B, Ci, N_i)
        response = response.view(b, self.dim_inner, t, h, w)
        return x + self.bn(self.out(response))
