"""The action detector as one ONNX file: the BN-folded inference form, with its label map and clip recipe.

    result = export_onnx(model, "model.onnx", label_map={1: "stand", ...}, recipe={...})
    meta = read_metadata("model.onnx")     # label map, clip recipe, model config, precision, inputs

The graph (what `sfdet.models.inference.optimize_for_inference` runs, without the
torch-only memory-layout rewrites, which do not change the maths):

    inputs   "slow" (B, 3, T_s, H, W) [, "fast" (B, 3, T_f, H, W)]   float32 normalised clips
             "boxes" (K, 5) float32 [batch_index, x1, y1, x2, y2] in input pixels
    outputs  "scores" (K, num_classes) float32 sigmoid probabilities, "logits" (K, num_classes) float32

B, K, H and W are dynamic (K may be 0: the outputs are then (0, num_classes)); the frame
counts are the recipe's. RoIAlign is ONNX `RoiAlign` (opset >= 16): torchvision's
`aligned=True` is `coordinate_transformation_mode="half_pixel"`, `aligned=False`
`"output_half_pixel"` (including its 1-pixel minimum box size), and `sampling_ratio=0`
is ONNX's adaptive `ceil(roi_size / output_size)` grid, the same rule; ONNX Runtime's CPU
kernel gives bit-identical results to torchvision's (tests/test_export.py).

`precision="fp16"`: the backbone's weights and activations are float16 (for GPU
execution providers); the inputs, the RoI head and the outputs stay float32, as in
`optimize_for_inference` (boxes in half precision lose pixels).

Metadata (`metadata_props`, JSON values): `sfdet.label_map`, `sfdet.clip_recipe`,
`sfdet.model_config`, `sfdet.precision`, `sfdet.inputs`, `sfdet.source`, `sfdet.version`.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sfdet.errors import ConfigError, SfdetError

INSTALL_HINT = "pip install 'sfdet[onnx]'"
DEFAULT_OPSET = 17
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (torchvision's `aligned`)
EXPORT_PRECISIONS = ("fp32", "fp16")
METADATA_VERSION = 1
OUTPUT_NAMES = ("scores", "logits")
# Clip fields of DataConfig that make a model's input (what `sfdet predict` rebuilds its clips from).


def require_onnx(what: str = "sfdet export", runtime_only: bool = False) -> None:
    """One-line SfdetError when onnx / onnxruntime are not installed."""
    modules = ("onnxruntime",) if runtime_only else ("onnx", "onnxruntime")
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise SfdetError(f"{what} needs the '{module}' package: {INSTALL_HINT}") from None


@dataclass
class OnnxMetadata:
    """What an exported file says about itself (`metadata_props`)."""

    label_map: dict[int, str]
    recipe: dict
    model_config: dict
    precision: str = "fp32"
    inputs: list[str] = field(default_factory=list)
    source: str = ""
    version: int = METADATA_VERSION

    def to_props(self) -> dict[str, str]:
        return {
            "sfdet.version": str(self.version),
            "sfdet.label_map": json.dumps({str(k): v for k, v in self.label_map.items()}),
            "sfdet.clip_recipe": json.dumps(self.recipe, sort_keys=True),
            "sfdet.model_config": json.dumps(self.model_config, sort_keys=True),
            "sfdet.precision": self.precision,
            "sfdet.inputs": json.dumps(self.inputs),
            "sfdet.source": self.source,
        }

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "") -> OnnxMetadata:
        missing = [k for k in ("sfdet.label_map", "sfdet.clip_recipe", "sfdet.model_config") if k not in props]
        if missing:
            raise SfdetError(f"{source or 'the ONNX file'} was not written by `sfdet export` "
                             f"(its metadata lacks {', '.join(missing)}); export it with `sfdet export`")
        try:
            return cls(
                label_map={int(k): str(v) for k, v in json.loads(props["sfdet.label_map"]).items()},
                recipe=json.loads(props["sfdet.clip_recipe"]),
                model_config=json.loads(props["sfdet.model_config"]),
                precision=props.get("sfdet.precision", "fp32"),
                inputs=json.loads(props.get("sfdet.inputs", "[]")),
                source=props.get("sfdet.source", ""),
                version=int(props.get("sfdet.version", METADATA_VERSION)),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise SfdetError(f"{source or 'the ONNX file'}: its sfdet metadata is malformed ({exc})") from None

    def build_model_config(self):
        from sfdet.models.config import ModelConfig
        from sfdet.typed_config import from_dict

        return from_dict(ModelConfig, self.model_config, prefix="model")

    def clip_recipe(self):
        """The stored recipe as a `ClipRecipe`."""
        from sfdet.models.recipe import ClipRecipe

        try:
            return ClipRecipe.from_dict(self.recipe)
        except (ValueError, TypeError) as exc:
            raise SfdetError(f"{self.source or 'the ONNX file'}: its stored clip recipe is invalid ({exc})") from None

    def data_config(self):
        """A default DataConfig with the recipe's clip fields (what `ActionPredictor` reads)."""
        from sfdet.data.config import DataConfig

        return self.clip_recipe().apply_to(DataConfig())


