"""`optimize_for_inference`: the rewritten model computes what the original computes, and refuses training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sfdet.devices import fast_low_precision_available
from sfdet.errors import ConfigError
from sfdet.models import build_model
from sfdet.models.inference import (
    Conv3dAs2d,
    InferenceDetector,
    conv3d_runs_as_2d,
    fold_batch_norms,
    optimize_for_inference,
)
from test_models import BOXES, clips, randomize_bn, tiny


def relative_error(output: torch.Tensor, expected: torch.Tensor) -> float:
    return ((output.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def reference_model(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(tiny(**overrides))
    randomize_bn(model, seed)
    with torch.no_grad():  # non-zero biases everywhere the model has them, so folding must carry them
        model.head.proj.bias.normal_()
    return model.eval()


# Every conv-BN pair sfdet has: bottleneck and basic blocks, projection shortcuts,
# stems, conv laterals (concat and sum) and the non-local block's output conv.
ARCHITECTURES = {
    "basic+nonlocal": dict(nonlocal_res4=[0]),
    "bottleneck": dict(depth=50, stage_depths=[1, 2, 1]),
    "sum-fusion ttoc": dict(lateral="ttoc", fusion="sum"),
    "slow-only": dict(arch="slow"),
}


@pytest.mark.parametrize("overrides", list(ARCHITECTURES.values()), ids=list(ARCHITECTURES))
def test_bn_folding_gives_the_same_outputs_in_float64(overrides):
    model = reference_model(**overrides).double()
    inputs = [x.double() for x in clips(model.cfg)]
    with torch.no_grad():
        expected = model(inputs, BOXES)
        folded = copy.deepcopy(model)
        count = fold_batch_norms(folded)
        output = folded(inputs, BOXES)
    batch_norms = sum(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert count == batch_norms > 0
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert relative_error(output, expected) < 1e-12


@pytest.mark.parametrize("overrides", list(ARCHITECTURES.values()), ids=list(ARCHITECTURES))
@pytest.mark.parametrize("batch", [1, 2])
def test_optimised_fp32_matches_the_original(overrides, batch):
    model = reference_model(**overrides)
    inputs = clips(model.cfg, batch=batch)
    boxes = BOXES[:batch]
    with torch.no_grad():
        expected = model(inputs, boxes)
    optimised = optimize_for_inference(model)
    output = optimised(inputs, boxes)
    assert output.dtype == torch.float32 and output.shape == expected.shape
    assert relative_error(output, expected) <= 1e-4
    # the original is untouched: BNs still there, its outputs unchanged
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(inputs, boxes), expected)


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    ((1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 1, 1)),
    ((1, 3, 3), (1, 1, 1), (0, 2, 2), (1, 2, 2)),  # res5: dilation 2
    ((1, 1, 1), (1, 2, 2), (0, 0, 0), (1, 1, 1)),  # projection shortcut
    ((3, 1, 1), (1, 1, 1), (1, 0, 0), (1, 1, 1)),  # temporal conv_a
    ((7, 1, 1), (4, 1, 1), (3, 0, 0), (1, 1, 1)),  # lateral
])
@pytest.mark.parametrize("batch", [1, 2])
def test_conv3d_as_2d_equals_conv3d(kernel, stride, padding, dilation, batch):
    conv = nn.Conv3d(6, 5, kernel, stride=stride, padding=padding, dilation=dilation).double()
    assert conv3d_runs_as_2d(conv)
    x = torch.randn(batch, 6, 8, 9, 11, dtype=torch.float64).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        expected = conv(x)
        output = Conv3dAs2d(conv)(x)
    assert output.shape == expected.shape
    assert output.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(output, expected, rtol=0, atol=1e-12)


def test_kernels_mixing_space_and_time_stay_3d():
    assert not conv3d_runs_as_2d(nn.Conv3d(3, 8, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3)))
    assert not conv3d_runs_as_2d(nn.Conv3d(3, 8, (3, 1, 1), stride=(1, 2, 2)))


@pytest.mark.skipif(not fast_low_precision_available("cpu"), reason="no AVX512-BF16/AMX on this CPU")
def test_bf16_runs_and_is_close():
    model = reference_model(depth=50, stage_depths=[1, 2, 1])
    inputs = clips(model.cfg)
    with torch.no_grad():
        expected = model(inputs, BOXES)
    optimised = optimize_for_inference(model, precision="bf16")
    assert next(optimised.backbone.parameters()).dtype == torch.bfloat16
    assert optimised.head.proj.weight.dtype == torch.float32  # boxes and classifier stay float32
    output = optimised(inputs, BOXES)
    assert output.dtype == torch.float32
    assert (output - expected).abs().max() < 0.03  # probabilities; bf16 keeps ~3 significant digits


def test_a_callers_autocast_does_not_change_the_outputs():
    optimised = optimize_for_inference(reference_model())
    inputs = clips(optimised.cfg)
    expected = optimised(inputs, BOXES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = optimised(inputs, BOXES)
    assert torch.equal(output, expected)


def test_optimised_model_refuses_training():
    model = reference_model()
    model.train()
    optimised = optimize_for_inference(model)
    assert isinstance(optimised, InferenceDetector) and not optimised.training
    assert model.training  # the original keeps its mode
    with pytest.raises(ConfigError, match="optimised for inference.*train the original model"):
        optimised.train()
    assert optimised.eval() is optimised and not optimised.training
    output = optimised(clips(model.cfg), BOXES)  # probabilities, not logits, and no autograd graph
    assert ((output >= 0) & (output <= 1)).all() and not output.requires_grad


@pytest.mark.parametrize("precision, message", [("int8", "precision must be one of fp32, bf16, fp16"),
                                                ("fp16", "fp16 needs CUDA")])
def test_bad_precision_is_a_config_error(precision, message):
    with pytest.raises(ConfigError, match=message):
        optimize_for_inference(reference_model(), precision=precision)
