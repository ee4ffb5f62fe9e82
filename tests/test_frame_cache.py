"""`data.cache: ram`: clips read from a video decoded into memory equal the ones decoded per clip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sfdet.data.clip_sampling import clip_offsets
from sfdet.data.config import DataConfig
from sfdet.data.dataset import AvaDataset
from sfdet.toy import generate_toy_dataset
from sfdet.data.video import DecodedVideo, VideoReader, write_video
from sfdet.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toy"
    generate_toy_dataset(root, seed=1, videos_train=0, videos_val=1, seconds=5, overwrite=True, workers=1)
    return root


def _ramp_video(path, num_frames=40, fps=10):
    frames = [np.full((16, 24, 3), 6 * i, np.uint8) for i in range(num_frames)]
    write_video(path, frames, fps, keyframe_interval=6)
    return path


@pytest.mark.parametrize("resample_fps", [None, 25.0])
def test_decoded_video_reads_the_clips_of_the_video_reader(tmp_path, resample_fps):
    path = _ramp_video(tmp_path / "ramp.mp4")
    decoded = DecodedVideo(path, resample_fps=resample_fps)
    offsets = clip_offsets(8, 2)
    # Keyframes at the start (clamped), inside, on half-frame ties, and on the last frame.
    for t in (0.0, 0.04, 0.05, 0.55, 1.0, 2.25, 3.9):
        with VideoReader(path, resample_fps=resample_fps) as reader:
            expected = reader.read_clip(t, offsets)
        assert torch.equal(decoded.read_clip(t, offsets), expected), t
    with pytest.raises(DataError, match="after the last readable frame"):
        decoded.read_clip(9.0, offsets)


def test_cached_dataset_equals_the_decoding_one(toy_root):
    cfg = DataConfig(root=str(toy_root), num_frames=8, sampling_rate=2, test_short_side=90)
    plain = AvaDataset(cfg, "val", alpha=4)
    cached = AvaDataset(dataclasses.replace(cfg, cache="ram"), "val", alpha=4)
    assert cached._decoded and set(cached._decoded) == set(plain.locations)
    for i in range(0, len(plain), max(1, len(plain) // 5)):
        for a, b in zip(plain[i]["inputs"], cached[i]["inputs"]):
            assert torch.equal(a, b)


def test_cache_needs_videos():
    with pytest.raises(ConfigError, match="'data.cache'"):
        DataConfig(source="frames", cache="ram")
    with pytest.raises(ConfigError, match="'data.cache'"):
        DataConfig(cache="disk")


def test_cache_refuses_what_does_not_fit(toy_root, monkeypatch):
    monkeypatch.setattr("sfdet.data.dataset.available_memory_bytes", lambda: 1000)
    with pytest.raises(DataError, match="data.cache=ram: .* set data.cache=none"):
        AvaDataset(DataConfig(root=str(toy_root), cache="ram"), "val", alpha=4)
