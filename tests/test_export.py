"""`sfdet export` / ONNX Runtime: the exported action detector gives the torch model's outputs.

Reference: the same BN-folded inference form in torch fp32 (`sfdet.export.onnx.inference_form`, the
maths of `optimize_for_inference`). Bounds (issue 16): max |diff| <= 1e-4 on probabilities and
<= 1e-3 on logits relative to their scale (max |logit|). Weights are random, with BN statistics and
affine parameters randomised too, so the folding is exercised.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from sfdet.cli import main  # noqa: E402
from sfdet.config import load_config  # noqa: E402
from sfdet.export.onnx import (INSTALL_HINT, export_onnx, inference_form, read_metadata,  # noqa: E402
                               relative_difference)
from sfdet.export.onnx_runtime import OnnxActionModel  # noqa: E402
from sfdet.models import ModelConfig, build_model, registry  # noqa: E402
from sfdet.models.inference import optimize_for_inference  # noqa: E402
from sfdet.models.recipe import ClipRecipe  # noqa: E402

PROB_TOL = 1e-4
LOGIT_REL_TOL = 1e-3
LABELS = {i + 1: f"action_{i + 1}" for i in range(10)}


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and affines (zero-initialised final BNs get small non-zero weights), a head
    whose logits are O(1): the folded convs then differ from the originals everywhere."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                n = m.num_features
                scale = 0.5 if m.weight.abs().sum() > 0 else 0.2
                m.weight.copy_(torch.rand(n, generator=g) * scale + 0.1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        model.head.proj.weight.copy_(torch.randn(model.head.proj.weight.shape, generator=g) * 0.05)
        model.head.proj.bias.copy_(torch.randn(model.head.proj.bias.shape, generator=g) * 0.1)
    return model.eval()


def _boxes(batch: int, count: int, h: int, w: int) -> torch.Tensor:
    """(K, 5) rois: inside, the whole frame (touching every edge), crossing the right/bottom and the
    left/top edges, a tiny one and one fully outside; spread over the batch."""
    kinds = [[0.1 * w, 0.2 * h, 0.5 * w, 0.9 * h], [0.0, 0.0, w, h], [0.6 * w, 0.5 * h, 1.3 * w, 1.2 * h],
             [-0.2 * w, -0.1 * h, 0.3 * w, 0.4 * h], [0.4 * w, 0.4 * h, 0.4 * w + 0.6, 0.4 * h + 0.6],
             [0.0, 0.3 * h, 0.25 * w, h], [0.2 * w, 0.0, w, 0.7 * h]]
    rows = [[i % batch] + kinds[i % len(kinds)] for i in range(count)]
    return torch.tensor(rows, dtype=torch.float32).reshape(count, 5)


def _clips(model_cfg: ModelConfig, recipe: ClipRecipe, batch: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = [recipe.num_frames // recipe.alpha, recipe.num_frames] if recipe.alpha else [recipe.num_frames]
    return [torch.randn(batch, 3, t, h, w, generator=g) for t in frames]


def _reference(folded: torch.nn.Module, inputs, rois) -> torch.Tensor:
    with torch.inference_mode():
        return folded.head(folded.backbone(inputs), rois)


def _assert_equal_outputs(ort_model, folded, inputs, rois):
    scores, logits = ort_model.run(inputs, rois)
    assert scores.shape == logits.shape == (len(rois), ort_model.cfg.num_classes)
    assert scores.dtype == torch.float32
    if len(rois):
        ref_logits = _reference(folded, inputs, rois)
        assert (scores - torch.sigmoid(ref_logits)).abs().max() <= PROB_TOL
        assert relative_difference(logits, ref_logits) <= LOGIT_REL_TOL
        assert ref_logits.abs().max() > 0.1  # a meaningful comparison, not zeros against zeros


def _export(model, recipe, path, **kwargs):
    result = export_onnx(model, path, {i + 1: f"c{i + 1}" for i in range(model.cfg.num_classes)}, recipe,
                         check=False, **kwargs)
    return result, OnnxActionModel(path)


# --------------------------------------------------------------------------
# RoIAlign: ONNX Runtime's RoiAlign against torchvision's roi_align
# --------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_onnxruntime_roialign_equals_torchvision(aligned, sampling_ratio):
    """The exported op (torchvision's opset-16 symbolic: aligned -> half_pixel, else output_half_pixel) is
    bit-identical on ONNX Runtime's CPU kernel, adaptive sampling (0) included, for boxes of every size,
    across the edges and outside the map."""
    from onnx import TensorProto, helper
    from torchvision.ops import roi_align

    node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode="avg", output_height=7,
                            output_width=7, sampling_ratio=sampling_ratio, spatial_scale=1 / 16,
                            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
    graph = helper.make_graph([node], "roialign", [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("rois", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("batch_indices", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 8, 16, 20, generator=g)  # a 256x320 input at stride 16
    k = 300
    x1, y1 = torch.rand(k, generator=g) * 360 - 40, torch.rand(k, generator=g) * 300 - 40
    w, h = torch.rand(k, generator=g) ** 3 * 400, torch.rand(k, generator=g) ** 3 * 300
    boxes = torch.cat([torch.stack([x1, y1, x1 + w, y1 + h], 1), _boxes(1, 7, 256, 320)[:, 1:],
                       torch.tensor([[0.0, 0, 0, 0], [319, 255, 320, 256], [-100, -100, -20, -20]])])
    batch = torch.randint(0, 3, (len(boxes),), generator=g)
    expected = roi_align(features, torch.cat([batch[:, None].float(), boxes], 1), 7, 1 / 16, sampling_ratio, aligned)
    got = session.run(None, {"X": features.numpy(), "rois": boxes.numpy(), "batch_indices": batch.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["slowfast_tiny", "slow_tiny"])
def toy_export(request, tmp_path_factory):
    cfg = load_config(f"configs/toy/{request.param}.yaml", ["model.num_classes=10"])
    torch.manual_seed(0)
    model = _randomise(build_model(cfg.model))
    recipe = ClipRecipe.from_data(cfg.data, cfg.model.alpha if cfg.model.arch == "slowfast" else None)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    export_onnx(model, path, LABELS, recipe, source=request.param, check=False)
    return model, recipe, path


@pytest.mark.parametrize("size", [(72, 96), (96, 64)])
def test_toy_models_equal_torch(toy_export, size):
    """Batches of 1 and 3 clips with 0, 1 and 7 boxes (edge-touching and -crossing), two spatial sizes,
    one file."""
    model, recipe, path = toy_export
    ort_model, folded = OnnxActionModel(path), inference_form(model)
    for batch in (1, 3):
        inputs = _clips(model.cfg, recipe, batch, *size, seed=batch)
        for count in (0, 1, 7):
            _assert_equal_outputs(ort_model, folded, inputs, _boxes(batch, count, *size))


def test_toy_model_call_equals_predicts_torch_model(toy_export):
    """The ONNX model's call (list of per-clip boxes, as ActionPredictor passes) equals the torch model
    `predict` runs (optimize_for_inference: channels-last, convs as 2D), and K=0 gives (0, C)."""
    model, recipe, path = toy_export
    ort_model = OnnxActionModel(path)
    torch_model = optimize_for_inference(model, "fp32")
    inputs = [x.contiguous(memory_format=torch.channels_last_3d) for x in _clips(model.cfg, recipe, 2, 72, 128)]
    boxes = [_boxes(1, 3, 72, 128)[:, 1:], torch.zeros(0, 4)]
    assert (ort_model(inputs, boxes) - torch_model(inputs, boxes)).abs().max() <= PROB_TOL
    assert ort_model(inputs, [torch.zeros(0, 4)] * 2).shape == (0, 10)


def _published_layout(name: str, **changes) -> ModelConfig:
    return ModelConfig(**{**registry.get(name).model_config, **changes})


@pytest.mark.parametrize("name, changes", [
    # PyTorchVideo's SlowFast R50 detector as published (RoIAlign aligned=False), at a small input.
    ("slowfast_r50_detection", {}),
    # PySlowFast's R101 + non-local layout (depth, dot-product non-local blocks after res4 blocks 6/13/20
    # with (2,2,2) pooling, temporal kernels in the first [3,4,6,3] blocks) with aligned=True; channels
    # at a quarter of the published width to keep the default suite fast.
    ("SLOWFAST_32x2_R101_50_50", {"roi_aligned": True, "width": 16}),
])
def test_published_layouts_equal_torch(name, changes, tmp_path):
    cfg = _published_layout(name, **changes)
    torch.manual_seed(0)
    model = _randomise(build_model(cfg))
    recipe = ClipRecipe.from_dict({**registry.get(name).recipe.to_dict(), "num_frames": 16})  # 4 Slow + 16 Fast
    _, ort_model = _export(model, recipe, tmp_path / "model.onnx")
    folded = inference_form(model)
    for (h, w), batch, count in [((64, 96), 3, 7), ((96, 64), 1, 1), ((96, 64), 1, 0)]:
        _assert_equal_outputs(ort_model, folded, _clips(cfg, recipe, batch, h, w, seed=count), _boxes(batch, count, h, w))


def test_fp16_graph_exports_and_runs(tmp_path):
    cfg = load_config("configs/toy/slowfast_tiny.yaml", ["model.num_classes=10"])
    model = _randomise(build_model(cfg.model))
    recipe = ClipRecipe.from_data(cfg.data, cfg.model.alpha)
    result, ort_model = _export(model, recipe, tmp_path / "fp16.onnx", precision="fp16")
    proto = onnx.load(str(result.path))
    dtypes = {init.data_type for init in proto.graph.initializer if len(init.dims) == 5}
    assert dtypes == {onnx.TensorProto.FLOAT16}  # the conv weights
    assert [i.type.tensor_type.elem_type for i in proto.graph.input] == [onnx.TensorProto.FLOAT] * 3
    inputs, rois = _clips(cfg.model, recipe, 2, 64, 96), _boxes(2, 5, 64, 96)
    scores, _ = ort_model.run(inputs, rois)  # the CPU provider runs it (casting where it has no fp16 kernel)
    assert (scores - torch.sigmoid(_reference(inference_form(model), inputs, rois))).abs().max() < 1e-2
    assert ort_model.precision == "fp16"


def test_metadata_round_trip(toy_export):
    model, recipe, path = toy_export
    meta = read_metadata(path)
    assert meta.label_map == LABELS
    assert meta.clip_recipe() == recipe
    assert meta.build_model_config() == model.cfg
    assert meta.inputs == [*model.cfg.pathways, "boxes"] and meta.precision == "fp32"
    ort_model = OnnxActionModel(path)
    assert ort_model.cfg == model.cfg and ort_model.label_map == LABELS and ort_model.recipe == recipe.to_dict()
    assert meta.data_config().num_frames == recipe.num_frames


def test_export_command(tmp_path, capsys):
    from sfdet.models.checkpoint import save_sfdet_checkpoint

    cfg = load_config("configs/toy/slow_tiny.yaml", ["model.num_classes=10"])
    model = _randomise(build_model(cfg.model))
    weights = save_sfdet_checkpoint(tmp_path / "toy.pt", model, LABELS, recipe=ClipRecipe.from_data(cfg.data, None))
    out = tmp_path / "toy.onnx"
    assert main(["export", str(weights), str(out), "--check-size", "96", "128"]) == 0
    printed = capsys.readouterr().out
    assert "opset 17" in printed and "MiB" in printed and "max |diff|" in printed
    diff = float(printed.split("max |diff| ")[1].split()[0])
    assert diff <= PROB_TOL
    meta = read_metadata(out)
    assert meta.label_map == LABELS and meta.recipe["num_frames"] == 4 and meta.source == str(weights)
    assert main(["export", str(weights), str(tmp_path / "x.onnx"), "--opset", "13"]) == 2
    assert "--opset must be >= 16" in capsys.readouterr().err


def test_missing_onnx_packages_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    assert main(["export", "whatever.pt", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and INSTALL_HINT in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(Exception, match=r"pip install 'sfdet\[onnx\]'"):
        OnnxActionModel(tmp_path / "x.onnx")
    assert main(["predict", str(tmp_path / "x.mp4"), "--weights", str(tmp_path / "x.onnx"), "--device", "cpu",
                 "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and INSTALL_HINT in err and "onnxruntime" in err


def test_predict_onnxruntime_backend_equals_torch(quick_toy, tmp_path, capsys):
    """`sfdet predict --backend onnxruntime` (exported on the fly, and from an exported file) writes the torch
    backend's CSV: same rows, every score within 1e-4, same frame-mAP to 1e-4."""
    from sfdet.data.ava import read_label_map, read_predictions_csv
    from sfdet.evaluation.frame_map import frame_map
    from sfdet.models.checkpoint import save_sfdet_checkpoint

    annotations = quick_toy / "annotations"
    labels = read_label_map(annotations / "label_map.pbtxt")
    cfg = load_config("configs/toy/slowfast_tiny.yaml", [f"model.num_classes={len(labels)}"])
    torch.manual_seed(0)
    model = _randomise(build_model(cfg.model))
    with torch.no_grad():  # spread the scores over (0, 1)
        model.head.proj.weight.mul_(20)
    weights = save_sfdet_checkpoint(tmp_path / "toy.pt", model, labels, recipe=ClipRecipe.from_data(cfg.data, 4))
    videos = sorted(str(v) for v in (quick_toy / "videos").glob("toy_val_*.mp4"))
    common = [*videos, "--boxes", str(annotations / "val_predicted_boxes.csv"), "--device", "cpu", "--precision",
              "fp32", "--no-progress", "--weights"]
    assert main(["predict", *common, str(weights), "--out", str(tmp_path / "torch")]) == 0
    assert main(["predict", *common, str(weights), "--out", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    onnx_file = tmp_path / "toy.onnx"
    assert main(["export", str(weights), str(onnx_file), "--no-check"]) == 0
    assert main(["predict", *common, str(onnx_file), "--out", str(tmp_path / "ort_file"), "--backend",
                 "onnxruntime"]) == 0
    capsys.readouterr()
    keys = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id"]
    results = {}
    for run in ("torch", "ort", "ort_file"):
        csvs = sorted((tmp_path / run).glob("*.csv"))
        pred = read_predictions_csv(next(p for p in csvs if not p.name.endswith(".tracks.csv")))
        results[run] = pred.sort_values(keys).reset_index(drop=True)
    reference = results["torch"]
    assert len(reference) > 50 and reference["score"].std() > 0.05
    maps = {run: frame_map(annotations / "val.csv", pred, labels,
                           exclusions=annotations / "val_excluded_timestamps.csv").map for run, pred in results.items()}
    for run in ("ort", "ort_file"):
        assert results[run][keys].equals(reference[keys])
        assert np.abs(results[run]["score"].to_numpy() - reference["score"].to_numpy()).max() <= 1e-4
        assert abs(maps[run] - maps["torch"]) <= 1e-4
