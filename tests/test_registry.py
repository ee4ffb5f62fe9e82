"""Registry: every published model builds; downloads go to the torch hub cache, checked, never via the network here."""

from __future__ import annotations

import hashlib
import io
import typing
import urllib.error
from pathlib import Path

import pytest
import torch

from sfdet.data.config import DataConfig
from sfdet.errors import CheckpointError
from sfdet.models import ModelConfig, build_model, registry
from sfdet.models.checkpoint import load_checkpoint, save_sfdet_checkpoint
from sfdet.models.recipe import ClipRecipe

TINY = ModelConfig(arch="slow", depth=18, num_stages=2, stage_depths=[1, 1], width=8,
                   slow_temporal_kernels=[1, 3], fast_temporal_kernels=[3, 3], spatial_strides=[1, 1],
                   spatial_dilations=[1, 1], num_classes=80)


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_every_entry_builds_with_its_label_map(name):
    entry = registry.MODELS[name]
    assert entry.url.startswith(("https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/ava/",
                                 "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/ava/"))
    labels = entry.label_map()
    assert len(labels) == 80 and labels[1] == "bend/bow (at the waist)" and labels[80] == "watch (a person)"
    with torch.device("meta"):  # the constructor and init code, without allocating 60M R101 weights
        model = build_model(entry.build_config())
    assert model.head.proj.out_features == len(labels)
    if name == "slowfast_r50_detection":  # PyTorchVideo's published parameter count
        assert sum(p.numel() for p in model.parameters()) == 33_828_888


def test_reported_numbers():
    reported = {name: (m.reported_map, m.ava_version) for name, m in registry.MODELS.items()}
    assert reported == {
        "slowfast_r50_detection": (24.67, "2.2"),
        "slow_r50_detection": (19.5, "2.2"),
        "SLOWFAST_32x2_R101_50_50": (29.1, "2.2"),
        "SLOWFAST_32x2_R101_50_50_v2.1": (28.2, "2.1"),
        "SLOWFAST_64x2_R101_50_50": (29.4, "2.2"),
    }


def test_every_published_model_has_its_clip_recipe():
    # PySlowFast configs/AVA/c2/SLOWFAST_{32x2,64x2}_R101_50_50*.yaml: DATA.NUM_FRAMES / SAMPLING_RATE,
    # TEST_CROP_SIZE 256, DATA.MEAN/STD defaults; PyTorchVideo model zoo: SLOWFAST 8x8 (Fast 32 x 2),
    # SLOW 4x16; all trained on AVA's 30 fps frames with linspace Slow packing.
    frames = {name: (m.recipe.num_frames, m.recipe.sampling_rate) for name, m in registry.MODELS.items()}
    assert frames == {
        "slowfast_r50_detection": (32, 2),
        "slow_r50_detection": (4, 16),
        "SLOWFAST_32x2_R101_50_50": (32, 2),
        "SLOWFAST_32x2_R101_50_50_v2.1": (32, 2),
        "SLOWFAST_64x2_R101_50_50": (64, 2),
    }
    for entry in registry.MODELS.values():
        recipe = entry.recipe
        assert isinstance(recipe, ClipRecipe)
        cfg = entry.build_config()
        assert recipe.alpha == (cfg.alpha if cfg.arch == "slowfast" else None)  # the model's own frame ratio
        assert {k: v for k, v in recipe.to_dict().items() if k not in ("num_frames", "sampling_rate", "alpha")} == {
            "slow_sampling": "linspace", "test_short_side": 256, "mean": [0.45] * 3, "std": [0.225] * 3,
            "video_resample_fps": 30.0, "time_offset": 0.0}
        data = recipe.apply_to(DataConfig())  # every field is a valid DataConfig value
        assert {k: getattr(data, k) for k in recipe.data_fields()} == recipe.data_fields()


def test_recipe_defaults_are_the_data_config_defaults():
    """A stored training config leaves out keys at their defaults: a recipe derived from it must agree."""
    assert ClipRecipe.from_data({}, alpha=4).apply_to(DataConfig()) == DataConfig()
    assert ClipRecipe.from_data(DataConfig(), alpha=None) == ClipRecipe(alpha=None)
    with pytest.raises(ValueError, match="unknown clip recipe key 'num_frame'"):
        ClipRecipe.from_dict({"num_frame": 8})


def test_download_is_public_and_atomic(tmp_path):
    served = tmp_path / "server" / "weights.pth"
    served.parent.mkdir()
    served.write_bytes(b"w" * 3000)
    destination = tmp_path / "cache" / "weights.pth"
    registry.download(served.as_uri(), destination, progress=False)
    assert destination.read_bytes() == served.read_bytes()
    with pytest.raises(CheckpointError, match=r"cannot download .*missing\.pth .*put it at .*other\.pth$"):
        registry.download((tmp_path / "missing.pth").as_uri(), tmp_path / "cache" / "other.pth", progress=False)
    assert sorted(p.name for p in destination.parent.iterdir()) == ["weights.pth"]


