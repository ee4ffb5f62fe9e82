"""The `sfdet` command line: a thin dispatcher over `sfdet/commands/*`."""

from __future__ import annotations

import argparse
import importlib
import sys

from sfdet import __version__
from sfdet.errors import SfdetError

# name -> (module under sfdet.commands, one-line help). Order is the order of `sfdet --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the whole story offline: synthetic data, detector, training, eval, rendered video"),
    "toy-data": ("toy_data", "generate the synthetic AVA-format dataset"),
    "data": ("data", "AVA-format data tools (`sfdet data check`: the pre-flight report)"),
    "train": ("train", "train or fine-tune an action detector"),
    "eval": ("eval", "AVA frame-mAP of a prediction CSV, exactly as the official evaluator"),
    "predict": ("predict", "video(s) -> person boxes, tracks, actions (AVA CSV, JSON, rendered mp4)"),
    "proposals": ("proposals", "run a person detector over every keyframe of a dataset"),
    "train-detector": ("train_detector", "fine-tune a torchvision person detector on a dataset's GT boxes"),
    "plot": ("plot", "PNG curves of a training run's log"),
    "convert": ("convert", "convert a PySlowFast/PyTorchVideo/caffe2 checkpoint to sfdet's format"),
    "info": ("info", "architecture, parameters, expected input and GFLOPs of a model or checkpoint"),
    "export": ("export", "the action detector as one ONNX file (label map and clip recipe inside)"),
}


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"sfdet.commands.{module_name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfdet", description="SlowFast spatio-temporal action detection.")
    parser.add_argument("--version", action="version", version=f"sfdet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    if name is not None and name not in COMMANDS:
        name = None  # argparse reports the unknown command
    try:
        parser = build_parser(only=name)
        args, extra = parser.parse_known_args(argv)
        # `key=value` overrides may come after options too (`sfdet train --config X a=1 --no-progress b=2`).
        positional = next((getattr(args, k) for k in ("overrides", "items") if isinstance(getattr(args, k, None), list)), None)
        if extra and positional is not None and all("=" in item and not item.startswith("-") for item in extra):
            positional += extra
        elif extra:
            parser.parse_args(argv)  # argparse's own "unrecognized arguments" error (exit 2)
        if args.command is None:
            parser.print_help()
            return 2
        return int(_load(args.command).run(args) or 0)
    except SfdetError as exc:
        print(f"sfdet {name or ''}: error: {exc}".replace("  ", " "), file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("sfdet.commands"):
            print(f"sfdet: error: command '{name}' is not available in this version", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("sfdet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
