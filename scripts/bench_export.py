"""ONNX Runtime (CPU execution provider) vs sfdet's torch fp32 inference model, on the same clips.

    python scripts/bench_export.py [--quick] [--json out.json] [--threads N] [--rounds N]

Models (random weights, BN statistics re-drawn; speed does not depend on the values):
  - r50:  the PyTorchVideo `slowfast_r50_detection` layout, 8 Slow + 32 Fast frames at 256x320, 80 classes
  - toy:  configs/toy/slowfast_tiny.yaml, 4 Slow + 16 Fast frames at 144x256 (the toy set's test size), 10 classes

For each model the torch fp32 inference model (`optimize_for_inference(model, "fp32")`: BN folded,
channels-last, 3D convs run as 2D where they can, as `sfdet predict --precision fp32` runs it) and
the file `sfdet export` writes (ONNX Runtime, CPUExecutionProvider, all graph optimisations) score
the same batch of clips with 4 boxes per clip. Each backend runs in its own process (so each one's
peak RSS is its own): load, one warm-up batch, then `--reps` timed batches; backends alternate over
`--rounds` rounds and the median is reported, as wall time and as process CPU time per clip (CPU time
is steadier on a shared machine). The two backends' scores on the bench clips are compared too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {
    # name: (ModelConfig source, frames (slow, fast), (H, W), classes)
    "r50": ("slowfast_r50_detection", (8, 32), (256, 320), 80),
    "toy": ("configs/toy/slowfast_tiny.yaml", (4, 16), (144, 256), 10),
}


def model_config(name: str):
    from sfdet.config import load_config
    from sfdet.models import ModelConfig, registry

    source, _, _, classes = MODELS[name]
    if source.endswith(".yaml"):
        return load_config(source, [f"model.num_classes={classes}"]).model
    return ModelConfig(**registry.get(source).model_config)


def build(name: str, seed: int = 0):
    from sfdet.models import build_model

    torch.manual_seed(seed)
    model = build_model(model_config(name)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def clips(name: str, batch: int, seed: int = 0):
    _, frames, (h, w), _ = MODELS[name]
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(batch, 3, t, h, w, generator=g) for t in frames]
    rows = []
    for b in range(batch):
        rows += [[b, 0.1 * w, 0.2 * h, 0.4 * w, 0.9 * h], [b, 0.5 * w, 0.1 * h, 0.8 * w, 0.95 * h],
                 [b, 0.0, 0.0, 0.3 * w, 0.5 * h], [b, 0.7 * w, 0.4 * h, 1.0 * w, 1.0 * h]]
    return inputs, torch.tensor(rows, dtype=torch.float32)


def worker(args) -> None:
    """One backend in this process: load, warm up, time `reps` batches; JSON on stdout."""
    torch.set_num_threads(args.threads)
    inputs, rois = clips(args.model, args.batch)
    start = time.perf_counter()
    if args.worker == "torch":
        from sfdet.models.inference import optimize_for_inference

        model = build(args.model)
        model.load_state_dict(torch.load(args.state, weights_only=True))
        model = optimize_for_inference(model, "fp32")
        # as ActionPredictor hands them over: channels-last clips
        inputs = [x.contiguous(memory_format=torch.channels_last_3d) for x in inputs]
    else:
        from sfdet.export.onnx_runtime import OnnxActionModel

        model = OnnxActionModel(args.onnx, device="cpu", threads=args.threads)
    load_s = time.perf_counter() - start
    scores = model(inputs, rois)  # warm-up
    walls, cpus = [], []
    for _ in range(args.reps):
        w0, c0 = time.perf_counter(), time.process_time()
        scores = model(inputs, rois)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    torch.save(scores.float(), args.scores)
    peak_mb = peak_rss_mb()
    print(json.dumps({"wall": walls, "cpu": cpus, "load_s": load_s, "peak_rss_mb": peak_mb}))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line for line in text.splitlines() if line.startswith("flags")), "").split())
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, 1 timed batch, batch 1 for r50")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=None, help="clips per batch (default: r50 2, toy 8)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None)
    # worker mode (internal)
    parser.add_argument("--worker", choices=("torch", "onnxruntime"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--scores", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import onnxruntime

    from sfdet.export.onnx import export_onnx
    from sfdet.models.recipe import ClipRecipe

    rounds = args.rounds or (1 if args.quick else 3)
    reps = args.reps or (1 if args.quick else 3)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores visible; flags {' '.join(cpu_flags())}); "
          f"{args.threads} threads; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.models:
            batch = args.batch or ({"r50": 1 if args.quick else 2, "toy": 8}[name])
            model = build(name)
            cfg = model.cfg
            _, (slow, fast), _, classes = MODELS[name]
            recipe = ClipRecipe(num_frames=fast, sampling_rate=2, alpha=cfg.alpha)
            state, onnx_path = tmp / f"{name}.pt", tmp / f"{name}.onnx"
            torch.save(model.state_dict(), state)
            export = export_onnx(model, onnx_path, {i + 1: f"c{i + 1}" for i in range(classes)}, recipe, check=False)
            del model
            runs: dict[str, list[dict]] = {"torch": [], "onnxruntime": []}
            for _ in range(rounds):
                for backend in runs:
                    command = [sys.executable, __file__, "--worker", backend, "--model", name, "--batch", str(batch),
                               "--reps", str(reps), "--threads", str(args.threads), "--state", str(state),
                               "--onnx", str(onnx_path), "--scores", str(tmp / f"{name}.{backend}.pt")]
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    runs[backend].append(json.loads(out.strip().splitlines()[-1]))
            diff = float((torch.load(tmp / f"{name}.torch.pt") - torch.load(tmp / f"{name}.onnxruntime.pt")).abs().max())
            row = {"model": name, "batch": batch, "frames": [slow, fast], "size": list(MODELS[name][2]),
                   "onnx_mb": export.size_bytes / 2**20, "max_abs_diff": diff}
            for backend, measured in runs.items():
                walls = [w for r in measured for w in r["wall"]]
                cpus = [c for r in measured for c in r["cpu"]]
                row[backend] = {"wall_per_clip_s": statistics.median(walls) / batch,
                                "cpu_per_clip_s": statistics.median(cpus) / batch,
                                "peak_rss_mb": max(r["peak_rss_mb"] for r in measured),
                                "load_s": statistics.median(r["load_s"] for r in measured)}
            results.append(row)

    print()
    print(f"{'model':<6} {'input (Slow+Fast @ HxW)':<24} {'batch':>5}  {'backend':<22} {'s/clip wall':>11} "
          f"{'s/clip CPU':>10} {'peak RSS MiB':>12}  ratio vs torch (wall)")
    for row in results:
        shape = f"{row['frames'][0]}+{row['frames'][1]} @ {row['size'][0]}x{row['size'][1]}"
        base = row["torch"]["wall_per_clip_s"]
        for backend, label in (("torch", "torch fp32 (sfdet)"), ("onnxruntime", "ONNX Runtime CPU fp32")):
            r = row[backend]
            ratio = r["wall_per_clip_s"] / base
            print(f"{row['model']:<6} {shape:<24} {row['batch']:>5}  {label:<22} {r['wall_per_clip_s']:>11.3f} "
                  f"{r['cpu_per_clip_s']:>10.3f} {r['peak_rss_mb']:>12.0f}  {ratio:.2f}x")
        print(f"{'':<6} ONNX file {row['onnx_mb']:.0f} MiB; max |score diff| torch vs ONNX Runtime {row['max_abs_diff']:.1e}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "flags": cpu_flags(), "threads": args.threads,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
