"""Trainer building blocks on stand-ins: LR schedule, optimizer groups, atomic checkpoints,
RNG state round-trips, data order across processes and resumes, metrics log, plots."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from sfdet.engine.checkpointing import capture_rng_state, load_training_checkpoint, restore_rng_state
from sfdet.engine.config import TrainConfig
from sfdet.engine.data_order import EpochBatchSampler, SeededSamples, shard_indices, unshard
from sfdet.engine.metrics_log import MetricsLog, read_metrics
from sfdet.engine.solver import LRSchedule, build_optimizer, build_scheduler
from sfdet.errors import CheckpointError, ConfigError
from sfdet.fileio import atomic_save
from sfdet.typed_config import from_dict


def test_pyslowfast_recipe_schedule_values():
    cfg = TrainConfig()  # defaults: SLOWFAST_32x2_R50_SHORT
    sched = LRSchedule(cfg, total_epochs=20)
    assert sched(0.0) == pytest.approx(0.000125)
    assert sched(2.5) == pytest.approx((0.000125 + 0.1) / 2)
    assert sched(5.0) == pytest.approx(0.1)
    assert sched(9.99) == pytest.approx(0.1)
    assert sched(10.0) == pytest.approx(0.01)
    assert sched(15.0) == pytest.approx(0.001)


def test_cosine_schedule_and_per_iteration_scheduler(tmp_path):
    cfg = TrainConfig(schedule="cosine", lr=0.2, warmup_epochs=1.0, warmup_start_lr=0.0, cosine_end_lr=0.0)
    sched = LRSchedule(cfg, total_epochs=3)
    assert sched(0.5) == pytest.approx(0.5 * sched(1.0))
    assert sched(1.0) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi / 3)))
    assert sched(1.5) == pytest.approx(0.1)
    assert sched(3.0) == pytest.approx(0.0, abs=1e-12)

    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    scheduler = build_scheduler(opt, cfg, iters_per_epoch=4, total_iters=12)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert seen == pytest.approx([sched(i / 4) for i in range(12)])
    # The scheduler state is plain data: it survives weights_only loading and resumes the same LR.
    torch.save(scheduler.state_dict(), tmp_path / "sched.pt")
    state = torch.load(tmp_path / "sched.pt", weights_only=True)
    opt2 = build_optimizer(model, cfg)
    scheduler2 = build_scheduler(opt2, cfg, iters_per_epoch=4, total_iters=12)
    scheduler2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_optimizer_does_not_decay_batchnorm():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, TrainConfig(weight_decay=1e-7, nesterov=True))
    by_decay = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert {id(p) for p in by_decay[0.0]} == {id(p) for p in model[1].parameters()}
    assert len(by_decay[1e-7]) == 4  # conv weight+bias, linear weight+bias
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_adamw_keeps_the_two_decay_groups_and_momentum_as_beta1():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    opt = build_optimizer(model, TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.05, momentum=0.8))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.999)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.05]


def test_train_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.schedule"):
        TrainConfig(schedule="poly")
    with pytest.raises(ConfigError, match="train.optimizer.*sgd, adamw"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="train.nesterov"):
        TrainConfig(optimizer="adamw", nesterov=True)
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="unknown config key 'train.lr_step'"):
        from_dict(TrainConfig, {"lr_step": [1]}, prefix="train")


def test_atomic_save_never_leaves_a_truncated_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt" / "last.pt"
    atomic_save({"x": torch.arange(3)}, path)
    real_save = torch.save

    def crash_midway(obj, f):
        f.write(b"partial bytes")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(RuntimeError):
        atomic_save({"x": torch.arange(5)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_resume_rejects_non_training_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_training_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable checkpoint"):
        load_training_checkpoint(tmp_path / "garbage.pt")
    torch.save({"model_state": {}}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="train.init"):
        load_training_checkpoint(tmp_path / "weights.pt")


def test_resume_with_other_classes_says_only_the_head_differs(tmp_path):
    from sfdet.engine.checkpointing import load_resume_weights
    from sfdet.models import ModelConfig, build_model

    tiny = dict(arch="slow", depth=18, num_stages=2, stage_depths=[1, 1], width=4, slow_temporal_kernels=[1, 3],
                fast_temporal_kernels=[3, 3],
                spatial_strides=[1, 2], spatial_dilations=[1, 1])
    trained = build_model(ModelConfig(**tiny, num_classes=5))
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = {"model_state": trained.state_dict()}
    setting = "the label map (data.label_map=annotations/label_map.pbtxt)"
    with pytest.raises(ConfigError) as raised:
        load_resume_weights(build_model(ModelConfig(**tiny, num_classes=3)), ckpt, path, setting)
    assert str(raised.value) == (
        f"cannot resume from {path}: only the head differs: the checkpoint has 5 classes, the label map "
        f"(data.label_map=annotations/label_map.pbtxt) has 3; resume with the label map it was trained with, or "
        f"fine-tune it with a new head in a new run: train.init={path} and another output_dir (or --fresh)")
    # Another backbone is another architecture; the same one loads.
    with pytest.raises(ConfigError, match=r"last\.pt: its model does not match the configured architecture; "
                                          r"use --fresh to start over$"):
        load_resume_weights(build_model(ModelConfig(**{**tiny, "width": 8}, num_classes=5)), ckpt, path, setting)
    same = build_model(ModelConfig(**tiny, num_classes=5))
    load_resume_weights(same, ckpt, path, setting)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in same.state_dict().items())


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == expected


def test_processes_together_see_the_single_process_batches():
    single = EpochBatchSampler(num_samples=22, batch_size=4, seed=7)
    ranks = [EpochBatchSampler(num_samples=22, batch_size=4, seed=7, rank=r, world_size=2) for r in range(2)]
    for epoch in range(2):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        one = list(single)
        assert len(one) == 5 and all(len(b) == 4 for b in one)  # 22 // 4, the incomplete batch dropped
        two = [a + b for a, b in zip(*ranks)]
        assert two == one
    flat = [index for batch in one for _, index in batch]
    assert len(set(flat)) == 20 and all(epoch == 1 for batch in one for epoch, _ in batch)
    single.set_epoch(0)
    epoch0 = list(single)
    assert epoch0 != one  # a new permutation each epoch
    single.set_epoch(0, start_batch=3)
    assert list(single) == epoch0[3:] and len(single) == 2


def test_seeded_samples_depend_only_on_epoch_and_index():
    class RandomCrop(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return (index, random.random(), float(np.random.rand()), torch.rand(1).item())

    samples = SeededSamples(RandomCrop(), seed=5)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = samples[(0, 2)]
    assert torch.equal(torch.get_rng_state(), before)  # the main RNG is untouched
    torch.manual_seed(123), random.seed(4)
    assert samples[(0, 2)] == a
    assert samples[(1, 2)] != a and samples[(0, 3)][1:] != a[1:]
    assert SeededSamples(RandomCrop(), seed=6)[(0, 2)] != a


def test_evaluation_shards_reassemble_in_sample_order():
    shards = [shard_indices(7, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))
    assert unshard(shards, 7) == list(range(7))


def test_metrics_log_resume_drops_records_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for it in (10, 20, 30):
        log.write({"kind": "train", "iteration": it, "loss": 1.0 / it, "lr": 0.1})
    log.write({"kind": "val", "iteration": 30, "map": float("nan"), "per_class_ap": {"wave": float("nan")}})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "itera')  # a line cut short by SIGKILL
    log = MetricsLog(tmp_path, resume_iteration=20, tensorboard=False)
    log.write({"kind": "train", "iteration": 30, "loss": 0.5, "lr": 0.1})
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["iteration"], r["loss"]) for r in records] == [(10, 0.1), (20, 0.05), (30, 0.5)]
    fresh = MetricsLog(tmp_path, tensorboard=False)  # a new run starts a new log
    fresh.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_metrics_log_writes_nan_as_null(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write({"kind": "val", "iteration": 1, "map": float("nan"), "per_class_ap": {"wave": float("inf")}})
    log.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
        "kind": "val", "iteration": 1, "map": None, "per_class_ap": {"wave": None}}


def test_plot_writes_png_and_reports_missing_log(tmp_path, capsys):
    from sfdet import cli

    log = MetricsLog(tmp_path, tensorboard=False)
    for it in range(1, 6):
        log.write({"kind": "train", "epoch": 0, "iteration": it, "loss": 1.0 / it, "lr": 0.01 * it})
    log.write({"kind": "val", "epoch": 0, "iteration": 5, "map": 0.4, "per_class_ap": {"a": 0.4}})
    log.close()
    assert cli.main(["plot", str(tmp_path)]) == 0
    png = tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sfdet plot: error:") and "metrics.jsonl not found" in err and err.count("\n") == 1


def test_auto_precision_is_bf16_only_where_its_kernels_are_fast(monkeypatch):
    from sfdet import devices
    from sfdet.devices import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    for fast in (True, False):
        monkeypatch.setattr(devices, "fast_low_precision_available", lambda device, fast=fast: fast)
        assert resolve_precision("auto", cpu) == ("bf16" if fast else "fp32")
    assert from_dict(TrainConfig, {"precision": "auto"}).precision == "auto"
