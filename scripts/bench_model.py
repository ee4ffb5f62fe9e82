"""Model forward-pass speed: sfdet (plain and `optimize_for_inference`) vs PyTorchVideo, same weights, same inputs.

    python scripts/bench_model.py [--quick] [--json out.json] [--threads N] [--compile-fp32] [--device cuda]

PyTorchVideo's `slowfast_r50_detection` is built with random weights (BN
statistics re-drawn, as the equivalence test does) and loaded into sfdet. For
each (batch size, box count) every variant runs on identical inputs, one after
the other in rounds (A/B/C/A/B/C...), after one warm-up each; the median of the
rounds is reported, as wall time and as process CPU time (steadier on a shared
machine). The ablation adds one optimisation per row, so each row's gain over
the previous one is what that optimisation pays. Speed-ups are against
PyTorchVideo fp32 measured in the same rounds. With `--device cuda` every
variant runs on the GPU (timed to `torch.cuda.synchronize()`; the CPU time column
is then the host's), PyTorchVideo's low-precision rows use CUDA autocast, fp16
rows are added, and batches of 8 and 16 clips join the settings.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfdet.devices import fast_low_precision_available  # noqa: E402
from sfdet.models import build_model  # noqa: E402
from sfdet.models.inference import optimize_for_inference  # noqa: E402
from sfdet.models.pytorchvideo_keys import (  # noqa: E402
    pytorchvideo_model_config,
    pytorchvideo_to_sfdet,
    randomize_reference,
)

MODEL = "slowfast_r50_detection"
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
SLOW_FRAMES, FAST_FRAMES = 8, 32


def cpu_description() -> dict:
    """The CPU (model name, the vector/matrix flags that decide the kernels), what torch dispatches to
    (`torch.backends.cpu.get_cpu_capability()`) and the ISA limits set in the environment."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            if flags and model:
                break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS},
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "isa_limits": {k: os.environ[k] for k in ISA_LIMITS if k in os.environ},
            "mkldnn": torch.backends.mkldnn.is_available()}


def bf16_is_fast(device: str, cpu: dict) -> bool:
    """`fast_low_precision_available`, and on the CPU also not limited below AVX512 (the ISA limits leave
    the hardware flags set, but then bf16 is emulated: ~100x slower than fp32)."""
    if not fast_low_precision_available(device):
        return False
    if device != "cpu":
        return True
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    return cpu["torch_capability"].upper().startswith("AVX512") and (
        onednn in ("ALL", "DEFAULT") or onednn.startswith(("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10")))


def build_pair(seed: int = 1):
    """(PyTorchVideo reference, sfdet model) with identical random weights, both in eval mode."""
    from pytorchvideo.models import hub

    torch.manual_seed(0)
    reference = getattr(hub, MODEL)(pretrained=False)
    randomize_reference(reference, seed=seed)
    ours = build_model(pytorchvideo_model_config(MODEL))
    ours.load_state_dict(pytorchvideo_to_sfdet(reference.state_dict()), strict=True)
    return reference.eval(), ours.eval()


def make_inputs(batch: int, num_boxes: int, height: int, width: int, seed: int = 0, device: str = "cpu"):
    """Clips [slow (B,3,8,H,W), fast (B,3,32,H,W)], boxes_xyxy_abs per clip (num_boxes each), rois (K,5)."""
    g = torch.Generator().manual_seed(seed)
    clips = [torch.randn(batch, 3, t, height, width, generator=g) for t in (SLOW_FRAMES, FAST_FRAMES)]
    boxes = []
    for _ in range(batch):
        corner = torch.rand(num_boxes, 2, generator=g) * 0.5
        size = torch.rand(num_boxes, 2, generator=g) * 0.45 + 0.05
        boxes_norm = torch.cat([corner, corner + size], dim=1)
        boxes.append(boxes_norm * torch.tensor([width, height, width, height]))
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    return [c.to(device) for c in clips], [b.to(device) for b in boxes], rois.to(device)


def variants(reference, ours, low_precision: bool, ablation: bool, compile_fp32: bool, device: str = "cpu") -> dict:
    """name -> callable(clips, boxes, rois) -> probabilities (K, 80).

    With `ablation`, PyTorchVideo's own channels-last / bf16 numbers are added for context, and
    the sfdet rows from "sfdet plain" to "+ convs as 2D" each add one optimisation to the row above.
    Compiled rows (`torch.compile`, off by default in `optimize_for_inference`) replace the 2D-conv
    rewrite by the compiler's own fusions; their first call (compilation) is reported separately.
    """

    def pytorchvideo(model, precision=None):
        def run(clips, boxes, rois):
            with torch.inference_mode():
                if precision is None:
                    return model(list(clips), rois)  # its forward mutates the list: give it a copy
                dtype = torch.bfloat16 if precision == "bf16" else torch.float16
                with torch.autocast(device, dtype=dtype):
                    return model(list(clips), rois).float()
        return run

    def plain(grad_mode):
        def run(clips, boxes, rois):
            with grad_mode():
                return ours(clips, boxes)
        return run

    def optimised(**options):
        model = optimize_for_inference(ours, **options)
        return lambda clips, boxes, rois: model(clips, boxes)

    rows = {"pytorchvideo fp32": pytorchvideo(reference)}
    if ablation:
        reference_cl = copy.deepcopy(reference).to(memory_format=torch.channels_last_3d)
        rows["pytorchvideo fp32 channels_last"] = pytorchvideo(reference_cl)
        if low_precision:
            rows["pytorchvideo bf16 autocast channels_last"] = pytorchvideo(reference_cl, "bf16")
        if device == "cuda":
            rows["pytorchvideo fp16 autocast channels_last"] = pytorchvideo(reference_cl, "fp16")
        rows["sfdet plain (no_grad)"] = plain(torch.no_grad)
        rows["+ inference_mode"] = plain(torch.inference_mode)
        rows["+ BN folding"] = optimised(channels_last=False, conv_2d=False)
        rows["+ channels_last_3d"] = optimised(conv_2d=False)
    rows["+ convs as 2D (= fp32 default)"] = optimised()
    if low_precision:
        rows["+ bf16 weights (= bf16 default)"] = optimised(precision="bf16")
    if device == "cuda":
        rows["fp16 weights"] = optimised(precision="fp16")
    if compile_fp32:
        rows["fp32 + torch.compile"] = optimised(compile=True)
    if low_precision:
        rows["bf16 + torch.compile"] = optimised(precision="bf16", compile=True)
    return rows