def clip_recipe(recipe, model_cfg=None) -> dict:
    """The clip recipe stored in the file, as `ClipRecipe.to_dict()` (how a clip is cut and normalised).

    `recipe`: a ClipRecipe, its dict form, or a DataConfig (its clip fields; `model_cfg` gives alpha).
    """
    from sfdet.models.recipe import ClipRecipe

    if isinstance(recipe, ClipRecipe):
        return recipe.to_dict()
    if isinstance(recipe, dict):
        try:
            return ClipRecipe.from_dict(recipe).to_dict()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid clip recipe: {exc}") from None
    if model_cfg is None:
        raise TypeError("clip_recipe(DataConfig) needs the model config (for alpha)")
    alpha = model_cfg.alpha if model_cfg.arch == "slowfast" else None
    return ClipRecipe.from_data(recipe, alpha).to_dict()


def pathway_frames(model_cfg, recipe: dict) -> list[int]:
    """Frames per pathway input: [Slow, Fast] for SlowFast, [T] for Slow-only."""
    num_frames = int(recipe["num_frames"])
    if model_cfg.arch == "slowfast":
        return [num_frames // model_cfg.alpha, num_frames]
    return [num_frames]


class ExportableDetector(nn.Module):
    """`ActionDetector.forward` with a (K, 5) boxes tensor, pathways as separate arguments -> (scores, logits)."""

    def __init__(self, inference_model: nn.Module):
        super().__init__()
        self.backbone = inference_model.backbone
        self.head = inference_model.head

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *inputs, boxes = args
        features = self.backbone(list(inputs))
        logits = self.head(features, boxes)
        return torch.sigmoid(logits), logits


def inference_form(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """The BN-folded model `predict` runs, on the CPU, in contiguous layout; fp16: backbone in float16."""
    from sfdet.models.inference import optimize_for_inference

    if precision not in EXPORT_PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(EXPORT_PRECISIONS)}, got '{precision}'")
    folded = optimize_for_inference(model.eval(), "fp32", channels_last=False).cpu()
    if precision == "fp16":
        folded.backbone.backbone.half()
        folded.backbone.dtype = torch.float16
    return folded


@dataclass
class ExportResult:
    path: Path
    opset: int
    size_bytes: int
    precision: str
    seconds: float
    max_abs_diff: float | None = None  # scores vs the torch fp32 inference model (None: not run)
    max_rel_diff_logits: float | None = None
    check_note: str = ""
    input_shapes: dict = field(default_factory=dict)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    label_map: dict[int, str],
    recipe,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    source: str = "",
    check: bool = True,
    check_size: tuple[int, int] | None = None,
    seed: int = 0,
) -> ExportResult:
    """Write the inference form of `model` (an ActionDetector) to `path` as ONNX, with metadata.

    `recipe`: the model's ClipRecipe (or its dict form, or a DataConfig): stored, and it fixes the
    frame counts of the inputs.

    `check`: run the file on ONNX Runtime's CPU provider right after export on a random clip of the
    recipe's size (`check_size` (H, W) overrides it) with boxes inside and across the frame edge, and
    compare with the torch fp32 inference model (`result.max_abs_diff`, `result.max_rel_diff_logits`).
    """
    require_onnx("sfdet export")
    import onnx

    if opset < MIN_OPSET:
        raise ConfigError(f"--opset must be >= {MIN_OPSET} (ONNX RoiAlign's coordinate_transformation_mode "
                          f"carries torchvision's `aligned`), got {opset}")
    cfg = model.cfg
    if len(label_map) != cfg.num_classes:
        raise ConfigError(f"the label map has {len(label_map)} classes but the model outputs {cfg.num_classes}")
    recipe = clip_recipe(recipe, cfg)
    alpha = cfg.alpha if cfg.arch == "slowfast" else None
    if recipe["alpha"] != alpha:
        raise ConfigError(f"the clip recipe's alpha ({recipe['alpha']}) is not the model's ({alpha})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    exportable = ExportableDetector(inference_form(model, precision)).eval()
    frames = pathway_frames(cfg, recipe)
    input_names = list(cfg.pathways) + ["boxes"]
    # A small example for the trace: every size below is dynamic in the graph.
    example_hw = (32, 48)
    generator = torch.Generator().manual_seed(seed)
    example = [torch.randn(2, 3, t, *example_hw, generator=generator) for t in frames]
    example_boxes = torch.tensor([[0, 4.0, 6.0, 20.0, 30.0], [1, 0.0, 0.0, 48.0, 32.0], [1, 30.0, 10.0, 60.0, 40.0]])
    dynamic_axes = {name: {0: "batch", 3: "height", 4: "width"} for name in cfg.pathways}
    dynamic_axes["boxes"] = {0: "num_boxes"}
    dynamic_axes.update({name: {0: "num_boxes"} for name in OUTPUT_NAMES})
    partial = path.with_name(path.name + ".part")
    buffer = io.BytesIO()
    try:
        # The TorchScript-based exporter: the dynamo one fails on torchvision's roi_align (torchvision #9251).
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about the pathway-shape check
            torch.onnx.export(exportable, tuple(example) + (example_boxes,), buffer, dynamo=False,
                              opset_version=opset, input_names=input_names, output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
        proto = onnx.load_model_from_string(buffer.getvalue())
        del buffer
        metadata = OnnxMetadata(label_map=dict(label_map), recipe=recipe, model_config=_model_config_dict(cfg),
                                precision=precision, inputs=input_names, source=source)
        onnx.helper.set_model_props(proto, metadata.to_props())
        proto.doc_string = f"sfdet action detector ({cfg.arch}, {cfg.num_classes} classes) from {source or 'a model'}"
        onnx.save(proto, str(partial))
        os.replace(partial, path)
    except OSError as exc:
        raise SfdetError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    result = ExportResult(path=path, opset=opset, size_bytes=path.stat().st_size, precision=precision,
                          seconds=time.perf_counter() - start)
    if check:
        _check_against_torch(model, result, recipe, check_size, seed)
    return result


def _model_config_dict(cfg) -> dict:
    from sfdet.typed_config import to_dict

    return to_dict(cfg)


def check_inputs(model_cfg, recipe: dict, size: tuple[int, int] | None = None, batch: int = 1, seed: int = 0):
    """A random clip batch of the recipe's size and boxes inside, touching and crossing the frame edge."""
    if size is None:
        short = int(recipe.get("test_short_side", 256))
        size = (short, short * 4 // 3)  # a 4:3 frame at the test short side
    h, w = size
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(batch, 3, t, h, w, generator=generator) for t in pathway_frames(model_cfg, recipe)]
    rows = []
    for b in range(batch):
        rows += [[b, 0.1 * w, 0.2 * h, 0.5 * w, 0.9 * h], [b, 0.0, 0.0, w, h], [b, 0.6 * w, 0.5 * h, 1.2 * w, 1.1 * h],
                 [b, -0.1 * w, -0.05 * h, 0.3 * w, 0.4 * h]]
    return inputs, torch.tensor(rows, dtype=torch.float32)


def _check_against_torch(model, result: ExportResult, recipe: dict, size, seed: int) -> None:
    from sfdet.export.onnx_runtime import OnnxActionModel
    from sfdet.models.inference import optimize_for_inference

    inputs, boxes = check_inputs(model.cfg, recipe, size, seed=seed)
    result.input_shapes = {"inputs": [tuple(x.shape) for x in inputs], "boxes": tuple(boxes.shape)}
    reference = optimize_for_inference(model.eval(), "fp32").cpu()
    with torch.inference_mode():
        features = reference.backbone([x.contiguous(memory_format=torch.channels_last_3d) for x in inputs])
        ref_logits = reference.head(features, boxes)
    try:
        ort_model = OnnxActionModel(result.path, device="cpu")
    except SfdetError as exc:  # e.g. no float16 kernels in the CPU provider
        result.check_note = f"not run on ONNX Runtime's CPU provider: {exc}"
        return
    scores, logits = ort_model.run(inputs, boxes)
    result.max_abs_diff = float((scores - torch.sigmoid(ref_logits)).abs().max())
    result.max_rel_diff_logits = relative_difference(logits, ref_logits)


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (0 for empty tensors): the logits' error relative to their scale."""
    if expected.numel() == 0:
        return 0.0
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def read_metadata(path: str | Path) -> OnnxMetadata:
    """The sfdet metadata of an exported file (label map, clip recipe, model config, precision)."""
    require_onnx("reading an ONNX file")
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # OSError, protobuf's DecodeError and friends
        raise SfdetError(f"cannot read {path} as ONNX: {exc}") from None
    return OnnxMetadata.from_props({p.key: p.value for p in proto.metadata_props}, source=str(path))
