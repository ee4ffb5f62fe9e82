"""The detector's building blocks, configs and contracts (the PyTorchVideo equivalence has its own file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sfdet.config import Config
from sfdet.errors import ConfigError
from sfdet.models import ActionDetector, ModelConfig, build_model
from sfdet.models.complexity import count_flops, count_parameters
from sfdet.models.nonlocal_block import NonLocal
from sfdet.models.pytorchvideo_keys import pytorchvideo_model_config
from sfdet.models.roi_head import boxes_to_rois
from sfdet.models.slowfast import Lateral
from sfdet.typed_config import from_dict, read_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def model_config(path: Path) -> ModelConfig:
    return from_dict(ModelConfig, read_yaml(path)["model"], prefix="model")


def tiny(**overrides) -> ModelConfig:
    """The toy network's shape, made smaller still for fast unit tests."""
    base = dict(depth=18, num_stages=3, stage_depths=[1, 1, 1], width=8, beta_inv=4, alpha=4, fusion_kernel=5,
                slow_temporal_kernels=[1, 3, 3], fast_temporal_kernels=[3, 3, 3], spatial_strides=[1, 2, 1],
                spatial_dilations=[1, 1, 2], num_classes=3, dropout=0.0)
    return ModelConfig(**{**base, **overrides})


