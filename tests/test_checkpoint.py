"""Checkpoint formats: caffe2 pickles and PySlowFast files load to identical outputs; bad input is one line.

The caffe2 and PySlowFast files are written here from random weights. Their
names are GENERATED from the two naming schemes (`_published_names`), written
independently of sfdet's converter: the converter is never run backwards.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sfdet import cli
from sfdet.errors import CheckpointError, ConfigError
from sfdet.models import ModelConfig, build_model
from sfdet.models.checkpoint import CheckpointInfo, load_checkpoint, registry_recipe, save_sfdet_checkpoint
from sfdet.models.checkpoint_files import read_checkpoint_file
from sfdet.models.pyslowfast_keys import caffe2_name_to_pyslowfast, pyslowfast_key_to_sfdet
from sfdet.models.recipe import ClipRecipe

# A small network with the published R101 naming: bottlenecks, projection
# shortcuts, laterals after the stem and res2..res4, temporal kernels only in the
# first blocks of each stage, dot-product non-local blocks in res4.
SMALL = dict(arch="slowfast", depth=50, stage_depths=[2, 2, 7, 2], width=8, beta_inv=4, fusion_kernel=5,
             num_block_temp_kernel=[2, 1, 3, 2], nonlocal_res4=[2, 5], nonlocal_pool=[2, 2, 2],
             nonlocal_instantiation="dot_product", num_classes=5)
# PySlowFast SLOWFAST_32x2_R101_50_50(_v2.1): configs/AVA/c2/*.yaml
R101_NL = dict(arch="slowfast", depth=101, fusion_kernel=5, num_block_temp_kernel=[3, 4, 6, 3],
               nonlocal_res4=[6, 13, 20], nonlocal_pool=[2, 2, 2], nonlocal_instantiation="dot_product")

_BN_BLOBS = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def _published_names(cfg: ModelConfig):
    """Yield (caffe2 blob name, PySlowFast key, sfdet key) for every tensor of `cfg`'s network.

    caffe2 (PySlowFast c2 model zoo): `t_` prefix = Fast pathway; `conv1`/`res_conv1_bn`
    stem; `res{s}_{i}_branch1` shortcut; `res{s}_{i}_branch2{a,b,c}`; laterals named
    after the layer they read: `t_pool1_subsample`, `t_res{s}_{last}_branch2c_bn_subsample`;
    `nonlocal_conv4_{i}_{theta,phi,g,out}` and `_bn`; `pred`. BN: `_bn_{s,b,rm,riv}`.
    """

    def bn(c2: str, psf: str, sfdet: str):
        for tensor, suffix in _BN_BLOBS.items():
            yield f"{c2}_{suffix}", f"{psf}.{tensor}", f"{sfdet}.{tensor}"

    pathways = [("slow", "", 0), ("fast", "t_", 1)][: len(cfg.pathways)]
    for name, t, p in pathways:
        yield f"{t}conv1_w", f"s1.pathway{p}_stem.conv.weight", f"backbone.stem.{name}.conv.weight"
        yield from bn(f"{t}res_conv1_bn", f"s1.pathway{p}_stem.bn", f"backbone.stem.{name}.bn")
        for j, blocks in enumerate(cfg.blocks_per_stage):
            s = j + 2
            for i in range(blocks):
                c2, psf, sf = f"{t}res{s}_{i}", f"s{s}.pathway{p}_res{i}", f"backbone.res{s}.{name}.blocks.{i}"
                if i == 0:  # every bottleneck stage changes channels in its first block
                    yield f"{c2}_branch1_w", f"{psf}.branch1.weight", f"{sf}.shortcut.conv.weight"
                    yield from bn(f"{c2}_branch1_bn", f"{psf}.branch1_bn", f"{sf}.shortcut.bn")
                for x in "abc":
                    yield f"{c2}_branch2{x}_w", f"{psf}.branch2.{x}.weight", f"{sf}.conv_{x}.weight"
                    yield from bn(f"{c2}_branch2{x}_bn", f"{psf}.branch2.{x}_bn", f"{sf}.bn_{x}")
    if cfg.arch == "slowfast":
        for k in range(1, cfg.num_stages + 1):
            c2 = "t_pool1_subsample" if k == 1 else f"t_res{k}_{cfg.blocks_per_stage[k - 2] - 1}_branch2c_bn_subsample"
            yield f"{c2}_w", f"s{k}_fuse.conv_f2s.weight", f"backbone.fuse{k}.conv.weight"
            yield from bn(f"{c2}_bn", f"s{k}_fuse.bn", f"backbone.fuse{k}.bn")
    for i in cfg.nonlocal_res4:
        for part in ("theta", "phi", "g", "out"):
            for blob, tensor in (("w", "weight"), ("b", "bias")):
                yield (f"nonlocal_conv4_{i}_{part}_{blob}", f"s4.pathway0_nonlocal{i}.conv_{part}.{tensor}",
                       f"backbone.res4.slow.nonlocal_blocks.{i}.{part}.{tensor}")
        yield from bn(f"nonlocal_conv4_{i}_bn", f"s4.pathway0_nonlocal{i}.bn",
                      f"backbone.res4.slow.nonlocal_blocks.{i}.bn")
    yield "pred_w", "head.projection.weight", "head.proj.weight"
    yield "pred_b", "head.projection.bias", "head.proj.bias"


def _randomized(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A model whose every BN (stats included) and non-local block is non-trivial."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var") or (".bn" in key and key.endswith("weight")):
                tensor.uniform_(0.5, 1.5)
            elif key.endswith(("running_mean", "bias")):
                tensor.normal_(0, 0.1)
    return model.eval()


def _inputs(cfg: ModelConfig):
    torch.manual_seed(1)
    fast = torch.randn(2, 3, 8, 32, 48)  # (B, 3, T, H, W): small, CPU conv3d is slow on thin layers
    boxes = [torch.tensor([[4.0, 6.0, 40.0, 30.0], [0.0, 0.0, 47.0, 31.0]]), torch.tensor([[10.0, 3.0, 30.0, 20.0]])]
    return [fast[:, :, ::cfg.alpha].clone(), fast], boxes


def _outputs(model, cfg):
    inputs, boxes = _inputs(cfg)
    with torch.no_grad():
        return model(inputs, boxes)


def _write_caffe2(path, model, cfg, extra_dims_for=None):
    state = model.state_dict()
    blobs = {}
    for c2, _, sfdet in _published_names(cfg):
        blob = state[sfdet].numpy().copy()
        if c2 == extra_dims_for:  # a blob stored with fewer dims than the model tensor: (O, I) for (O, I, 1, 1, 1)
            blob = blob.reshape(blob.shape[:2])
        blobs[c2] = blob
        if c2.endswith("_w"):
            blobs[c2 + "_momentum"] = np.zeros_like(blob)
    blobs["lr"] = np.float32(0.1)
    blobs["model_iter"] = np.int64(1000)
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)


def _write_pyslowfast(path, model, cfg, cfg_field=None, legacy=False):
    state = model.state_dict()
    model_state = {}
    for _, psf, sfdet in _published_names(cfg):
        model_state[psf] = state[sfdet].clone()
        if psf.endswith("running_mean"):  # PyTorch-format files also keep the BN counters
            model_state[psf.replace("running_mean", "num_batches_tracked")] = torch.tensor(123)
    if cfg_field is None:
        cfg_field = yaml.safe_dump({"SLOWFAST": {"ALPHA": cfg.alpha}, "DETECTION": {"ALIGNED": False},
                                    "NONLOCAL": {"INSTANTIATION": "dot_product"},
                                    "DATA": {"NUM_FRAMES": 8, "SAMPLING_RATE": 2}})
    torch.save({"epoch": 7, "model_state": model_state, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": cfg_field}, path, _use_new_zipfile_serialization=not legacy)


@pytest.fixture(scope="module")
def small():
    cfg = ModelConfig(**SMALL)
    model = _randomized(cfg)
    return cfg, model, _outputs(model, cfg)


def test_full_r101_nonlocal_name_set_maps_without_gaps():
    cfg = ModelConfig(**R101_NL)
    with torch.device("meta"):
        model_keys = {k for k in build_model(cfg).state_dict() if not k.endswith("num_batches_tracked")}
    names = list(_published_names(cfg))
    assert "t_res4_22_branch2c_bn_subsample_w" in {c2 for c2, _, _ in names}
    assert "nonlocal_conv4_20_theta_w" in {c2 for c2, _, _ in names}
    from_caffe2 = {pyslowfast_key_to_sfdet(caffe2_name_to_pyslowfast(c2)) for c2, _, _ in names}
    from_pyslowfast = {pyslowfast_key_to_sfdet(psf) for _, psf, _ in names}
    assert from_caffe2 == from_pyslowfast == model_keys  # no missing, no unexpected
    for c2, psf, sfdet in names:
        assert caffe2_name_to_pyslowfast(c2) == psf, c2
        assert pyslowfast_key_to_sfdet(psf) == sfdet, psf


def test_caffe2_pickle_loads_to_identical_outputs(tmp_path, small):
    cfg, model, expected = small
    path = tmp_path / "SLOWFAST_32x2_R101_50_50_v2.1.pkl"
    _write_caffe2(path, model, cfg, extra_dims_for="res3_0_branch1_w")
    loaded, info = load_checkpoint(path)  # architecture inferred from the blobs
    assert info.format == "caffe2"
    assert info.fits_exactly
    assert info.model_config == cfg
    torch.testing.assert_close(_outputs(loaded, cfg), expected, rtol=0, atol=0)


def test_pyslowfast_file_loads_to_identical_outputs(tmp_path, small):
    cfg, model, expected = small
    path = tmp_path / "SLOWFAST_32x2_R101_50_50.pkl"  # PyTorch format despite the extension
    _write_pyslowfast(path, model, cfg)
    loaded, info = load_checkpoint(path)
    assert info.format == "pyslowfast"
    assert info.fits_exactly and info.model_config == cfg
    assert info.recipe == ClipRecipe(num_frames=8, sampling_rate=2, alpha=cfg.alpha, slow_sampling="linspace")
    assert info.train_config is None
    torch.testing.assert_close(_outputs(loaded, cfg), expected, rtol=0, atol=0)


def test_pyslowfast_cfg_hints_override_defaults(tmp_path, small):
    cfg, model, _ = small
    path = tmp_path / "alpha2.pyth"
    _write_pyslowfast(path, model, cfg, cfg_field=yaml.safe_dump({"SLOWFAST": {"ALPHA": 2},
                                                                  "DETECTION": {"ALIGNED": True}}))
    _, info = load_checkpoint(path)
    assert (info.model_config.alpha, info.model_config.roi_aligned) == (2, True)
    assert info.recipe is None  # no DATA section: nothing said about the clips


def test_pyslowfast_cfg_data_section_gives_the_clip_settings(tmp_path, small):
    cfg, model, _ = small
    path = tmp_path / "clips.pyth"
    data = {"NUM_FRAMES": 64, "SAMPLING_RATE": 2, "TEST_CROP_SIZE": 224, "MEAN": [0.5, 0.4, 0.3], "STD": [0.2, 0.2, 0.25]}
    _write_pyslowfast(path, model, cfg, cfg_field=yaml.safe_dump({"SLOWFAST": {"ALPHA": cfg.alpha}, "DATA": data}))
    _, info = load_checkpoint(path)
    assert info.recipe == ClipRecipe(num_frames=64, sampling_rate=2, alpha=cfg.alpha, slow_sampling="linspace",
                                     test_short_side=224, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25))


def test_training_config_of_an_sfdet_checkpoint_is_returned(tmp_path, small):
    cfg, model, _ = small
    train_config = {"seed": 3, "data": {"num_frames": 8, "video_resample_fps": 30.0}, "train": {"epochs": 2}}
    path = save_sfdet_checkpoint(tmp_path / "trained.pt", model, config=train_config, train_state={"epoch": 2})
    _, info = load_checkpoint(path)
    assert info.train_config == train_config
    # A checkpoint of before clip recipes: its recipe is derived from the stored config (DataConfig defaults else).
    assert info.recipe == ClipRecipe(num_frames=8, sampling_rate=2, alpha=cfg.alpha, video_resample_fps=30.0)
    plain = load_checkpoint(save_sfdet_checkpoint(tmp_path / "plain.pt", model))[1]
    assert plain.train_config is None and plain.recipe is None
    broken = save_sfdet_checkpoint(tmp_path / "broken.pt", model, config="data.num_frames=8")
    with pytest.raises(CheckpointError, match=r"broken\.pt: its stored training config \('config'\) is not a mapping"):
        load_checkpoint(broken)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-torch-layout"])
def test_pickled_yacs_cfg_is_read_without_running_code(tmp_path, small, monkeypatch, legacy):
    """Older PySlowFast files may pickle the yacs CfgNode itself, and predate torch's zip layout."""
    cfg, model, expected = small

    class CfgNode(dict):  # stands in for yacs.config.CfgNode
        def __init__(self, *args):
            super().__init__(*args)
            self.__dict__["__immutable__"] = True

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    yacs, yacs_config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    yacs_config.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", yacs_config)
    path = tmp_path / "with_yacs.pyth"
    _write_pyslowfast(path, model, cfg, cfg_field=CfgNode({"SLOWFAST": CfgNode({"ALPHA": 4})}), legacy=legacy)
    monkeypatch.delitem(sys.modules, "yacs")
    monkeypatch.delitem(sys.modules, "yacs.config")

    loaded, info = load_checkpoint(path)
    assert info.format == "pyslowfast" and info.fits_exactly
    torch.testing.assert_close(_outputs(loaded, cfg), expected, rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("layout", ["torch", "pickle"])
def test_files_with_arbitrary_objects_are_refused(tmp_path, capsys, layout):
    path = tmp_path / "evil.pyth"
    if layout == "torch":
        torch.save({"model_state": {"head.proj.weight": torch.zeros(2, 2)}, "cfg": _Evil()}, path)
    else:  # a caffe2-style pickle
        path.write_bytes(pickle.dumps({"blobs": {"pred_w": np.zeros((2, 2), np.float32)}, "cfg": _Evil()}))
    with pytest.raises(CheckpointError, match=r"contains a pickled builtins\.print, which sfdet does not unpickle"):
        read_checkpoint_file(path)
    assert "must never run" not in capsys.readouterr().out


def test_sfdet_round_trip_via_convert(tmp_path, small, capsys):
    cfg, model, expected = small
    source, out = tmp_path / "model.pkl", tmp_path / "model_sfdet.pyth"
    _write_caffe2(source, model, cfg)
    labels = tmp_path / "labels.pbtxt"
    labels.write_text("".join(f'item {{\n  name: "action {i}"\n  id: {i}\n}}\n' for i in range(1, 6)))
    assert cli.main(["convert", str(source), str(out), "--label-map", str(labels)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote   {out}" in printed
    assert ("recipe  none stored (the file does not say how its clips were made; sfdet predict will need "
            "--config YAML)") in printed

    stored = torch.load(out, weights_only=True)
    assert stored["format"] == "sfdet" and stored["version"] == 1 and stored["source"].startswith("caffe2:")
    loaded, info = load_checkpoint(out)
    assert info.format == "sfdet" and info.model_config == cfg
    assert info.label_map == {i: f"action {i}" for i in range(1, 6)}

    assert info.recipe is None and stored["recipe"] is None  # a caffe2 pickle says nothing about its clips

    pyslowfast, out2 = tmp_path / "model.pyth", tmp_path / "model2_sfdet.pyth"  # the clip recipe travels along
    _write_pyslowfast(pyslowfast, model, cfg)
    assert cli.main(["convert", str(pyslowfast), str(out2)]) == 0
    recipe = ClipRecipe(num_frames=8, sampling_rate=2, alpha=cfg.alpha, slow_sampling="linspace")
    assert load_checkpoint(out2)[1].recipe == recipe
    assert f"recipe  {recipe.describe()} (stated by the file; --config YAML sets another)" in capsys.readouterr().out
    torch.testing.assert_close(_outputs(loaded, cfg), expected, rtol=0, atol=0)


def test_clip_recipe_round_trips_through_checkpoints_and_convert(tmp_path, small, capsys):
    cfg, model, _ = small
    recipe = ClipRecipe(num_frames=16, sampling_rate=3, alpha=cfg.alpha, slow_sampling="linspace",
                        test_short_side=192, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), video_resample_fps=25.0,
                        time_offset=900.0)
    assert ClipRecipe.from_dict(recipe.to_dict()) == recipe
    path = save_sfdet_checkpoint(tmp_path / "model.pt", model, recipe=recipe, config={"data": {"num_frames": 4}})
    assert torch.load(path, weights_only=True)["recipe"] == recipe.to_dict()  # plain values: weights_only reads it
    assert load_checkpoint(path)[1].recipe == recipe  # the stored recipe wins over the stored training config

    out = tmp_path / "converted.pt"
    assert cli.main(["convert", str(path), str(out)]) == 0
    assert load_checkpoint(out)[1].recipe == recipe
    assert f"recipe  {recipe.describe()} (stated by the file; --config YAML sets another)" in capsys.readouterr().out

    # `convert --config`: the config's data section is the recipe (explicit wins), its model section the architecture.
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {k: v for k, v in SMALL.items()},
                                      "data": {"num_frames": 8, "sampling_rate": 4, "test_short_side": 160}}))
    out2 = tmp_path / "from_config.pt"
    assert cli.main(["convert", str(path), str(out2), "--config", str(config)]) == 0
    assert load_checkpoint(out2)[1].recipe == ClipRecipe(num_frames=8, sampling_rate=4, alpha=cfg.alpha,
                                                         test_short_side=160)

    bad = save_sfdet_checkpoint(tmp_path / "bad.pt", model)
    stored = torch.load(bad, weights_only=True)
    stored["recipe"] = {"num_frames": 0}
    torch.save(stored, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt: its stored clip recipe \('recipe'\) is invalid \(clip recipe "
                                              r"'num_frames': expected an integer >= 1, got 0\)"):
        load_checkpoint(bad)


def test_a_file_of_no_registry_architecture_asks_for_config_in_one_line(tmp_path, small, capsys):
    from sfdet.predict.clip_settings import clip_settings

    cfg, model, _ = small
    path = tmp_path / "mine.pyth"  # a PySlowFast file whose cfg has no DATA section, of no registry architecture
    _write_pyslowfast(path, model, cfg, cfg_field=yaml.safe_dump({"SLOWFAST": {"ALPHA": cfg.alpha}}))
    _, info = load_checkpoint(path)
    assert info.recipe is None and registry_recipe(info) is None
    with pytest.raises(ConfigError, match=r"mine\.pyth does not say how its clips were made .*; "
                                          r"pass the training config with --config YAML$"):
        clip_settings(str(path), info)
    err = _cli_error(capsys, ["predict", str(tmp_path / "video.mp4"), "--weights", str(path)])
    assert err == (f"sfdet predict: error: {path} does not say how its clips were made (frames, stride, short side); "
                   f"pass the training config with --config YAML\n")


def test_registry_architecture_match_is_unambiguous_or_an_error():
    from sfdet.models import registry

    r101 = registry.get("SLOWFAST_32x2_R101_50_50").build_config()
    info = CheckpointInfo("/tmp/weights.pkl", "caffe2", r101, None)
    # Three registry models share the R101 architecture; their clips differ (32x2, 64x2).
    with pytest.raises(CheckpointError, match=r"weights\.pkl: its architecture equals registry models "
                                              r"SLOWFAST_32x2_R101_50_50, SLOWFAST_32x2_R101_50_50_v2\.1, "
                                              r"SLOWFAST_64x2_R101_50_50, whose clip recipes differ .*--config YAML$"):
        registry_recipe(info)
    named = CheckpointInfo("/downloads/SLOWFAST_64x2_R101_50_50.pkl", "caffe2", r101, None)  # its published name
    match = registry_recipe(named, "w.pkl")
    assert match.recipe == registry.get("SLOWFAST_64x2_R101_50_50").recipe
    assert match.note.startswith("w.pkl: architecture equals registry model SLOWFAST_64x2_R101_50_50; using its clip "
                                 "recipe (64x2, alpha 4, linspace Slow frames, short side 256, mean 0.45, std 0.225, "
                                 "30 fps grid); pass --config to override")
    # Only model-zoo formats are matched: an sfdet file without a recipe does not say what it was trained on.
    assert registry_recipe(CheckpointInfo("x.pt", "sfdet", r101, None)) is None
    other = ModelConfig(**{**R101_NL, "num_classes": 60})
    assert registry_recipe(CheckpointInfo("x.pkl", "caffe2", other, None)) is None


def test_strict_mismatch_is_one_line_listing_keys(tmp_path, small):
    cfg, model, _ = small
    path = tmp_path / "model.pyth"
    save_sfdet_checkpoint(path, model)
    other = ModelConfig(**{**SMALL, "num_classes": 7, "nonlocal_res4": [2]})
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, cfg=other)
    message = str(exc.value)
    assert "\n" not in message
    assert "+NL[2], 7 classes model: 13 unexpected (backbone.res4.slow.nonlocal_blocks.5.theta.weight," in message
    assert ", ... and 8 more); 2 mis-shaped (head.proj.weight: file (5, 320) vs model (7, 320)," in message
    assert message.endswith("use strict=False (--non-strict) to load what fits")

    loaded, info = load_checkpoint(path, cfg=other, strict=False)
    assert len(info.unexpected) == 13 and len(info.mismatched) == 2 and info.missing == []
    torch.testing.assert_close(loaded.state_dict()["backbone.stem.slow.conv.weight"],
                               model.state_dict()["backbone.stem.slow.conv.weight"])