class Hub(typing.NamedTuple):
    entry: registry.PublishedModel
    model: torch.nn.Module
    cached: Path  # where the file must land
    served: Path  # what the file:// URL serves


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An empty torch hub dir and a registered tiny model served from a local file:// URL."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    served = tmp_path / "server" / "TINY_DETECTION.pyth"
    served.parent.mkdir()
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    save_sfdet_checkpoint(served, model)
    data = served.read_bytes()
    entry = registry.PublishedModel(
        name="tiny", url=served.as_uri(), format="sfdet",
        model_config={k: v for k, v in vars(TINY).items()}, recipe=registry.ava_recipe(4, 16, alpha=None),
        ava_version="2.2",
        reported_map=0.0, pretrain="none", sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    monkeypatch.setitem(registry.MODELS, "tiny", entry)
    return Hub(entry, model, tmp_path / "torch_home" / "hub" / "checkpoints" / "TINY_DETECTION.pyth", served)


def test_download_goes_to_the_hub_cache_and_loads_by_name(hub):
    entry, model, cached, _ = hub
    assert registry.cache_path(entry) == cached
    assert registry.fetch("tiny", progress=False) == cached and cached.is_file()
    assert not list(cached.parent.glob("*.part"))

    loaded, info = load_checkpoint("tiny", progress=False)
    assert info.registry_entry is entry and info.source == str(cached)
    assert len(info.label_map) == 80 and info.recipe == entry.recipe == ClipRecipe(
        num_frames=4, sampling_rate=16, alpha=None, slow_sampling="linspace", test_short_side=256,
        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), video_resample_fps=30.0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_cached_file_is_reused_without_network(hub):
    entry, _, cached, _ = hub
    registry.fetch("tiny", progress=False)

    def no_network(url):
        raise AssertionError("a cached file must not be downloaded again")

    assert registry.fetch("tiny", opener=no_network, progress=False) == cached


@pytest.mark.parametrize("damage", ["size", "checksum"])
def test_damaged_cached_file_is_reported(hub, damage):
    cached = hub.cached
    cached.parent.mkdir(parents=True)
    data = bytearray(hub.served.read_bytes())
    if damage == "size":
        data = data[:-10]
    else:
        data[100] ^= 0xFF
    cached.write_bytes(bytes(data))
    expected = "bytes, expected" if damage == "size" else "sha256 is"
    with pytest.raises(CheckpointError, match=f"cached file {cached} of 'tiny' is damaged: .*{expected}.*"
                                              f"delete it to download it again"):
        registry.fetch("tiny", progress=False)


def test_corrupt_cached_file_says_to_delete_it(hub, monkeypatch):
    # An entry without a recorded size / sha256 cannot catch it before reading: the read error says what to do.
    unchecked = registry.PublishedModel(**{**vars(hub.entry), "sha256": None, "size_bytes": None})
    monkeypatch.setitem(registry.MODELS, "tiny", unchecked)
    hub.cached.parent.mkdir(parents=True)
    hub.cached.write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint("tiny", progress=False)
    message = str(exc.value)
    assert message.startswith(f"{hub.cached}: not a checkpoint")
    assert message.endswith("it is the cached download of 'tiny': delete it to download it again")


def test_offline_error_names_url_and_path(hub, monkeypatch):
    entry, _, cached, _ = hub
    offline = registry.PublishedModel(**{**vars(entry), "url": "file:///nonexistent-host-dir/TINY_DETECTION.pyth"})
    monkeypatch.setitem(registry.MODELS, "tiny", offline)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint("tiny", progress=False)
    message = str(exc.value)
    assert message.startswith("cannot download file:///nonexistent-host-dir/TINY_DETECTION.pyth (")
    assert message.endswith(f"download it elsewhere and put it at {cached}")
    assert not cached.exists() and not cached.with_name(cached.name + ".part").exists()


class _Response(io.BytesIO):
    def __init__(self, data: bytes, length: int):
        super().__init__(data)
        self.headers = {"Content-Length": str(length)}


def test_interrupted_download_leaves_nothing_behind(hub):
    entry, _, cached, _ = hub
    with pytest.raises(CheckpointError, match=r"connection closed after 100 of 5000 bytes"):
        registry.fetch("tiny", opener=lambda url: _Response(b"x" * 100, 5000), progress=False)
    assert not cached.exists() and not list(cached.parent.iterdir())


def test_corrupt_download_is_deleted(hub):
    entry, _, cached, _ = hub
    with pytest.raises(CheckpointError, match=r"the download of file://.* is damaged: it has 7 bytes"):
        registry.fetch("tiny", opener=lambda url: _Response(b"garbage", 7), progress=False)
    assert not cached.exists()


def test_failing_opener_is_the_offline_error(hub):
    def offline(url):
        raise urllib.error.URLError("Temporary failure in name resolution")

    with pytest.raises(CheckpointError, match="Temporary failure in name resolution.*put it at"):
        registry.fetch("tiny", opener=offline, progress=False)


def test_info_of_a_registered_model_needs_no_download(hub, capsys):
    from sfdet import cli

    assert cli.main(["info", "slow_r50_detection", "--input-size", "4", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "reported     val frame-mAP 19.5 on AVA v2.2, pretrained on Kinetics-400" in out
    assert "downloads to " + str(hub.cached.parent / "SLOW_4x16_R50_DETECTION.pyth") in out
    assert "input        4 frames at stride 16 (64 raw frames, 2.1 s at 30 fps)" in out
    assert "labels       80 classes" in out

    # The issue quotes 242 GFLOPs for SlowFast R50 at 32x256x320: 121.1 G multiply-adds = 242.2 G operations.
    assert cli.main(["info", "slowfast_r50_detection"]) == 0
    out = capsys.readouterr().out
    assert "parameters   33,828,888" in out
    assert "GFLOPs       121.1 (multiply-adds, as PySlowFast/fvcore) for a 32x256x320 clip and one box" in out
