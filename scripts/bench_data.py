"""Loader throughput (clips/s) from videos (decoded per clip, or once into memory) and from frames, 0 and 2 workers.

    .venv/bin/python scripts/bench_data.py [--quick] [--root TOY_DIR] [--split train|val]

Uses the synthetic dataset (`sfdet toy-data`, generated with JPEG frames in a temporary
folder unless --root is given) and configs/toy/data.yaml. Prints clips/s per setting and
the ratio of each setting to the in-process video loader measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import warnings
from pathlib import Path

from sfdet.config import load_config
from sfdet.data.dataset import AvaDataset, build_loader
from sfdet.toy import generate_toy_dataset

REPO = Path(__file__).resolve().parents[1]


def clips_per_second(cfg, split: str, num_workers: int, batches: int, batch_size: int) -> float:
    dataset = AvaDataset(cfg, split, alpha=4)
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=True)
    stream = itertools.chain.from_iterable(itertools.repeat(loader))  # as many epochs as needed
    next(stream)  # warm-up: worker start, first file opens
    start, clips = time.perf_counter(), 0
    for batch in itertools.islice(stream, batches):
        clips += len(batch["keys"])
    elapsed = time.perf_counter() - start
    del loader
    dataset.close()
    return clips / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few batches only")
    parser.add_argument("--root", help="an existing `sfdet toy-data --frames jpg` folder")
    parser.add_argument("--split", default="train", choices=["train", "val"])
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    batches = 4 if args.quick else 20

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else generate_toy_dataset(Path(tmp) / "toy", quick=True, frames="jpg")
        results = {}
        sources = {"video": ("data.source=video", "data.cache=none"), "video+ram": ("data.source=video", "data.cache=ram"),
                   "frames": ("data.source=frames", "data.cache=none")}
        for source, workers in itertools.product(sources, [0, 2]):
            cfg = load_config(REPO / "configs/toy/data.yaml", [f"data.root={root}", *sources[source]]).data
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[source, workers] = clips_per_second(cfg, args.split, workers, batches, args.batch_size)
    reference = results["video", 0]
    print(f"{args.split} clips (Fast {cfg.num_frames} x {cfg.sampling_rate}), batch {args.batch_size}, {batches} batches")
    print(f"{'source':10s} {'workers':>7s} {'clips/s':>8s} {'vs video/0':>10s}")
    for (source, workers), rate in results.items():
        print(f"{source:10s} {workers:7d} {rate:8.1f} {rate / reference:10.2f}")


if __name__ == "__main__":
    main()