def clips(cfg: ModelConfig, batch=2, frames=8, height=48, width=64, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if cfg.arch == "slow":
        return [torch.randn(batch, 3, frames // cfg.alpha, height, width, generator=g)]
    return [torch.randn(batch, 3, frames // cfg.alpha, height, width, generator=g),
            torch.randn(batch, 3, frames, height, width, generator=g)]


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and scales (a fresh model has zero-initialised final BNs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


BOXES = [torch.tensor([[0.0, 0.0, 63.0, 47.0], [10.0, 5.0, 30.0, 40.0]]), torch.tensor([[20.0, 8.0, 50.0, 44.0]])]


# --------------------------------------------------------------------------
# Published architectures
# --------------------------------------------------------------------------


def test_slowfast_r50_detection_has_pytorchvideos_parameter_count():
    with torch.device("meta"):
        model = build_model(pytorchvideo_model_config("slowfast_r50_detection"))
    assert count_parameters(model) == 33_828_888
    assert isinstance(model, ActionDetector) and model.cfg == ModelConfig()


@pytest.mark.parametrize("file, name", [("slowfast_r50_8x8.yaml", "slowfast_r50_detection"),
                                        ("slow_r50_4x16.yaml", "slow_r50_detection")])
def test_ava_yaml_configs_are_the_pytorchvideo_architectures(file, name):
    assert model_config(CONFIGS / "ava" / file) == pytorchvideo_model_config(name)


def test_r101_nonlocal_config_follows_pyslowfast():
    cfg = model_config(CONFIGS / "ava" / "slowfast_r101_32x2_nl.yaml")
    with torch.device("meta"):  # shapes only: no memory, no init cost
        state = build_model(cfg).state_dict()
    res4_slow = [k for k in state if k.startswith("backbone.res4.slow.nonlocal_blocks.")]
    assert {k.split(".")[4] for k in res4_slow} == {"6", "13", "20"}
    assert not [k for k in state if "nonlocal" in k and "res4.slow" not in k]
    assert state["backbone.res4.slow.nonlocal_blocks.6.theta.weight"].shape == (512, 1024, 1, 1, 1)
    assert state["backbone.res4.slow.nonlocal_blocks.6.theta.bias"].shape == (512,)
    assert state["backbone.res4.slow.nonlocal_blocks.6.bn.running_var"].shape == (1024,)
    # NUM_BLOCK_TEMP_KERNEL [3, 4, 6, 3]: res4 blocks 0-5 have the temporal kernel, 6-22 do not.
    assert state["backbone.res4.slow.blocks.5.conv_a.weight"].shape[2] == 3
    assert state["backbone.res4.slow.blocks.6.conv_a.weight"].shape[2] == 1
    assert state["backbone.res4.fast.blocks.22.conv_a.weight"].shape[2] == 1
    assert state["backbone.res2.fast.blocks.2.conv_a.weight"].shape[2] == 3
    assert state["backbone.fuse1.conv.weight"].shape == (16, 8, 5, 1, 1)
    assert "backbone.fuse5.conv.weight" not in state


def test_gflops_of_r50_detector_at_8x256x320():
    cfg = pytorchvideo_model_config("slowfast_r50_detection")
    with torch.device("meta"):
        model = build_model(cfg)
        inputs = [torch.zeros(1, 3, 8, 256, 320), torch.zeros(1, 3, 32, 256, 320)]
        gmacs = count_flops(model, inputs, [torch.tensor([[10.0, 10.0, 100.0, 200.0]])])
    # 121.1 GMACs = 242.2 G operations (the "242 GFLOPs" quoted for this model counts 2 per multiply-add).
    assert gmacs == pytest.approx(121.11, abs=0.01)


def test_count_flops_counts_multiply_adds_of_convs_and_linears():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
            self.fc = nn.Linear(4, 2)

        def forward(self, inputs, boxes):
            return self.fc(self.conv(inputs[0]).mean(dim=(2, 3, 4)))

    gmacs = count_flops(Net(), [torch.zeros(1, 3, 2, 5, 5)], None)
    assert gmacs * 1e9 == pytest.approx(4 * 2 * 5 * 5 * 3 * 9 + 4 * 2)


# --------------------------------------------------------------------------
# Toy configs: build, forward, backward
# --------------------------------------------------------------------------


@pytest.mark.parametrize("file", ["slowfast_tiny.yaml", "slow_tiny.yaml"])
def test_toy_configs_train_step(file):
    cfg = model_config(CONFIGS / "toy" / file)
    assert cfg.num_stages == 3 and cfg.num_classes == 2
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inputs = clips(cfg, frames=16, height=48, width=64)
    scores = model(inputs, BOXES)
    assert scores.shape == (3, 2)
    loss = nn.functional.binary_cross_entropy_with_logits(scores, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.head.proj.weight.grad.abs().sum() > 0
    assert model.backbone.stem.slow.conv.weight.grad.abs().sum() > 0
    if cfg.arch == "slowfast":
        assert model.backbone.stem.fast.conv.weight.grad.abs().sum() > 0  # the Fast pathway reaches the loss


def test_slow_only_has_one_pathway_and_no_laterals():
    model = build_model(tiny(arch="slow"))
    keys = model.state_dict().keys()
    assert not [k for k in keys if ".fast." in k or ".fuse" in k]
    features = model.backbone(clips(model.cfg))
    assert [tuple(f.shape) for f in features] == [(2, 32, 2, 6, 8)]


# --------------------------------------------------------------------------
# Laterals and fusion
# --------------------------------------------------------------------------

# Slow-pathway input channels of res2, res3, res4 for width 8 (Fast 2), basic blocks, alpha 4:
# the lateral adds conv: 2*C_f, tsample: C_f, ttoc: alpha*C_f channels; sum adds none.
SLOW_STAGE_INPUTS = {
    ("conv", "concat"): [8 + 4, 8 + 4, 16 + 8],
    ("tsample", "concat"): [8 + 2, 8 + 2, 16 + 4],
    ("ttoc", "concat"): [8 + 8, 8 + 8, 16 + 16],
    ("conv", "sum"): [8, 8, 16],
    ("tsample", "sum"): [8, 8, 16],
    ("ttoc", "sum"): [8, 8, 16],
}


@pytest.mark.parametrize("lateral, fusion", list(SLOW_STAGE_INPUTS))
def test_lateral_and_fusion_shapes(lateral, fusion):
    model = build_model(tiny(lateral=lateral, fusion=fusion)).eval()
    backbone = model.backbone
    stage_inputs = [getattr(backbone, f"res{s}")["slow"].blocks[0].conv_a.in_channels for s in (2, 3, 4)]
    assert stage_inputs == SLOW_STAGE_INPUTS[lateral, fusion]
    lateral_keys = [k for k in model.state_dict() if k.startswith("backbone.fuse")]
    assert bool(lateral_keys) == (lateral == "conv" or fusion == "sum")  # sampling laterals have no parameters
    assert not hasattr(backbone, "fuse4")  # no lateral after the last stage
    slow, fast = backbone(clips(model.cfg, frames=8, height=48, width=64))
    assert tuple(slow.shape) == (2, 32, 2, 6, 8) and tuple(fast.shape) == (2, 8, 8, 6, 8)
    assert model(clips(model.cfg, frames=8, height=48, width=64), BOXES).shape == (3, 3)


def test_tsample_and_ttoc_laterals_move_exact_frames():
    fast = torch.arange(16, dtype=torch.float32).reshape(1, 2, 8, 1, 1)  # (B=1, C=2, T=8, 1, 1)
    tsample = Lateral("tsample", 2, 4, "concat", alpha=4, kernel=5, channel_ratio=2, bn_eps=1e-5, bn_momentum=0.1)
    assert torch.equal(tsample(fast), fast[:, :, [0, 4]])
    ttoc = Lateral("ttoc", 2, 4, "concat", alpha=4, kernel=5, channel_ratio=2, bn_eps=1e-5, bn_momentum=0.1)
    out = ttoc(fast)
    assert out.shape == (1, 8, 2, 1, 1)
    # channel c*alpha + a at slow frame t = fast channel c at frame t*alpha + a
    for c in range(2):
        for a in range(4):
            for t in range(2):
                assert out[0, c * 4 + a, t, 0, 0] == fast[0, c, t * 4 + a, 0, 0]


def test_conv_lateral_is_time_strided_conv():
    lateral = Lateral("conv", 2, 8, "concat", alpha=4, kernel=5, channel_ratio=2, bn_eps=1e-5, bn_momentum=0.1)
    assert lateral.conv.kernel_size == (5, 1, 1) and lateral.conv.stride == (4, 1, 1)
    assert lateral.conv.padding == (2, 0, 0) and lateral.conv.out_channels == 4
    assert lateral(torch.randn(1, 2, 32, 3, 3)).shape == (1, 4, 8, 3, 3)


def test_mismatched_frame_counts_name_the_keys():
    model = build_model(tiny())
    slow, fast = clips(model.cfg, frames=8)
    with pytest.raises(ConfigError, match=r"model\.alpha.*data\.num_frames"):
        model([slow, fast[:, :, :6]], BOXES)


# --------------------------------------------------------------------------
# Head and boxes
# --------------------------------------------------------------------------


def test_boxes_list_becomes_indexed_rois():
    rois = boxes_to_rois([torch.zeros((0, 4)), torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[5.0, 6, 7, 8]])],
                         batch_size=3, dtype=torch.float64, device=torch.device("cpu"))
    assert rois.dtype == torch.float64
    assert rois.tolist() == [[1.0, 1.0, 2.0, 3.0, 4.0], [2.0, 5.0, 6.0, 7.0, 8.0]]


def test_zero_box_clips():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    randomize_bn(model)
    inputs = clips(model.cfg)
    with torch.no_grad():
        none = model(inputs, [torch.zeros((0, 4)), torch.zeros((0, 4))])
        assert none.shape == (0, 3)
        mixed = model(inputs, [torch.zeros((0, 4)), BOXES[1]])
        alone = model([x[1:] for x in inputs], [BOXES[1]])
        indexed = model(inputs, torch.tensor([[1.0, *BOXES[1][0].tolist()]]))
    assert mixed.shape == (1, 3)
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-6)  # a clip's scores do not depend on its batch
    torch.testing.assert_close(mixed, indexed)


def test_train_mode_gives_logits_and_eval_mode_probabilities():
    torch.manual_seed(0)
    model = build_model(tiny(dropout=0.0))
    randomize_bn(model)
    inputs = clips(model.cfg)
    model.train()
    for m in model.modules():  # batch statistics would differ from the running ones
        if isinstance(m, nn.BatchNorm3d):
            m.eval()
    logits = model(inputs, BOXES)
    model.eval()
    with torch.no_grad():
        probabilities = model(inputs, BOXES)
    assert logits.requires_grad and not probabilities.requires_grad
    assert ((probabilities > 0) & (probabilities < 1)).all()
    assert (logits.detach() < 0).any() or (logits.detach() > 1).any()
    torch.testing.assert_close(torch.sigmoid(logits.detach()), probabilities)


def test_roi_head_spatial_scale_defaults_to_output_stride():
    assert build_model(tiny()).head.spatial_scale == 1 / 8
    with torch.device("meta"):
        assert build_model(pytorchvideo_model_config("slow_r50_detection")).head.spatial_scale == 1 / 16
    assert build_model(tiny(roi_spatial_scale=0.25)).head.spatial_scale == 0.25


# --------------------------------------------------------------------------
# Non-local block
# --------------------------------------------------------------------------


def pointwise(conv: nn.Conv3d, v: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 conv written as a channel mix."""
    return torch.einsum("oc,bcthw->bothw", conv.weight[:, :, 0, 0, 0], v) + conv.bias.view(1, -1, 1, 1, 1)


def direct_nonlocal(block: NonLocal, x: torch.Tensor, pool: tuple[int, int, int]) -> torch.Tensor:
    """y_i = x_i + BN(W_out sum_j f(theta_i, phi_j) g_j), written one position at a time."""
    pooled = nn.functional.max_pool3d(x, pool, pool)
    theta = pointwise(block.theta, x).flatten(2)[0]  # (Ci, N)
    phi, g = pointwise(block.phi, pooled).flatten(2)[0], pointwise(block.g, pooled).flatten(2)[0]  # (Ci, M)
    out = torch.zeros_like(theta)
    for i in range(theta.shape[1]):
        scores = torch.stack([theta[:, i] @ phi[:, j] for j in range(phi.shape[1])])
        if block.instantiation == "softmax":
            weights = torch.exp(scores / theta.shape[0] ** 0.5)
            weights = weights / weights.sum()
        else:
            weights = scores / phi.shape[1]
        out[:, i] = (g * weights).sum(dim=1)
    response = pointwise(block.out, out.reshape(1, -1, *x.shape[2:]))
    bn = [t.view(1, -1, 1, 1, 1) for t in (block.bn.running_mean, block.bn.running_var, block.bn.weight, block.bn.bias)]
    mean, var, scale, shift = bn
    return x + (response - mean) / torch.sqrt(var + block.bn.eps) * scale + shift


@pytest.mark.parametrize("instantiation, pool", [("softmax", (1, 2, 2)), ("dot_product", (2, 2, 2)),
                                                 ("softmax", (1, 1, 1))])
def test_nonlocal_matches_direct_formula(instantiation, pool):
    torch.manual_seed(0)
    block = NonLocal(6, 3, list(pool), instantiation).double().eval()
    randomize_bn(block)
    x = torch.randn(1, 6, 2, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(block(x), direct_nonlocal(block, x, pool))


def test_fresh_nonlocal_block_is_identity():
    cfg = tiny(stage_depths=[1, 1, 2], nonlocal_res4=[0])
    model = build_model(cfg)
    block = model.backbone.res4.slow.nonlocal_blocks["0"]
    x = torch.randn(1, 32, 2, 4, 4)  # res4 of width 8 with basic blocks: 32 channels
    torch.testing.assert_close(block.eval()(x), x)
    assert "backbone.res4.slow.nonlocal_blocks.0.theta.weight" in model.state_dict()
    assert "backbone.res4.slow.nonlocal_blocks.0.bn.running_var" in model.state_dict()


# --------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, key", [
    ({"arch": "slowfst"}, "arch"),
    ({"depth": 34}, "depth"),
    ({"stage_depths": [1, 1]}, "stage_depths"),
    ({"num_stages": 5}, "num_stages"),
    ({"spatial_strides": [1, 2, 2]}, "spatial_strides"),
    ({"slow_temporal_kernels": [1, 1, 3]}, "slow_temporal_kernels"),
    ({"fast_temporal_kernels": [3, 3, 2, 3]}, "fast_temporal_kernels"),
    ({"lateral": "tconv"}, "lateral"),
    ({"fusion": "add"}, "fusion"),
    ({"beta_inv": 7}, "beta_inv"),
    ({"fusion_kernel": 4}, "fusion_kernel"),
    ({"nonlocal_res4": [6]}, "nonlocal_res4"),  # R50 res4 has blocks 0..5
    ({"nonlocal_instantiation": "gaussian"}, "nonlocal_instantiation"),
    ({"nonlocal_pool": [2, 2]}, "nonlocal_pool"),
    ({"num_block_temp_kernel": [3, 4, 7, 3]}, "num_block_temp_kernel"),
    ({"slow_stem_kernel": [1, 7]}, "slow_stem_kernel"),
    ({"num_classes": 0}, "num_classes"),
    ({"dropout": 1.0}, "dropout"),
    ({"roi_spatial_scale": 0.0}, "roi_spatial_scale"),
])
def test_bad_model_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"^config key 'model\.{key}': "):
        ModelConfig(**overrides)


def test_bad_value_in_yaml_section_names_the_key():
    with pytest.raises(ConfigError, match=r"'model\.lateral'.*conv, ttoc, tsample"):
        from_dict(Config, {"model": {"lateral": "sideways"}})


def test_build_model_revalidates_a_mutated_config():
    cfg = ModelConfig()
    cfg.num_stages = 3
    with pytest.raises(ConfigError, match=r"model\.slow_temporal_kernels"):
        build_model(cfg)
