"""`sfdet export WEIGHTS OUT.onnx`: the action detector as one ONNX file (see `sfdet.export.onnx`).

WEIGHTS is a registry name or a PySlowFast / PyTorchVideo / sfdet file. The file holds the
BN-folded inference form (what `sfdet predict` runs), the label map and the clip recipe (from
`--config`, else the weights', as `sfdet predict` finds it). Right after writing it, the file runs
on ONNX Runtime's CPU provider on a random clip and is compared with the torch fp32 model.
"""

from __future__ import annotations

import argparse

from sfdet.models import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", metavar="WEIGHTS",
                        help=f"checkpoint file or registered model name ({', '.join(registry.MODELS)})")
    parser.add_argument("output", metavar="OUT.onnx", help="ONNX file to write")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                        help="fp32 (default), or fp16 backbone for GPU execution providers (inputs, RoI head "
                             "and outputs stay float32)")
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help="ONNX opset (default 17; >= 16 for RoiAlign's aligned mode)")
    parser.add_argument("--config", metavar="YAML", help="training config whose `data:` section says how clips "
                                                         "are made (default: the weights' clip recipe)")
    parser.add_argument("--label-map", metavar="PBTXT", help="class names (default: the weights' own)")
    parser.add_argument("--check-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="clip size of the check against torch (default: the recipe's short side, 4:3)")
    parser.add_argument("--no-check", action="store_true", help="skip the check against torch")
    parser.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                        help="config overrides of the clip settings (data.num_frames=32 ...)")


def run(args: argparse.Namespace) -> int:
    from sfdet.export.onnx import DEFAULT_OPSET, require_onnx

    require_onnx("sfdet export")  # before loading any weights
    from sfdet.data.ava import read_label_map
    from sfdet.export.onnx import export_onnx
    from sfdet.models import load_checkpoint
    from sfdet.models.recipe import ClipRecipe
    from sfdet.predict.clip_settings import model_clip_settings

    label_map = read_label_map(args.label_map) if args.label_map else None
    model, info = load_checkpoint(args.weights, label_map=label_map)
    cfg = model.cfg
    data_cfg = model_clip_settings(args.weights, info, args.config, args.overrides)
    recipe = ClipRecipe.from_data(data_cfg, cfg.alpha if cfg.arch == "slowfast" else None)
    label_map = info.label_map or {i + 1: f"class_{i + 1}" for i in range(cfg.num_classes)}
    result = export_onnx(model, args.output, label_map, recipe, precision=args.precision,
                         opset=args.opset or DEFAULT_OPSET, source=str(args.weights), check=not args.no_check,
                         check_size=tuple(args.check_size) if args.check_size else None)
    print(f"wrote {result.path}: {cfg.arch} {cfg.num_classes} classes, {result.precision}, opset {result.opset}, "
          f"{result.size_bytes / 2**20:.1f} MiB ({result.seconds:.1f} s)")
    print(f"  inputs  {', '.join(cfg.pathways)} (B, 3, T, H, W) + boxes (K, 5) [batch_index, x1, y1, x2, y2] "
          f"in input pixels; outputs scores, logits (K, {cfg.num_classes})")
    print(f"  recipe  {recipe.describe()}")
    if result.max_abs_diff is not None:
        shapes = " + ".join("x".join(map(str, s)) for s in result.input_shapes["inputs"])
        print(f"  check   ONNX Runtime (CPU) vs torch fp32 on a random {shapes} clip, "
              f"{result.input_shapes['boxes'][0]} boxes: max |diff| {result.max_abs_diff:.2e} in probabilities, "
              f"{result.max_rel_diff_logits:.2e} relative in logits")
    elif result.check_note:
        print(f"  check   {result.check_note}")
    return 0