def max_relative_difference(output: torch.Tensor, expected: torch.Tensor) -> float:
    return ((output.float() - expected).abs().max() / expected.abs().max()).item()


def time_config(rows: dict, batch: int, num_boxes: int, height: int, width: int, rounds: int,
                device: str = "cpu") -> dict:
    clips, boxes, rois = make_inputs(batch, num_boxes, height, width, device=device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    outputs, compile_s = {}, {}
    for name, run in rows.items():  # warm-up (and compilation), and the outputs to compare
        start = time.perf_counter()
        outputs[name] = run(clips, boxes, rois).float().cpu()
        compile_s[name] = time.perf_counter() - start
    expected = outputs["pytorchvideo fp32"]  # on the CPU, float32
    assert expected.shape == (batch * num_boxes, 80) and 0 <= expected.min() and expected.max() <= 1
    wall = {name: [] for name in rows}
    cpu = {name: [] for name in rows}
    for r in range(rounds):
        for name, run in rows.items():  # interleaved: every variant sees the same machine load
            sync()
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            run(clips, boxes, rois)
            sync()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
        print(f"    round {r + 1}/{rounds} done", flush=True)
    ref_wall, ref_cpu = statistics.median(wall["pytorchvideo fp32"]), statistics.median(cpu["pytorchvideo fp32"])
    results = {}
    for name in rows:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        results[name] = {
            "wall_s": w, "cpu_s": c, "speedup_wall": ref_wall / w, "speedup_cpu": ref_cpu / c,
            "max_rel_diff": max_relative_difference(outputs[name], expected),
            "first_call_s": compile_s[name], "wall_all_s": wall[name],
        }
    return results


def print_table(batch: int, num_boxes: int, results: dict) -> None:
    print(f"\n  batch {batch}, {num_boxes} boxes/clip")
    print(f"  {'variant':42s} {'wall s':>7s} {'cpu s':>7s} {'x wall':>7s} {'x cpu':>6s} {'max rel diff':>12s} "
          f"{'1st call s':>10s}")
    for name, r in results.items():
        print(f"  {name:42s} {r['wall_s']:7.3f} {r['cpu_s']:7.3f} {r['speedup_wall']:7.2f} {r['speedup_cpu']:6.2f} "
              f"{r['max_rel_diff']:12.2e} {r['first_call_s']:10.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 with 8 boxes, no ablation rows, 3 rounds (< 5 min)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--rounds", type=int, help="timed rounds per setting (default 3 quick, 5 full)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile-fp32", action="store_true",
                        help="also time torch.compile in fp32 (bf16 + compile is always timed where bf16 is fast)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    cpu = cpu_description()
    low_precision = bf16_is_fast(args.device, cpu)
    settings = [(1, 8)] if args.quick else [(1, 1), (1, 8), (2, 1), (2, 8)]
    if args.device == "cuda":
        settings += [(8, 8), (16, 8)]
    rounds = args.rounds or (3 if args.quick else 5)
    load_before = os.getloadavg()
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else None
    print(f"torch {torch.__version__}, {gpu or platform.processor() or platform.machine()}, "
          f"torch.set_num_threads({args.threads}) -> {torch.get_num_threads()} threads, "
          f"fast bf16 (AVX512-BF16/AMX): {low_precision}, load average {load_before[0]:.2f}")
    flags = " ".join(f"{f}{'+' if on else '-'}" for f, on in cpu["flags"].items())
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {flags}; torch capability {cpu['torch_capability']}"
          + (f", limits {cpu['isa_limits']}" if cpu["isa_limits"] else ""))
    print(f"{MODEL}: {SLOW_FRAMES}+{FAST_FRAMES} frames at {args.size[0]}x{args.size[1]}, {rounds} rounds")

    reference, ours = build_pair()
    reference, ours = reference.to(args.device), ours.to(args.device)
    rows = variants(reference, ours, low_precision, ablation=not args.quick, compile_fp32=args.compile_fp32,
                    device=args.device)
    report = {"model": MODEL, "torch": torch.__version__, "device": gpu or "cpu", "threads": torch.get_num_threads(),
              "size_hw": list(args.size), "rounds": rounds, "fast_bf16": low_precision, "cpu": cpu,
              "load_average_before": load_before, "settings": []}
    for batch, num_boxes in settings:
        results = time_config(rows, batch, num_boxes, *args.size, rounds, device=args.device)
        print_table(batch, num_boxes, results)
        report["settings"].append({"batch": batch, "boxes_per_clip": num_boxes, "variants": results})
    report["load_average_after"] = os.getloadavg()
    print(f"\nload average after: {report['load_average_after'][0]:.2f} (2-core machine shared with other jobs: "
          "wall times are inflated; ratios are from interleaved rounds)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