def _cli_error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["info", "convert"])
def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys, small, command):
    cfg, model, _ = small
    extra = [str(tmp_path / "out.pyth")] if command == "convert" else []

    missing = tmp_path / "nope.pyth"
    assert "checkpoint not found: " + str(missing) in _cli_error(capsys, [command, str(missing), *extra])

    good = tmp_path / "good.pyth"
    save_sfdet_checkpoint(good, model)
    truncated = tmp_path / "truncated.pyth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "truncated or corrupt PyTorch checkpoint" in _cli_error(capsys, [command, str(truncated), *extra])

    caffe2 = tmp_path / "c2.pkl"
    _write_caffe2(caffe2, model, cfg)
    truncated_c2 = tmp_path / "c2_truncated.pkl"
    truncated_c2.write_bytes(caffe2.read_bytes()[:5000])
    assert "truncated file" in _cli_error(capsys, [command, str(truncated_c2), *extra])

    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    assert "not a checkpoint" in _cli_error(capsys, [command, str(text), *extra])

    other = tmp_path / "resnet_classifier.pth"  # some other network's state dict
    torch.save({"features.0.weight": torch.zeros(3), "classifier.weight": torch.zeros(2)}, other)
    assert "unrecognised state dict (first keys: features.0.weight" in _cli_error(capsys, [command, str(other), *extra])

    assert "neither a file nor a registered model (did you mean 'slowfast_r50_detection'?)" in _cli_error(
        capsys, [command, "slowfast_r50_detectoin", *extra])


