"""`sfdet toy-data`: generate the synthetic AVA-format dataset (see `sfdet.toy`)."""

from __future__ import annotations

import argparse
import json
import time

from sfdet.toy import DEFAULTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    width, height = DEFAULTS["size"]
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write videos/, annotations/, frame_lists/, meta.json")
    parser.add_argument("--seed", type=int, help=f"random seed (default {DEFAULTS['seed']})")
    parser.add_argument("--videos-train", type=int,
                        help=f"training videos (default {DEFAULTS['videos_train']})")
    parser.add_argument("--videos-val", type=int,
                        help=f"validation videos (default {DEFAULTS['videos_val']})")
    parser.add_argument("--seconds", type=int,
                        help=f"length of each video; keyframes at 1..N-1 s (default {DEFAULTS['seconds']})")
    parser.add_argument("--fps", type=float, help=f"frame rate (default {DEFAULTS['fps']:g})")
    parser.add_argument("--size", help=f"WIDTHxHEIGHT, even numbers (default {width}x{height})")
    parser.add_argument("--frames", choices=("jpg", "png"), help="also extract every frame to frames/<video_id>/")
    parser.add_argument("--overwrite", action="store_true", help="replace the toy dataset in a non-empty OUT_DIR")
    parser.add_argument("--quick", action="store_true", help="small test preset: 2 train + 1 val videos x 8 s")


def run(args: argparse.Namespace) -> int:
    from sfdet.toy import generate_toy_dataset

    start = time.perf_counter()
    out_dir = generate_toy_dataset(
        args.out_dir, seed=args.seed, videos_train=args.videos_train, videos_val=args.videos_val,
        seconds=args.seconds, fps=args.fps, size=args.size, frames=args.frames, overwrite=args.overwrite,
        quick=args.quick, progress=True,
    )
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    print(f"wrote {train['videos']} train + {val['videos']} val videos ({meta['seconds']} s, "
          f"{meta['width']}x{meta['height']} @ {meta['fps']:g} fps, {meta['codec']}), "
          f"{train['person_boxes']} + {val['person_boxes']} person boxes, "
          f"{train['excluded_keyframes'] + val['excluded_keyframes']} excluded keyframes "
          f"to {out_dir} in {time.perf_counter() - start:.1f} s")
    return 0
