"""sfdet reproduces PyTorchVideo's AVA detectors exactly once their `.pyth` weights are renamed.

The reference models are built with `pretrained=False` and every BN statistic,
BN affine parameter and the classifier are re-drawn, so no layer is an
identity and a wrong mapping, padding or layer order shows in the output.
"""

from __future__ import annotations

import pytest
import torch

from sfdet.models import build_model
from sfdet.models.complexity import count_parameters
from sfdet.models.pytorchvideo_keys import (
    is_pytorchvideo_state,
    pytorchvideo_key_to_sfdet,
    pytorchvideo_model_config,
    pytorchvideo_to_sfdet,
    randomize_reference,
)

hub = pytest.importorskip("pytorchvideo.models.hub")

FRAMES = {"slowfast_r50_detection": (8, 32), "slow_r50_detection": (4,)}
TOLERANCE = {torch.float64: 1e-5, torch.float32: 1e-4}


@pytest.fixture(scope="module", params=list(FRAMES))
def model_pair(request, tmp_path_factory):
    """(name, PyTorchVideo reference, sfdet model loaded from the reference's saved `.pyth`), both in eval mode."""
    name = request.param
    torch.manual_seed(0)
    reference = getattr(hub, name)(pretrained=False)
    randomize_reference(reference, seed=1)
    path = tmp_path_factory.mktemp("pyth") / f"{name}.pyth"
    torch.save({"model_state": reference.state_dict()}, path)  # the layout of PyTorchVideo's model zoo files

    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    assert is_pytorchvideo_state(state)
    ours = build_model(pytorchvideo_model_config(name))
    ours.load_state_dict(pytorchvideo_to_sfdet(state), strict=True)
    return name, reference.eval(), ours.eval()


def compare(name, reference, ours, dtype, sizes, seed=0):
    """Max relative error of probabilities and logits over clips of each (H, W) in `sizes`."""
    reference.to(dtype)
    ours.to(dtype)
    g = torch.Generator().manual_seed(seed)
    errors = []
    for height, width in sizes:
        clips = [torch.randn(2, 3, t, height, width, generator=g, dtype=dtype) for t in FRAMES[name]]
        boxes_xyxy_abs = [  # 1 box in clip 0, 3 in clip 1
            torch.tensor([[2.0, 3.0, 0.6 * width, 0.8 * height]], dtype=dtype),
            torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0],
                          [0.3 * width, 0.1 * height, 0.9 * width, 0.7 * height],
                          [5.5, 7.25, 21.0, 30.5]], dtype=dtype),
        ]
        rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=dtype), b], 1)
                          for i, b in enumerate(boxes_xyxy_abs)])
        logits = {}
        hook = ours.head.register_forward_hook(lambda module, args, out: logits.update(ours=out))
        try:
            with torch.no_grad():
                probabilities = ours(clips, boxes_xyxy_abs)
                activation, reference.detection_head.activation = reference.detection_head.activation, None
                try:  # PyTorchVideo's forward mutates the input list: give it a copy
                    inputs = list(clips) if len(clips) > 1 else clips[0]
                    logits["reference"] = reference(inputs, rois)
                finally:
                    reference.detection_head.activation = activation
        finally:
            hook.remove()
        expected = torch.sigmoid(logits["reference"])
        assert probabilities.shape == expected.shape == (4, 80)
        assert expected.std() > 0.05  # not saturated: the comparison means something
        errors.append(((probabilities - expected).abs().max() / expected.abs().max()).item())
        errors.append(((logits["ours"] - logits["reference"]).abs().max() / logits["reference"].abs().max()).item())
    reference.float()
    ours.float()
    return max(errors)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_outputs_match_pytorchvideo(model_pair, dtype):
    name, reference, ours = model_pair
    assert compare(name, reference, ours, dtype, sizes=[(48, 48), (56, 88)]) <= TOLERANCE[dtype]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_outputs_match_pytorchvideo_at_ava_sizes(model_pair, dtype):
    name, reference, ours = model_pair
    assert compare(name, reference, ours, dtype, sizes=[(224, 224), (256, 320)]) <= TOLERANCE[dtype]


def test_parameter_counts_match_pytorchvideo(model_pair):
    name, reference, ours = model_pair
    assert count_parameters(ours) == count_parameters(reference)
    if name == "slowfast_r50_detection":
        assert count_parameters(ours) == 33_828_888


@pytest.mark.parametrize("key, expected", [
    ("model.blocks.0.multipathway_blocks.1.conv.weight", "backbone.stem.fast.conv.weight"),
    ("model.blocks.0.multipathway_blocks.0.norm.running_var", "backbone.stem.slow.bn.running_var"),
    ("model.blocks.0.multipathway_fusion.conv_fast_to_slow.weight", "backbone.fuse1.conv.weight"),
    ("model.blocks.3.multipathway_fusion.norm.num_batches_tracked", "backbone.fuse4.bn.num_batches_tracked"),
    ("model.blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight",
     "backbone.res2.slow.blocks.0.shortcut.conv.weight"),
    ("model.blocks.4.multipathway_blocks.1.res_blocks.2.branch2.norm_c.bias", "backbone.res5.fast.blocks.2.bn_c.bias"),
    ("model.blocks.3.multipathway_blocks.0.res_blocks.5.branch2.conv_b.weight",
     "backbone.res4.slow.blocks.5.conv_b.weight"),
    ("model.blocks.0.conv.weight", "backbone.stem.slow.conv.weight"),  # Slow-only layout
    ("model.blocks.2.res_blocks.1.branch1_norm.running_mean", "backbone.res3.slow.blocks.1.shortcut.bn.running_mean"),
    ("detection_head.proj.weight", "head.proj.weight"),
    ("model.blocks.5.pool.0.weight", None),
    ("s1.pathway0_stem.conv.weight", None),
])
def test_key_mapping(key, expected):
    assert pytorchvideo_key_to_sfdet(key) == expected


def test_unknown_keys_are_kept_for_strict_loading_to_report():
    converted = pytorchvideo_to_sfdet({"detection_head.proj.bias": 1, "extra.thing": 2})
    assert converted == {"head.proj.bias": 1, "extra.thing": 2}
    assert not is_pytorchvideo_state({"s1.pathway0_stem.conv.weight": 0, "head.projection.weight": 0})
