"""`sfdet convert IN OUT`: any supported checkpoint (or a registered model) -> sfdet's own format.

The output stores the architecture, the label map and the clip recipe with the
weights, so `sfdet.models.load_checkpoint(OUT)` rebuilds the exact model from the
file alone and `sfdet predict --weights OUT` cuts its clips without --config.
The recipe comes from `--config` (its `data:` section), else from the input (its
own, or its registry entry's), else from the registry model whose architecture a
PyTorchVideo / PySlowFast file has; otherwise none is stored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sfdet.errors import CheckpointError
from sfdet.models import registry
from sfdet.models.checkpoint import (ASSUMED_LABEL_MAP, FORMATS, assumed_line, known_recipe, label_map_conflict,
                                     load_checkpoint, model_alpha, save_sfdet_checkpoint)
from sfdet.models.recipe import ClipRecipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="checkpoint file in any supported format, or a registered "
                                                    f"model name ({', '.join(registry.MODELS)})")
    parser.add_argument("output", metavar="OUT", help="sfdet checkpoint to write")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                        help="input format (default: recognised from the content)")
    arch = parser.add_mutually_exclusive_group()
    arch.add_argument("--arch", metavar="NAME", help="use the architecture of this registered model "
                                                     "(default: inferred from the tensor shapes)")
    arch.add_argument("--config", metavar="YAML", help="sfdet config whose `model:` section is the architecture "
                                                       "and whose `data:` section says how clips are made")
    parser.add_argument("--label-map", metavar="PBTXT", help="class names to store (default: the file's own, or "
                                                             "the 80 AVA v2.2 classes for an 80-class model)")
    parser.add_argument("--non-strict", action="store_true",
                        help="load the tensors that fit and report the rest instead of failing")


def run(args: argparse.Namespace) -> int:
    cfg = recipe = None
    if args.arch:
        cfg = registry.get(args.arch).build_config()
    elif args.config:
        from sfdet.config import load_config

        config = load_config(args.config)
        cfg = config.model
        recipe = ClipRecipe.from_data(config.data, model_alpha(cfg))
    label_map = None
    if args.label_map:
        from sfdet.data.ava import read_label_map

        label_map = read_label_map(args.label_map)

    out = Path(args.output)
    if out.exists() and Path(args.input).exists() and out.resolve() == Path(args.input).resolve():
        raise CheckpointError(f"OUT ({out}) is the input file; choose another output path")
    model, info = load_checkpoint(args.input, strict=not args.non_strict, cfg=cfg, format=args.format,
                                  label_map=label_map)
    label_note = ""
    if info.label_map is None and info.model_config.num_classes == 80:
        info.label_map = registry.bundled_label_map()
        label_note = f" (assumed: {registry.AVA_80_CLASSES})"
        info.assumed[ASSUMED_LABEL_MAP] = f"the 80 AVA v2.2 classes of {registry.AVA_80_CLASSES}"

    recipe, recipe_origin = (recipe, f"from {args.config}") if recipe is not None else known_recipe(info, args.input)
    origin = info.registry_entry.url if info.registry_entry is not None else str(args.input)
    save_sfdet_checkpoint(out, model, info.label_map, source=f"{info.format}:{origin}", recipe=recipe)
    cfg = info.model_config
    print(f"read    {info.source} ({info.format})")
    print(f"model   {'SlowFast' if cfg.arch == 'slowfast' else 'Slow'} R{cfg.depth}, blocks {cfg.blocks_per_stage}"
          f"{f', non-local res4 {cfg.nonlocal_res4}' if cfg.nonlocal_res4 else ''}, {cfg.num_classes} classes")
    labels = f"{len(info.label_map)} names{label_note}" if info.label_map else "none (pass --label-map PBTXT)"
    print(f"labels  {labels}")
    if recipe is not None:
        print(f"recipe  {recipe.describe()} ({recipe_origin}; --config YAML sets another)")
    else:
        print(f"recipe  none stored ({recipe_origin}; sfdet predict will need --config YAML)")
    if not info.fits_exactly:
        print(f"skipped {info.skipped_summary()}")
    for line in (label_map_conflict(info), assumed_line(info, args.input, "convert")):
        if line:
            print(f"warning: {line}")
    print(f"wrote   {out}")
    return 0
