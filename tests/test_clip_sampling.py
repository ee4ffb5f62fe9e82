"""The centre frame -> clip frame indices rule (PySlowFast `get_sequence`) and the Slow/Fast packing."""

from __future__ import annotations

import torch

from sfdet.data.clip_sampling import clamped_indices, clip_offsets, pack_pathways, slow_indices


def test_offsets_are_pyslowfast_get_sequence():
    # PySlowFast: range(c - L//2, c + L//2, sampling_rate) with L = num_frames * sampling_rate
    for num_frames, rate in [(32, 2), (16, 2), (8, 8), (4, 16), (2, 3)]:
        length = num_frames * rate
        assert clip_offsets(num_frames, rate) == list(range(-(length // 2), length // 2, rate))
    # an odd L still gives num_frames frames (PySlowFast's range would give 1 here)
    assert clip_offsets(3, 1) == [-1, 0, 1]
    assert clip_offsets(1, 1) == [0]


def test_edges_repeat_first_and_last_frame():
    offsets = clip_offsets(4, 2)  # -4, -2, 0, 2
    assert clamped_indices(1, offsets, 10) == [0, 0, 1, 3]
    assert clamped_indices(9, offsets, 10) == [5, 7, 9, 9]
    assert clamped_indices(0, offsets, 1) == [0, 0, 0, 0]


def test_slow_pathway_stride_and_linspace():
    assert slow_indices(32, 4, "stride").tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    # PySlowFast pack_pathway_output / PyTorchVideo PackPathway: linspace(0, 31, 8).long()
    assert slow_indices(32, 4, "linspace").tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_indices(16, 4, "stride").tolist() == [0, 4, 8, 12]


def test_pack_pathways_shapes():
    clip = torch.arange(16.0).view(1, 16, 1, 1).expand(3, 16, 5, 7)
    slow, fast = pack_pathways(clip, alpha=4, mode="stride")
    assert fast.shape == (3, 16, 5, 7) and slow.shape == (3, 4, 5, 7)
    assert slow[0, :, 0, 0].tolist() == [0, 4, 8, 12]
    (only,) = pack_pathways(clip, alpha=None)
    assert only is clip
