"""`sfdet info NAME|CHECKPOINT`: architecture, parameters, expected input and GFLOPs of a model.

A registered name is described without downloading anything; a checkpoint
file is loaded (strictly by default) to check that it fits. Parameters and
GFLOPs are counted on a "meta" copy of the network (shapes, no arithmetic),
so even R101 at full resolution takes a second on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sfdet.errors import ConfigError
from sfdet.models import build_model, registry
from sfdet.models.checkpoint import CheckpointInfo, assumed_line, known_recipe, load_checkpoint
from sfdet.models.config import ModelConfig
from sfdet.models.recipe import ClipRecipe

DEFAULT_HEIGHT, DEFAULT_WIDTH = 256, 320  # AVA test short side 256, a 4:3 frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="NAME|CHECKPOINT",
                        help=f"a registered model ({', '.join(registry.MODELS)}) or a checkpoint file")
    parser.add_argument("--input-size", nargs=3, type=int, metavar=("T", "H", "W"),
                        help="clip size for GFLOPs: frames of the densest pathway (Fast, or Slow for a "
                             f"Slow-only model), height, width (default: the model's frames x "
                             f"{DEFAULT_HEIGHT} x {DEFAULT_WIDTH})")
    parser.add_argument("--non-strict", action="store_true", help="describe a checkpoint that does not fully fit")


def _architecture_lines(cfg: ModelConfig) -> list[str]:
    lines = [f"{'SlowFast' if cfg.arch == 'slowfast' else 'Slow'} R{cfg.depth} ({cfg.block_type} blocks "
             f"{cfg.blocks_per_stage}), width {cfg.width}, output stride {cfg.output_stride}"]
    if cfg.arch == "slowfast":
        lines.append(f"alpha {cfg.alpha}, beta 1/{cfg.beta_inv}, lateral {cfg.lateral} (kernel {cfg.fusion_kernel}, "
                     f"x{cfg.fusion_conv_channel_ratio}) fused by {cfg.fusion}")
    if cfg.nonlocal_res4:
        lines.append(f"non-local ({cfg.nonlocal_instantiation}, pool {cfg.nonlocal_pool}) after res4 blocks "
                     f"{cfg.nonlocal_res4}")
    lines.append(f"RoIAlign {cfg.roi_resolution}x{cfg.roi_resolution} (aligned={cfg.roi_aligned}), "
                 f"{cfg.num_classes} classes")
    return lines


def _example_input(cfg: ModelConfig, frames: int, height: int, width: int) -> list[torch.Tensor]:
    """Zero clips shaped as the model expects: [slow (1,3,T/alpha,H,W), fast (1,3,T,H,W)] or [slow (1,3,T,H,W)]."""
    if cfg.arch == "slowfast":
        return [torch.zeros(1, cfg.in_channels, max(frames // cfg.alpha, 1), height, width),
                torch.zeros(1, cfg.in_channels, frames, height, width)]
    return [torch.zeros(1, cfg.in_channels, frames, height, width)]


def run(args: argparse.Namespace) -> int:
    from sfdet.models.complexity import count_flops, count_parameters

    name = args.model
    assumed = ""
    if name in registry.MODELS and not Path(name).exists():
        entry = registry.get(name)
        cfg = entry.build_config()
        cached = registry.cache_path(entry)
        recipe, origin = entry.recipe, "of the registry entry"
        rows = [("model", f"{entry.name} (registry, {entry.format} format)"),
                ("weights", f"{entry.url}\n{'':13}{'cached at' if cached.is_file() else 'downloads to'} {cached}"),
                ("reported", f"val frame-mAP {entry.reported_map} on AVA v{entry.ava_version}, "
                             f"pretrained on {entry.pretrain}"),
                ("labels", f"{len(entry.label_map())} classes ({entry.label_map_file})")]
    else:
        _, info = load_checkpoint(name, strict=not args.non_strict, progress=False)
        cfg = info.model_config
        recipe, origin = known_recipe(info, name)
        assumed = assumed_line(info, name, "info")
        rows = [("model", f"{info.source} ({info.format} format)"), ("weights", _weights_line(info)),
                ("labels", f"{len(info.label_map)} classes" if info.label_map else "none stored")]

    expected = _input_line(cfg, recipe)
    frames = recipe.num_frames if recipe is not None else (32 if cfg.arch == "slowfast" else 8)

    size = args.input_size or [frames, DEFAULT_HEIGHT, DEFAULT_WIDTH]
    if min(size) < 1:
        raise ConfigError(f"--input-size needs three positive numbers T H W, got {size}")
    t, h, w = size
    with torch.device("meta"):  # shapes only: counting needs no weights and no arithmetic
        model = build_model(cfg).eval()
        inputs = _example_input(cfg, t, h, w)
        boxes = [torch.tensor([[0.0, 0.0, float(w - 1), float(h - 1)]])]
    gflops = count_flops(model, inputs, boxes)
    rows += [("parameters", f"{count_parameters(model):,}"), ("input", expected),
             ("recipe", f"{recipe.describe()} ({origin})" if recipe is not None
              else f"none ({origin}; sfdet predict needs --config YAML)"),
             ("GFLOPs", f"{gflops:.4g} (multiply-adds, as PySlowFast/fvcore) for a {t}x{h}x{w} clip and one box")]
    rows += [("architecture" if i == 0 else "", line) for i, line in enumerate(_architecture_lines(cfg))]
    if assumed:
        rows.append(("assumed", assumed))
    for key, value in rows:
        print(f"{key:<12} {value}")
    return 0


def _input_line(cfg: ModelConfig, recipe: ClipRecipe | None) -> str:
    """What one clip holds: frames per pathway, stride, pixel normalisation, short side."""
    frames = recipe.num_frames if recipe is not None else (32 if cfg.arch == "slowfast" else 8)
    if cfg.arch == "slowfast":
        expected = f"slow {max(frames // cfg.alpha, 1)} frames + fast {frames} frames"
    else:
        expected = f"{frames} frames"
    if recipe is None:
        return expected + " (assumed: the file does not say)"
    rate, fps = recipe.sampling_rate, recipe.video_resample_fps or 30.0
    expected += f" at stride {rate} ({frames * rate} raw frames, {frames * rate / fps:.1f} s at {fps:g} fps)"
    mean, std = (f"{v[0]:g}" if len(set(v)) == 1 else str(list(v)) for v in (recipe.mean, recipe.std))
    return expected + f"; RGB in [0,1], mean {mean}, std {std}; test short side {recipe.test_short_side}"


def _weights_line(info: CheckpointInfo) -> str:
    if info.fits_exactly:
        return "every tensor loaded"
    return f"loaded what fits; skipped {info.skipped_summary()}"
