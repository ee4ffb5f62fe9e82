"""Inflating a torchvision ImageNet ResNet: the Slow pathway reproduces the 2D network frame by frame."""

from __future__ import annotations

import pytest
import torch
import torchvision

from sfdet.errors import CheckpointError
from sfdet.models import ModelConfig
from sfdet.models.checkpoint import load_checkpoint
from sfdet.models.inflate import inflate_conv_weight


def _resnet50_with_random_bn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torchvision.models.resnet50()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # no BN may be the identity (torchvision zero-inits none)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_inflated_slow_pathway_equals_2d_resnet_per_frame(tmp_path):
    net2d = _resnet50_with_random_bn()
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(net2d.state_dict(), path)

    model, info = load_checkpoint(path)  # SlowFast R50 inferred from the 2D depth
    assert info.format == "torchvision"
    assert info.unexpected == [] and info.mismatched == []
    assert info.missing and all(k.startswith(("backbone.stem.fast", "backbone.res2.fast", "backbone.res3.fast",
                                              "backbone.res4.fast", "backbone.res5.fast", "backbone.fuse", "head."))
                                for k in info.missing)  # the Slow pathway is fully inflated

    torch.manual_seed(1)
    fast = torch.randn(1, 3, 8, 64, 96)
    slow = fast[:, :, ::4].contiguous()
    backbone = model.backbone
    with torch.no_grad():
        x_slow, x_fast = backbone.stem["slow"](slow), backbone.stem["fast"](fast)
        for k, stage in ((1, "res2"), (2, "res3")):
            lateral = getattr(backbone, f"fuse{k}")(x_fast)
            x_slow = getattr(backbone, stage)["slow"](torch.cat([x_slow, lateral], dim=1))
            x_fast = getattr(backbone, stage)["fast"](x_fast)

        frames = slow.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (T, 3, H, W)
        y = net2d.maxpool(net2d.relu(net2d.bn1(net2d.conv1(frames))))
        y = net2d.layer2(net2d.layer1(y))  # (T, 512, H/8, W/8)
    assert x_slow.shape == (1, 512, 2, 8, 12)
    error = (x_slow[0].permute(1, 0, 2, 3) - y).abs().max() / y.abs().max()
    assert error < 1e-5, error


def test_lateral_input_channels_start_at_zero_and_time_kernels_average():
    weight = torch.randn(4, 3, 3, 3)
    inflated = inflate_conv_weight(weight, torch.Size([4, 5, 3, 3, 3]))
    assert torch.equal(inflated[:, 3:], torch.zeros(4, 2, 3, 3, 3))
    for t in range(3):
        torch.testing.assert_close(inflated[:, :3, t], weight / 3)


def test_wrong_2d_network_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, cfg=ModelConfig(arch="slow", depth=50, num_classes=80))
    message = str(exc.value)
    assert message.startswith(f"{path} (torchvision) does not fit the Slow R50, 80 classes model: ")
    assert "layer1.0.conv1.weight: 2D kernel (64, 64, 3, 3) cannot be inflated to (64, 64, 1, 1, 1)" in message