def test_forced_format_must_match_the_content(tmp_path, capsys, small):
    _, model, _ = small
    path = tmp_path / "model.pyth"
    save_sfdet_checkpoint(path, model)
    err = _cli_error(capsys, ["convert", str(path), str(tmp_path / "out.pyth"), "--format", "caffe2"])
    assert err == f"sfdet convert: error: {path}: not a caffe2 checkpoint (no 'blobs' dict)\n"


def test_convert_into_another_architecture_fails_cleanly(tmp_path, capsys, small):
    cfg, model, _ = small
    source = tmp_path / "c2.pkl"
    _write_caffe2(source, model, cfg)
    err = _cli_error(capsys, ["convert", str(source), str(tmp_path / "out.pyth"), "--arch", "slow_r50_detection"])
    assert "does not fit the Slow R50, 80 classes model" in err and "missing" in err and "unexpected" in err
    assert not (tmp_path / "out.pyth").exists()


def test_non_strict_convert_reports_what_was_skipped(tmp_path, capsys, small):
    cfg, model, _ = small
    source = tmp_path / "c2.pkl"
    _write_caffe2(source, model, cfg)
    with open(source, "rb") as f:
        blobs = pickle.load(f)["blobs"]
    blobs["some_extra_w"] = np.zeros(3, np.float32)
    del blobs["pred_b"]
    with open(source, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    assert "1 missing (head.proj.bias)" in _cli_error(capsys, ["convert", str(source), str(tmp_path / "a.pyth")])
    assert cli.main(["convert", str(source), str(tmp_path / "b.pyth"), "--non-strict"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 missing (head.proj.bias); 1 unexpected (some_extra_w)" in out


def test_pytorchvideo_file_is_recognised_and_its_architecture_inferred(tmp_path):
    from pytorchvideo.models.hub import slowfast_r50_detection

    from sfdet.models.pytorchvideo_keys import pytorchvideo_model_config

    from sfdet.models import registry
    from sfdet.predict.clip_settings import clip_settings

    path = tmp_path / "weights.pyth"  # not its published name: the architecture alone decides
    torch.save({"model_state": slowfast_r50_detection(pretrained=False).state_dict()}, path)
    _, info = load_checkpoint(path)
    assert info.format == "pytorchvideo" and info.fits_exactly
    assert info.model_config == pytorchvideo_model_config("slowfast_r50_detection")

    # No recipe in the file, but its architecture is the registry's slowfast_r50_detection: predict uses that
    # model's clip recipe without --config, and says so in one line.
    assert info.recipe is None
    lines = []
    data = clip_settings(str(path), info, log=lines.append)
    recipe = registry.get("slowfast_r50_detection").recipe
    assert lines == [f"{path}: architecture equals registry model slowfast_r50_detection; using its clip recipe "
                     f"(32x2, alpha 4, linspace Slow frames, short side 256, mean 0.45, std 0.225, 30 fps grid); "
                     f"pass --config to override"]
    assert (data.num_frames, data.sampling_rate, data.slow_sampling, data.test_short_side, data.mean, data.std,
            data.video_resample_fps, data.time_offset) == (32, 2, "linspace", 256, [0.45] * 3, [0.225] * 3, 30.0, 0.0)
    assert recipe.data_fields() == {k: getattr(data, k) for k in recipe.data_fields()}


def test_info_describes_a_checkpoint_file(tmp_path, capsys, small):
    cfg, model, _ = small
    path = tmp_path / "model.pyth"
    save_sfdet_checkpoint(path, model, label_map={i: f"a{i}" for i in range(1, 6)})
    assert cli.main(["info", str(path), "--input-size", "8", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert "weights      every tensor loaded" in out and "labels       5 classes" in out
    assert f"parameters   {sum(p.numel() for p in model.parameters()):,}" in out
    assert "non-local (dot_product, pool [2, 2, 2]) after res4 blocks [2, 5]" in out
    assert "for a 8x64x64 clip and one box" in out


@pytest.mark.slow
def test_full_r101_caffe2_pickle_loads_into_the_registry_architecture(tmp_path):
    """The whole SLOWFAST_32x2_R101_50_50_v2.1 layout (about 60M weights) through the file path."""
    from sfdet.models import registry

    cfg = registry.get("SLOWFAST_32x2_R101_50_50_v2.1").build_config()
    model = _randomized(cfg)
    path = tmp_path / "SLOWFAST_32x2_R101_50_50_v2.1.pkl"
    _write_caffe2(path, model, cfg, extra_dims_for="t_res5_0_branch1_w")
    loaded, info = load_checkpoint(path)
    assert info.format == "caffe2" and info.fits_exactly and info.model_config == cfg
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key


# ---------------------------------------------------------------------------
# What a file leaves unsaid: one line per command (issue 15, items 7 and 8)
# ---------------------------------------------------------------------------

SMALL_SLOW = dict(arch="slow", depth=50, stage_depths=[1, 1, 2, 1], width=8, num_classes=5)
TOY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "toy" / "slowfast_tiny.yaml"


def _zoo_entry(name, model_config, recipe):
    from sfdet.models import registry

    return registry.PublishedModel(name=name, url=f"{registry.PYSLOWFAST_AVA}/{name}.pkl", format="caffe2",
                                   model_config=dict(model_config), recipe=recipe, ava_version="2.2",
                                   reported_map=0.0, pretrain="none")


def _labels_file(path, names):
    path.write_text("".join(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n' for i, name in names.items()))
    return path


def test_caffe2_assumptions_are_one_line_in_convert_info_and_predict(tmp_path, small, capsys, monkeypatch):
    from sfdet.models import registry
    from sfdet.predict.actions import load_action_predictor

    cfg, model, _ = small
    path = tmp_path / "model.pkl"
    _write_caffe2(path, model, cfg)
    _, info = load_checkpoint(path)
    assert info.model_config.roi_aligned is False  # assumed, and now said
    assert info.assumed == {"model.roi_aligned": "false", "label map": "5 classes without names, ids 1..5"}
    assert cli.main(["convert", str(path), str(tmp_path / "out.pt")]) == 0
    assert (f"warning: {path}: the file does not say: model.roi_aligned (assumed false), label map (assumed 5 classes "
            f"without names, ids 1..5); override with --config YAML (model.roi_aligned: true) / --label-map FILE\n"
            ) in capsys.readouterr().out

    # Its architecture is a registry model's: that model's clips are assumed too, and predict says all in ONE line.
    monkeypatch.setitem(registry.MODELS, "small_zoo", _zoo_entry("small_zoo", SMALL, registry.ava_recipe(16, 4, 4)))
    _, info = load_checkpoint(path)
    assert info.assumed["clip frames x stride"] == "16x4, as registry model small_zoo of the same architecture"
    lines = []
    predictor = load_action_predictor(str(path), torch.device("cpu"), "fp32", log=lines.append)
    assert (predictor.cfg.num_frames, predictor.cfg.sampling_rate) == (16, 4)
    assert lines == [f"warning: {path}: the file does not say: model.roi_aligned (assumed false), clip frames x stride "
                     f"(assumed 16x4, as registry model small_zoo of the same architecture), label map (assumed 5 "
                     f"classes without names, ids 1..5); override with sfdet convert IN OUT --config YAML "
                     f"(model.roi_aligned: true), then --weights OUT / --config YAML (data.num_frames, "
                     f"data.sampling_rate) / --label-map FILE"]
    lines = []  # --config states the clips
    load_action_predictor(str(path), torch.device("cpu"), "fp32", str(TOY_CONFIG), log=lines.append)
    assert lines == [f"warning: {path}: the file does not say: model.roi_aligned (assumed false), label map (assumed 5 "
                     f"classes without names, ids 1..5); override with sfdet convert IN OUT --config YAML "
                     f"(model.roi_aligned: true), then --weights OUT / --label-map FILE"]
    assert cli.main(["info", str(path), "--input-size", "8", "32", "32"]) == 0
    assert (f"assumed      {path}: the file does not say: model.roi_aligned (assumed false), clip frames x stride "
            f"(assumed 16x4, as registry model small_zoo of the same architecture), label map (assumed 5 classes "
            f"without names, ids 1..5); override with sfdet convert IN OUT --config YAML (model.roi_aligned: true; "
            f"data.num_frames, data.sampling_rate) / --label-map FILE\n") in capsys.readouterr().out

    # Stated, nothing is assumed: convert --config and --label-map, and the converted file says it all.
    config = tmp_path / "aligned.yaml"
    config.write_text(yaml.safe_dump({"model": {**SMALL, "roi_aligned": True}, "data": {"num_frames": 8}}))
    labels = _labels_file(tmp_path / "labels.pbtxt", {i: f"a{i}" for i in range(1, 6)})
    out = tmp_path / "aligned.pt"
    assert cli.main(["convert", str(path), str(out), "--config", str(config), "--label-map", str(labels)]) == 0
    assert "warning" not in capsys.readouterr().out
    _, converted = load_checkpoint(out)
    assert converted.assumed == {} and converted.model_config.roi_aligned is True
    # A PySlowFast file whose cfg says DETECTION.ALIGNED and DATA states them.
    pyslowfast = tmp_path / "model.pyth"
    _write_pyslowfast(pyslowfast, model, cfg)
    assert load_checkpoint(pyslowfast)[1].assumed == {"label map": "5 classes without names, ids 1..5"}


def test_slow_caffe2_pickle_takes_the_registry_slow_recipe(tmp_path, capsys, monkeypatch):
    from sfdet.models import registry
    from sfdet.models.checkpoint_arch import PYSLOWFAST_NONLOCAL, infer_model_config

    # The real Slow 4x16 R50: a caffe2 file of its shapes (inferred with caffe2's non-local hints, in a network
    # without non-local blocks) is that registry model, so its 4x16 clips apply (shapes only: meta tensors).
    with torch.device("meta"):
        state = build_model(registry.get("slow_r50_detection").build_config()).state_dict()
    inferred = infer_model_config(state, dict(PYSLOWFAST_NONLOCAL))
    match = registry_recipe(CheckpointInfo("slow.pkl", "caffe2", inferred, None))
    assert match.models == ("slow_r50_detection",) and match.recipe == registry.get("slow_r50_detection").recipe

    cfg = ModelConfig(**SMALL_SLOW)
    path = tmp_path / "slow.pkl"
    _write_caffe2(path, _randomized(cfg), cfg)
    monkeypatch.setitem(registry.MODELS, "small_slow", _zoo_entry("small_slow", SMALL_SLOW,
                                                                  registry.ava_recipe(4, 16, None)))
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("input        4 frames at stride 16 (64 raw frames, 2.1 s at 30 fps); RGB in [0,1], mean 0.45, std 0.225; "
            "test short side 256\n") in out
    assert "(architecture equals registry model small_slow)\n" in out
    assert "clip frames x stride (assumed 4x16, as registry model small_slow of the same architecture)" in out

    # Two registry models of that architecture with other clips: ambiguous, so the frames are said to be assumed.
    monkeypatch.setitem(registry.MODELS, "small_slow_8x8", _zoo_entry("small_slow_8x8", SMALL_SLOW,
                                                                      registry.ava_recipe(8, 8, None)))
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "input        8 frames (assumed: the file does not say)\n" in out
    assert (f"recipe       none ({path}: its architecture equals registry models small_slow, small_slow_8x8, whose "
            f"clip recipes differ (small_slow: 4x16; small_slow_8x8: 8x8); sfdet predict needs --config YAML)\n") in out
    assert "clip frames x stride" not in out


def test_label_map_with_other_names_is_named_in_one_line(tmp_path, small, capsys):
    from sfdet.predict.actions import load_action_predictor

    cfg, model, _ = small
    names = {1: "stand", 2: "sit", 3: "run", 4: "walk", 5: "talk"}
    path = save_sfdet_checkpoint(tmp_path / "model.pt", model, label_map=names,
                                 recipe=ClipRecipe(num_frames=8, sampling_rate=2, alpha=cfg.alpha))
    other = _labels_file(tmp_path / "other.pbtxt", {**names, 3: "jog", 5: "shout"})
    line = (f"warning: {path}: --label-map names differ from the checkpoint's for 2 of 5 classes (id 3: checkpoint "
            f"'run', --label-map 'jog'; id 5: checkpoint 'talk', --label-map 'shout'); its outputs are named by "
            f"--label-map")
    lines = []
    predictor = load_action_predictor(str(path), torch.device("cpu"), "fp32", label_map_path=str(other),
                                      log=lines.append)
    assert lines == [line]
    assert predictor.label_map == {**names, 3: "jog", 5: "shout"}  # as given: a warning, not an error
    assert cli.main(["convert", str(path), str(tmp_path / "out.pt"), "--label-map", str(other)]) == 0
    assert f"{line}\n" in capsys.readouterr().out

    lines = []  # the same names: nothing to say
    same = _labels_file(tmp_path / "same.pbtxt", names)
    load_action_predictor(str(path), torch.device("cpu"), "fp32", label_map_path=str(same), log=lines.append)
    assert lines == []
