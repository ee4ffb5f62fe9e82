"""Which frames make the clip of a keyframe, and how the Slow pathway is taken from the Fast one.

A clip is `num_frames` frames, `sampling_rate` raw frames apart, around the centre frame
(the frame nearest to the keyframe time, as `sfdet.data.timing` decides), as PySlowFast's
`get_sequence` takes them: offsets `-L//2, -L//2 + sampling_rate, ...` with
`L = num_frames * sampling_rate`, so the centre frame is Fast frame `num_frames // 2`. Offsets
that fall before the first or after the last frame repeat the edge frame (clamping). Both
pixel sources (`video.py`, `frames.py`) use these offsets, so a video and the frames extracted from it give one clip.
"""

from __future__ import annotations

from typing import Sequence

import torch


def clip_offsets(num_frames: int, sampling_rate: int) -> list[int]:
    """Frame offsets from the centre frame: PySlowFast's `range(c - L//2, c + L//2, sampling_rate)`.

    Written as `num_frames` steps from `-L//2`, which is the same list whenever `L` is even
    and still `num_frames` long when it is odd (PySlowFast's range would then lose a frame).
    """
    half = num_frames * sampling_rate // 2
    return [-half + k * sampling_rate for k in range(num_frames)]


def clamped_indices(centre: int, offsets: Sequence[int], num_available: int) -> list[int]:
    """`centre + offsets`, with indices outside `[0, num_available)` repeating the edge frame."""
    return [min(max(centre + o, 0), num_available - 1) for o in offsets]


def slow_indices(num_fast: int, alpha: int, mode: str = "stride") -> torch.Tensor:
    """Positions of the Slow pathway frames within the Fast ones.

    "stride":   every alpha-th frame, `0, alpha, 2*alpha, ...` (the SlowFast paper's rule).
    "linspace": `linspace(0, T-1, T // alpha).long()` (PySlowFast `pack_pathway_output`,
                PyTorchVideo `PackPathway`), which the published AVA models were trained with.
    """
    if alpha < 1:
        raise ValueError(f"alpha must be >= 1, got {alpha}")
    if mode == "stride":
        return torch.arange(0, num_fast, alpha)
    if mode == "linspace":
        return torch.linspace(0, num_fast - 1, num_fast // alpha).long()
    raise ValueError(f"slow sampling must be 'stride' or 'linspace', got {mode!r}")


def pack_pathways(clip: torch.Tensor, alpha: int | None, mode: str = "stride") -> list[torch.Tensor]:
    """`(3, T, H, W)` clip -> model input: `[slow (3, T/alpha, H, W), fast (3, T, H, W)]`.

    `alpha=None` is a single-pathway (Slow-only) model, which reads every frame: `[clip]`.
    """
    if alpha is None:
        return [clip]
    slow = clip.index_select(1, slow_indices(clip.shape[1], alpha, mode))
    return [slow, clip]
