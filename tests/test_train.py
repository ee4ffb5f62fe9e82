"""`sfdet train` on the synthetic quick dataset: exact resume after SIGKILL, torchrun equivalence,
fine-tuning a foreign checkpoint, the NaN guard, and one-line errors on bad input.

Runs are tiny (8-frame clips at 64 px, batches of 2) so the file stays fast on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sfdet import cli
from sfdet.config import load_config
from sfdet.engine.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]
SLOWFAST_TINY = REPO / "configs" / "toy" / "slowfast_tiny.yaml"
TINY = [
    "data.num_frames=8",
    "data.train_jitter=[64,72]",
    "data.train_crop=64",
    "data.test_short_side=64",
    "train.batch_size=2",
    "train.val_batch_size=4",
    "train.num_workers=0",
    "train.epochs=2",
    "train.warmup_epochs=0.5",
    "train.log_every=1",
    "train.tensorboard=false",
    "train.precision=fp32",  # the toy config's `auto` is bf16 on CPUs with AMX: keep these numerics machine-independent
]
TIMING_KEYS = {"clips_per_s"}


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    from sfdet.toy import generate_toy_dataset

    return generate_toy_dataset(tmp_path_factory.mktemp("toy") / "data", quick=True)


def train_clips(toy_root: Path) -> int:
    """Training clips of the quick toy set (the loader drops a last incomplete batch)."""
    from sfdet.data.dataset import AvaDataset

    cfg = tiny_config(toy_root, toy_root / "unused")
    return len(AvaDataset(cfg.data, "train", alpha=cfg.model.alpha))


def tiny_config(toy_root: Path, run_dir: Path, *extra: str):
    return load_config(SLOWFAST_TINY, [f"data.root={toy_root}", f"output_dir={run_dir}", *TINY, *extra])


def cli_args(toy_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(SLOWFAST_TINY), "--no-progress",
            f"data.root={toy_root}", f"output_dir={run_dir}", *TINY, *extra]


def run_to_end(command: list[str], cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run in its own session, so a timeout also ends the processes it started (torchrun's)."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {' '.join(command)}\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


# --------------------------------------------------------------------------------------------------
# Exact resume


def test_resume_after_sigkill_matches_an_uninterrupted_run(toy_root, tmp_path):
    from sfdet.engine.trainer import train

    extra = ("train.checkpoint_every=2", "train.eval_every=2")
    per_epoch = train_clips(toy_root) // 2  # batches of 2
    assert per_epoch >= 4
    reference = train(tiny_config(toy_root, tmp_path / "reference", *extra), progress=False, log=lambda *a: None)
    assert reference.iteration == 2 * per_epoch  # 2 epochs
    assert reference.val_map is not None and 0.0 < reference.val_map <= 1.0

    run_dir = tmp_path / "interrupted"
    # A loader worker here, none in the reference: samples must not depend on who loads them.
    command = [sys.executable, "-m", "sfdet", *cli_args(toy_root, run_dir, *extra, "train.num_workers=1")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        saved = [r["iteration"] for r in (read_metrics(metrics) if metrics.exists() else [])
                 if r["kind"] == "checkpoint"]
        if saved and saved[-1] > per_epoch:  # a mid-epoch checkpoint of epoch 2
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["train_state"]
    assert per_epoch < killed_at["iteration"] < 2 * per_epoch and killed_at["batch_in_epoch"] > 0  # mid-epoch

    resumed = run_to_end(command, tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {run_dir / 'checkpoints' / 'last.pt'}" in resumed.stdout

    expected, got = final_state(tmp_path / "reference"), final_state(run_dir)
    assert got["train_state"]["iteration"] == 2 * per_epoch
    assert expected["model_state"].keys() == got["model_state"].keys()
    for key, value in expected["model_state"].items():
        assert torch.equal(value, got["model_state"][key]), key
    assert without_timing(read_metrics(run_dir / "metrics.jsonl")) == without_timing(
        read_metrics(tmp_path / "reference" / "metrics.jsonl"))
    assert got["train_state"]["last_map"] == reference.val_map

    # The run dir's checkpoint is an sfdet checkpoint: load_checkpoint rebuilds the trained model from it.
    from sfdet.models import load_checkpoint

    model, info = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert info.format == "sfdet" and len(info.label_map) == model.cfg.num_classes == 10
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "config.yaml").is_file()
    resolved = load_config(run_dir / "config.yaml")
    assert resolved.model.num_classes == 10  # the resolved config is kept
    # ... and the clip recipe `sfdet predict` cuts its clips by: the data section's clip fields, the model's alpha.
    from sfdet.models.recipe import ClipRecipe

    assert got["recipe"] == info.recipe.to_dict()
    assert info.recipe == ClipRecipe.from_data(resolved.data, resolved.model.alpha)


# --------------------------------------------------------------------------------------------------
# torchrun


def test_torchrun_two_processes_match_one(toy_root, tmp_path):
    from sfdet.engine.trainer import train
    from sfdet.engine.validation import ValidationData, validate
    from sfdet.engine.distributed import DistContext
    from sfdet.engine.datasets import build_datasets
    from sfdet.models import load_checkpoint

    # Frozen BN and no dropout: 2 x 2 clips then give the same loss as 1 x 4 (BN batch statistics
    # and dropout masks are per process); the loss is normalised by the global box count.
    extra = ("train.batch_size=4", "train.epochs=1", "train.freeze_bn=true", "model.dropout=0.0",
             "train.eval_every=0")
    single = train(tiny_config(toy_root, tmp_path / "single", *extra), progress=False, log=lambda *a: None)

    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "sfdet", *cli_args(toy_root, run_dir, *extra)]
    done = run_to_end(command, tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    one = [r for r in read_metrics(tmp_path / "single" / "metrics.jsonl") if r["kind"] == "train"]
    two = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    global_batches = train_clips(toy_root) // 4
    assert global_batches >= 2 and [r["iteration"] for r in two] == list(range(1, global_batches + 1))
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), (a, b)

    # Only rank 0 wrote: one checkpoint save, no per-rank or temporary files.
    assert sum(r["kind"] == "checkpoint" for r in read_metrics(run_dir / "metrics.jsonl")) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    # Val mAP gathered from both ranks == the single-process val mAP of the same weights.
    ddp_map = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "val"][-1]["map"]
    cfg = tiny_config(toy_root, tmp_path / "check", *extra)
    _, val_data, _ = build_datasets(cfg)
    model, _ = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    result = validate(model, val_data, cfg, DistContext(), progress=False)
    assert result.map == pytest.approx(ddp_map, abs=1e-9)
    assert single.val_map == pytest.approx(ddp_map, abs=0.05)


# --------------------------------------------------------------------------------------------------
# Fine-tuning a PyTorchVideo-format checkpoint


def _to_pytorchvideo_key(key: str) -> str:
    """sfdet -> PyTorchVideo detector key (the inverse of sfdet.models.pytorchvideo_keys)."""
    import re

    pathway = {"slow": "0", "fast": "1"}
    parts = [
        (r"backbone\.stem\.(slow|fast)\.(conv|bn)\.(.+)",
         lambda m: f"model.blocks.0.multipathway_blocks.{pathway[m[1]]}.{'conv' if m[2] == 'conv' else 'norm'}.{m[3]}"),
        (r"backbone\.fuse(\d)\.(conv|bn)\.(.+)",
         lambda m: f"model.blocks.{int(m[1]) - 1}.multipathway_fusion."
                   f"{'conv_fast_to_slow' if m[2] == 'conv' else 'norm'}.{m[3]}"),
        (r"backbone\.res(\d)\.(slow|fast)\.blocks\.(\d+)\.shortcut\.(conv|bn)\.(.+)",
         lambda m: f"model.blocks.{int(m[1]) - 1}.multipathway_blocks.{pathway[m[2]]}.res_blocks.{m[3]}."
                   f"branch1_{'conv' if m[4] == 'conv' else 'norm'}.{m[5]}"),
        (r"backbone\.res(\d)\.(slow|fast)\.blocks\.(\d+)\.(conv|bn)_([abc])\.(.+)",
         lambda m: f"model.blocks.{int(m[1]) - 1}.multipathway_blocks.{pathway[m[2]]}.res_blocks.{m[3]}."
                   f"branch2.{'conv' if m[4] == 'conv' else 'norm'}_{m[5]}.{m[6]}"),
        (r"head\.proj\.(.+)", lambda m: f"detection_head.proj.{m[1]}"),
    ]
    for pattern, build in parts:
        match = re.fullmatch(pattern, key)
        if match:
            return build(match)
    raise AssertionError(f"no PyTorchVideo name for {key}")


def test_finetune_pytorchvideo_checkpoint_onto_the_toy_label_map(toy_root, tmp_path, capsys):
    from sfdet.models import build_model
    from sfdet.models.pytorchvideo_keys import pytorchvideo_key_to_sfdet

    cfg = tiny_config(toy_root, tmp_path / "ft")
    cfg.model.num_classes = 80
    torch.manual_seed(1)
    source = build_model(cfg.model)
    for name, tensor in source.state_dict().items():  # no layer left at a default value
        if tensor.is_floating_point():
            tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.1)
    state = {_to_pytorchvideo_key(k): v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    assert all(pytorchvideo_key_to_sfdet(k) for k in state)  # the test's names are PyTorchVideo's
    torch.save({"model_state": state}, tmp_path / "SLOWFAST_TINY_DETECTION.pyth")

    # lr 0 and frozen BN: after one iteration the backbone is exactly the checkpoint's.
    args = cli_args(toy_root, tmp_path / "ft", f"train.init={tmp_path / 'SLOWFAST_TINY_DETECTION.pyth'}",
                    "train.max_iters=1", "train.lr=0", "train.warmup_start_lr=0", "train.freeze_bn=true",
                    "data.val_gt=")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "init: head rebuilt for 10 classes (checkpoint has 80); no label map in the checkpoint" in out
    tuned = final_state(tmp_path / "ft")["model_state"]
    assert tuned["head.proj.weight"].shape[0] == 10
    for key, value in source.state_dict().items():
        if not key.startswith("head.") and "num_batches_tracked" not in key:
            assert torch.equal(tuned[key], value), key


def test_head_keeps_the_rows_of_classes_with_the_same_name(tmp_path):
    from sfdet.engine.initialization import initialize_from
    from sfdet.models import ModelConfig, build_model
    from sfdet.models.checkpoint import save_sfdet_checkpoint

    cfg = ModelConfig(arch="slow", depth=18, num_stages=1, stage_depths=[1], width=8, slow_temporal_kernels=[1],
                      fast_temporal_kernels=[1], spatial_strides=[1], spatial_dilations=[1], num_classes=3)
    torch.manual_seed(0)
    source = build_model(cfg)
    torch.nn.init.normal_(source.head.proj.bias)
    save_sfdet_checkpoint(tmp_path / "src.pt", source, {1: "run", 2: "wave_fast", 3: "sit"})
    cfg.num_classes = 2
    target = build_model(cfg)
    messages = initialize_from(target, str(tmp_path / "src.pt"), {1: "wave_fast", 7: "jump"})
    assert messages[-1] == "init: head rebuilt for 2 classes (checkpoint has 3); 1 matched by name kept their weights"
    assert torch.equal(target.head.proj.weight[0], source.head.proj.weight[1])
    assert target.head.proj.bias[0] == source.head.proj.bias[1]
    assert not torch.equal(target.head.proj.weight[1], source.head.proj.weight[2])
    assert torch.equal(target.backbone.stem.slow.conv.weight, source.backbone.stem.slow.conv.weight)


# --------------------------------------------------------------------------------------------------
# Guards and user errors


def test_nan_loss_stops_naming_iteration_and_last_checkpoint(toy_root, tmp_path, monkeypatch):
    from sfdet.engine import trainer as trainer_module

    real_bce = trainer_module.F.binary_cross_entropy_with_logits
    calls = []

    def bce_nan_at_third_call(logits, targets, **kwargs):
        calls.append(1)
        loss = real_bce(logits, targets, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer_module.F, "binary_cross_entropy_with_logits", bce_nan_at_third_call)
    cfg = tiny_config(toy_root, tmp_path / "nan", "train.checkpoint_every=2", "train.eval_every=0")
    with pytest.raises(trainer_module.TrainingDiverged) as exc:
        trainer_module.train(cfg, progress=False, log=lambda *a: None)
    message = str(exc.value)
    assert "loss is nan at iteration 3" in message
    assert f"the last good checkpoint is {tmp_path / 'nan' / 'checkpoints' / 'last.pt'}" in message
    assert torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=True)["train_state"]["iteration"] == 2


def _one_line_error(args: list[str], capsys) -> str:
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("sfdet train: error: ")
    return captured.err


def test_bad_config_key_is_one_line(toy_root, tmp_path, capsys):
    err = _one_line_error(cli_args(toy_root, tmp_path / "r", "train.lrr=0.1"), capsys)
    assert "unknown config key 'train.lrr' (did you mean 'train.lr'?)" in err


def test_missing_data_root_is_one_line(tmp_path, capsys):
    err = _one_line_error(cli_args(tmp_path / "no_such_dir", tmp_path / "r"), capsys)
    assert f"data root {tmp_path / 'no_such_dir'} not found" in err and "data.root" in err


def test_dataset_where_nothing_matches_is_one_line(toy_root, tmp_path, capsys):
    empty_videos = tmp_path / "elsewhere"
    empty_videos.mkdir()
    err = _one_line_error(cli_args(toy_root, tmp_path / "r", f"data.video_dir={empty_videos}"), capsys)
    assert "no keyframe has both boxes and a video" in err


def test_channels_last_trains_the_same_model_to_float_rounding(toy_root, tmp_path):
    from sfdet.engine.trainer import train

    finals = {}
    for layout in ("contiguous", "channels_last"):
        run_dir = tmp_path / layout
        train(tiny_config(toy_root, run_dir, f"train.channels_last={layout == 'channels_last'}", "train.max_iters=3",
                          "data.val_gt="), progress=False, log=lambda *a: None)
        losses = [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
        finals[layout] = (losses, torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model_state"])
    (losses_a, weights_a), (losses_b, weights_b) = finals["contiguous"], finals["channels_last"]
    assert losses_b == pytest.approx(losses_a, rel=1e-4)
    assert max((weights_a[k].float() - weights_b[k].float()).abs().max().item() for k in weights_a) < 1e-4


def test_bf16_autocast_trains_on_cpu_and_fp16_needs_cuda(toy_root, tmp_path, capsys):
    from sfdet.engine.trainer import train

    result = train(tiny_config(toy_root, tmp_path / "bf16", "train.precision=bf16", "train.max_iters=1",
                               "data.val_gt="), progress=False, log=lambda *a: None)
    loss = [r for r in read_metrics(tmp_path / "bf16" / "metrics.jsonl") if r["kind"] == "train"][0]["loss"]
    assert result.iteration == 1 and math.isfinite(loss)
    if not torch.cuda.is_available():
        err = _one_line_error(cli_args(toy_root, tmp_path / "fp16", "train.precision=fp16"), capsys)
        assert "train.precision': fp16 needs CUDA" in err
