"""The training loop of `sfdet train`: data, model, optimisation, checkpoints, validation, logs.

One process, or one per device under `torchrun` (DDP). The loss is BCE with
logits over every (box, class) pair, normalised by the GLOBAL number of pairs,
so N processes with a global batch B compute the same loss and gradients as
one process with batch B (up to BatchNorm batch statistics: `train.freeze_bn`
or `train.sync_bn` removes that difference).

Exact resume: the data order, each sample's augmentation randomness, the LR
and every RNG state are functions of what the checkpoint stores (see
`data_order.py`, `checkpointing.py`), so a run killed at any point and resumed
from its last checkpoint ends with the same weights and metrics as one that
was never interrupted (bit-identical on CPU).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from sfdet.config import Config, save_config
from sfdet.data.workers import iterate
from sfdet.devices import resolve_precision
from sfdet.engine import distributed as dist_utils
from sfdet.engine.checkpointing import (BEST_NAME, LAST_NAME, capture_rng_state, find_resume_checkpoint,
                                        load_resume_weights, load_training_checkpoint, restore_rng_state)
from sfdet.engine.data_order import EpochBatchSampler, SeededSamples
from sfdet.engine.datasets import build_datasets, collate
from sfdet.engine.initialization import initialize_from
from sfdet.engine.metrics_log import MetricsLog
from sfdet.engine.precision import autocast_context, check_precision
from sfdet.engine.solver import build_optimizer, build_scheduler
from sfdet.engine.validation import ValidationData, validate
from sfdet.errors import ConfigError, DataError, SfdetError
from sfdet.models import build_model
from sfdet.models.checkpoint import model_alpha, save_sfdet_checkpoint
from sfdet.models.recipe import ClipRecipe
from sfdet.typed_config import to_dict

CHECKPOINT_DIR = "checkpoints"
CONFIG_NAME = "config.yaml"


class TrainingDiverged(SfdetError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    val_map: float | None  # after the last validation
    best_map: float | None
    checkpoint: Path | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_device_options(cfg: Config, device: torch.device, distributed: bool) -> None:
    check_precision(cfg.train.precision, device)
    if cfg.train.sync_bn and distributed and device.type != "cuda":
        raise ConfigError("config key 'train.sync_bn': SyncBatchNorm needs CUDA; use train.freeze_bn=true on CPU")


def set_bn_eval(model: nn.Module) -> None:
    """`train.freeze_bn`: BatchNorm normalises with (and keeps) its running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def move_batch(batch: dict, device: torch.device, channels_last: bool = False
               ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Collated batch -> (pathway clips [(B,3,T,H,W)...], per-clip boxes_xyxy_abs [(N_i,4)...], targets (K,C))."""
    non_blocking = device.type == "cuda"
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    inputs = [x.to(device, non_blocking=non_blocking, memory_format=memory_format) for x in batch["inputs"]]
    boxes = [b.to(device, non_blocking=non_blocking) for b in batch["boxes"]]
    return inputs, boxes, batch["labels"].to(device, non_blocking=non_blocking).float()


def _describe(cfg) -> str:
    arch = "SlowFast" if cfg.arch == "slowfast" else "Slow-only"
    return f"{arch} (depth {cfg.depth}, {cfg.num_stages} stages, width {cfg.width}, {cfg.num_classes} classes)"


class Trainer:
    """Holds one run's state; `fit()` trains to the end (or to `train.max_iters`)."""

    def __init__(self, cfg: Config, ctx: dist_utils.DistContext, resume: str | None = None, fresh: bool = False,
                 progress: bool = True, log=tqdm.write):
        self.cfg, self.ctx, self.progress = cfg, ctx, progress
        self.log = log if ctx.is_main else (lambda *a, **k: None)
        tc = cfg.train
        if tc.precision == "auto":
            tc.precision = resolve_precision(tc.precision, ctx.device, key="config key 'train.precision'")
            self.log(f"train.precision=auto: {tc.precision} on this {ctx.device.type}")
        check_device_options(cfg, ctx.device, ctx.distributed)
        if tc.batch_size % ctx.world_size:
            raise ConfigError(f"config key 'train.batch_size': the global batch {tc.batch_size} must be divisible "
                              f"by the {ctx.world_size} processes")
        self.run_dir = Path(cfg.output_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINT_DIR

        # Data (raises DataError with one line when nothing usable is found).
        self.train_set, self.val_data, self.label_map = build_datasets(cfg, progress=progress and ctx.is_main)
        cfg.model.num_classes = len(self.label_map)
        if cfg.data.classes:  # a class subset: the head, validation and checkpoints use these ids only
            self.log(f"data.classes: training and evaluating {len(self.label_map)} classes: "
                     + ", ".join(f"{i} {name}" for i, name in self.label_map.items()))

        # Model: identical initialisation on every process, then per-process RNG streams (dropout).
        resume_path = Path(resume) if resume else (None if fresh else find_resume_checkpoint(self.run_dir))
        seed_everything(cfg.seed)
        model = build_model(cfg.model)
        if resume_path is None:  # a resumed run takes its weights from the checkpoint
            for message in initialize_from(model, tc.init, self.label_map, tc.init_strict):
                self.log(message)
        if tc.sync_bn and ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(ctx.device, memory_format=torch.channels_last_3d) if tc.channels_last \
            else model.to(ctx.device)
        self.net = self.model
        if ctx.distributed:
            device_ids = [ctx.device] if ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=device_ids)
        seed_everything(cfg.seed + ctx.rank)

        # Optimisation.
        self.sampler = EpochBatchSampler(len(self.train_set), tc.batch_size, cfg.seed, shuffle=True,
                                         rank=ctx.rank, world_size=ctx.world_size)
        self.iters_per_epoch = self.sampler.batches_per_epoch
        if self.iters_per_epoch == 0:
            raise DataError(f"the training set has {len(self.train_set)} clips, fewer than one batch "
                            f"(train.batch_size={tc.batch_size}); lower train.batch_size or add data")
        self.total_iters = tc.epochs * self.iters_per_epoch
        if tc.max_iters:
            self.total_iters = min(self.total_iters, tc.max_iters)
        self.optimizer = build_optimizer(self.model, tc)
        self.scheduler = build_scheduler(self.optimizer, tc, self.iters_per_epoch, self.total_iters)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=tc.precision == "fp16")

        # Position and bookkeeping (overwritten by a resume).
        self.epoch, self.batch_in_epoch, self.iteration = 0, 0, 0
        self.best_map: float | None = None
        self.last_map: float | None = None
        self.loss_window = [0.0, 0]  # sum and count of losses since the last log record
        self.skipped_clips = 0  # unreadable training clips (data.skip_bad_videos)
        self.last_checkpoint: Path | None = None
        resume_iteration = self._resume(resume_path) if resume_path is not None else None
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / CONFIG_NAME)
        self.metrics = MetricsLog(self.run_dir, enabled=ctx.is_main, resume_iteration=resume_iteration,
                                  tensorboard=tc.tensorboard)

    # ------------------------------------------------------------------
    # Resume
    # ------------------------------------------------------------------
    def _resume(self, path: Path) -> int:
        """Continue from a training checkpoint: weights, optimizer, schedule, position, RNG states."""
        ckpt = load_training_checkpoint(path)
        state = ckpt["train_state"]
        if state["iters_per_epoch"] != self.iters_per_epoch:
            raise ConfigError(f"cannot resume from {path}: it was trained with {state['iters_per_epoch']} "
                              f"iterations per epoch, this config gives {self.iters_per_epoch} "
                              f"(train.batch_size or the data changed); use --fresh to start over")
        load_resume_weights(self.model, ckpt, path, f"the label map (data.label_map={self.cfg.data.label_map}"
                            + (f", data.classes={self.cfg.data.classes})" if self.cfg.data.classes else ")"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch_in_epoch, self.iteration = state["epoch"], state["batch_in_epoch"], state["iteration"]
        self.best_map, self.last_map = state["best_map"], state["last_map"]
        self.loss_window = list(state["loss_window"])
        self.skipped_clips = state["skipped_clips"]
        rng_states = state["rng"]
        restore_rng_state(rng_states[self.ctx.rank % len(rng_states)])
        self.last_checkpoint = path
        self.log(f"resuming from {path} (epoch {self.epoch + 1}, iteration {self.iteration})")
        return self.iteration

    # ------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------
    def _train_state(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "iteration": self.iteration,
            "iters_per_epoch": self.iters_per_epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": dist_utils.all_gather_objects(capture_rng_state()),  # one per process
            "best_map": self.best_map,
            "last_map": self.last_map,
            "loss_window": list(self.loss_window),
            "skipped_clips": self.skipped_clips,
            "world_size": self.ctx.world_size,
        }

    def save_checkpoint(self, also_best: bool = False) -> None:
        """`checkpoints/last.pt` (and `best.pt`), written atomically by the main process only."""
        train_state = self._train_state()  # collective: every process takes part
        if self.ctx.is_main:
            # The clip recipe: how `sfdet predict` (and export) will cut this model's clips.
            extra = {"recipe": ClipRecipe.from_data(self.cfg.data, model_alpha(self.cfg.model)),
                     "config": to_dict(self.cfg), "train_state": train_state}
            source = f"sfdet train {self.run_dir}"
            self.last_checkpoint = save_sfdet_checkpoint(self.ckpt_dir / LAST_NAME, self.model, self.label_map,
                                                         source, **extra)
            if also_best:
                save_sfdet_checkpoint(self.ckpt_dir / BEST_NAME, self.model, self.label_map, source, **extra)
            self.metrics.write({"kind": "checkpoint", "epoch": self.epoch, "iteration": self.iteration,
                                "best": also_best})
        dist_utils.barrier()

    # ------------------------------------------------------------------
    # One optimisation step
    # ------------------------------------------------------------------
    def _step(self, batch: dict) -> float:
        tc, device = self.cfg.train, self.ctx.device
        self.skipped_clips += len(batch["skipped"])
        if batch["inputs"]:
            inputs, boxes, targets = move_batch(batch, device, tc.channels_last)
            with autocast_context(tc.precision, device):
                logits = self.net(inputs, boxes)
            loss_sum = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum")
        else:  # every clip of this process's share was unreadable: a zero loss keeps the processes in step
            targets = torch.zeros(0, device=device)
            loss_sum = sum(p.sum() for p in self.model.parameters()) * 0.0
        totals = dist_utils.all_reduce_sum(torch.stack([loss_sum.detach(), torch.tensor(
            float(targets.numel()), device=loss_sum.device)]))
        pairs = max(float(totals[1]), 1.0)
        global_loss = float(totals[0]) / pairs
        if not math.isfinite(global_loss):
            where = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
                "no checkpoint was saved yet"
            raise TrainingDiverged(f"loss is {global_loss} at iteration {self.iteration + 1}; {where}; "
                                   f"lower train.lr or set train.clip_grad_norm")
        # DDP averages gradients over processes: scale so the result is d(sum over all pairs)/d(pairs).
        loss = loss_sum * self.ctx.world_size / pairs
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if tc.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return global_loss

    # ------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        tc = self.cfg.train
        return DataLoader(
            SeededSamples(self.train_set, self.cfg.seed),
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=tc.num_workers,
            pin_memory=self.ctx.device.type == "cuda",
            generator=torch.Generator(),  # keeps the main RNG (dropout) untouched by loader start-up
        )

    def _validate(self) -> bool:
        """Frame-mAP on the val set (all processes take part); True when it is the best so far."""
        result = validate(self.model, self.val_data, self.cfg, self.ctx, progress=self.progress)
        if result is None:
            return False
        self.last_map = result.map
        is_best = self.best_map is None or result.map > self.best_map
        if is_best:
            self.best_map = result.map
        per_class = {self.label_map[c]: ap for c, ap in result.per_class_ap.items() if c in self.label_map}
        self.metrics.write({"kind": "val", "epoch": self.epoch, "iteration": self.iteration, "map": result.map,
                            "per_class_ap": per_class})
        self.log(f"val frame-mAP@0.5 {result.map:.4f} at iteration {self.iteration}"
                 + (" (best so far)" if is_best else f" (best {self.best_map:.4f})"))
        return is_best

    def _log_train(self, loss: float, lr: float, clips_per_s: float) -> None:
        self.loss_window[0] += loss
        self.loss_window[1] += 1
        if self.iteration % self.cfg.train.log_every == 0:
            mean_loss = self.loss_window[0] / self.loss_window[1]
            self.metrics.write({"kind": "train", "epoch": self.epoch, "iteration": self.iteration,
                                "loss": mean_loss, "lr": lr, "clips_per_s": clips_per_s})
            self.loss_window = [0.0, 0]

    def close_datasets(self) -> None:
        """Close the video files the datasets opened in this process (loader workers close their own)."""
        self.train_set.close()
        if self.val_data is not None:
            self.val_data.dataset.close()

    def fit(self) -> TrainResult:
        tc = self.cfg.train
        if self.iteration >= self.total_iters:
            self.metrics.close()
            self.log(f"{self.run_dir} is already trained ({self.iteration} iterations); nothing to do")
            return self._result()
        val_clips = len(self.val_data.dataset) if self.val_data is not None else 0
        self.log(f"training {_describe(self.model.cfg)} on {len(self.train_set)} clips "
                 f"({self.iters_per_epoch} iterations of {tc.batch_size} per epoch, {self.total_iters} in all), "
                 f"validating on {val_clips} keyframes; {self.ctx.world_size} x {self.ctx.device.type}; "
                 f"run dir {self.run_dir}")
        bar = tqdm(total=self.total_iters, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                   disable=not (self.progress and self.ctx.is_main))
        smoothed_loss, clips_per_s = None, 0.0
        try:
            while self.iteration < self.total_iters:
                self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
                self.net.train()
                if tc.freeze_bn:
                    set_bn_eval(self.net)
                tick = time.perf_counter()
                for batch in iterate(self._loader()):
                    lr = self.optimizer.param_groups[0]["lr"]
                    loss = self._step(batch)
                    self.iteration += 1
                    self.batch_in_epoch += 1
                    now = time.perf_counter()
                    clips_per_s = 0.8 * clips_per_s + 0.2 * tc.batch_size / max(now - tick, 1e-9) \
                        if clips_per_s else tc.batch_size / max(now - tick, 1e-9)
                    tick = now
                    smoothed_loss = loss if smoothed_loss is None else 0.9 * smoothed_loss + 0.1 * loss
                    self._log_train(loss, lr, clips_per_s)
                    bar.update(1)
                    bar.set_postfix(epoch=self.epoch + 1, loss=f"{smoothed_loss:.4f}", lr=f"{lr:.2e}",
                                    clips_s=f"{clips_per_s:.1f}")
                    epoch_done = self.batch_in_epoch == self.iters_per_epoch
                    if self.iteration >= self.total_iters or epoch_done:
                        break
                    if tc.checkpoint_every and self.iteration % tc.checkpoint_every == 0:
                        self.save_checkpoint()
                self._end_of_epoch_or_run()
        finally:
            bar.close()
            self.metrics.close()
        if self.skipped_clips:
            self.log(f"warning: {self.skipped_clips} training clips were skipped (unreadable videos)")
        return self._result()

    def _end_of_epoch_or_run(self) -> None:
        """Validate when due, then checkpoint (the epoch counter moves on when the epoch is complete)."""
        tc = self.cfg.train
        finished = self.iteration >= self.total_iters
        epoch_done = self.batch_in_epoch == self.iters_per_epoch
        due = finished or (tc.eval_every and epoch_done and (self.epoch + 1) % tc.eval_every == 0)
        is_best = self._validate() if due else False
        if epoch_done:
            self.epoch += 1
            self.batch_in_epoch = 0
        self.save_checkpoint(also_best=is_best)

    def _result(self) -> TrainResult:
        return TrainResult(self.run_dir, self.iteration, self.last_map, self.best_map, self.last_checkpoint)


def train(cfg: Config, resume: str | None = None, fresh: bool = False, progress: bool = True,
          log=tqdm.write) -> TrainResult:
    """Train `cfg` (one process, or this process's share under torchrun)."""
    ctx = dist_utils.init_distributed(cfg.train.device)
    trainer = None
    try:
        trainer = Trainer(cfg, ctx, resume=resume, fresh=fresh, progress=progress, log=log)
        result = trainer.fit()
        if ctx.is_main:
            best = f", best {result.best_map:.4f}" if result.best_map is not None else ""
            last = f"val frame-mAP {result.val_map:.4f}{best}" if result.val_map is not None else "no validation"
            log(f"done: {result.iteration} iterations, {last}; checkpoints in {trainer.ckpt_dir}")
        return result
    finally:
        if trainer is not None:
            trainer.close_datasets()
        dist_utils.cleanup_distributed()
