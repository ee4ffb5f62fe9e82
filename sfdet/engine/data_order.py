"""Which samples each process sees, in which order, with which augmentation randomness.

Two rules make a run reproducible whatever the number of processes, loader
workers or interruptions:

* `EpochBatchSampler`: epoch `e` is a permutation drawn from `(seed, e)`;
  global batch `i` is its `i`-th chunk of `batch_size` samples, and process
  `r` of `w` takes the `r`-th slice of `batch_size / w` of every chunk. A run
  resumed at batch `i` of an epoch starts from chunk `i`, so it sees exactly
  the batches the uninterrupted run saw, and `w` processes together see the
  same global batches as one.
* `SeededSamples`: sample `(e, index)` is loaded with Python, numpy and torch
  RNGs seeded from `(seed, e, index)` and restored afterwards, so random
  crops/flips depend on nothing but that triple (not on the worker or on
  the main process's RNG, which stays reserved for the model, e.g. dropout).
  It is also loaded with one torch thread, as loader workers are: resizing
  with 2 threads can differ from 1 thread in the last bits.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sfdet.engine.checkpointing import capture_rng_state, restore_rng_state


def _mix_seed(*values: int) -> int:
    """A well-spread 32-bit seed from several integers."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


class EpochBatchSampler(Sampler):
    """Yields lists of `(epoch, index)` keys: this process's share of each global batch.

    Call `set_epoch(epoch, start_batch)` before iterating an epoch. Incomplete
    last batches are dropped (as PySlowFast does for training).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.num_samples, self.batch_size, self.seed, self.shuffle = num_samples, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.per_process = batch_size // world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch))
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self):
        order = self.epoch_order()
        lo = self.rank * self.per_process
        for b in range(self.start_batch, self.batches_per_epoch):
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(self.epoch, index) for index in chunk[lo:lo + self.per_process]]


class SeededSamples(Dataset):
    """`dataset[(epoch, index)]`: `dataset[index]` under RNGs seeded from `(seed, epoch, index)`."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        sample_seed = _mix_seed(self.seed, epoch, index)
        saved, threads = capture_rng_state(), torch.get_num_threads()
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        torch.random.default_generator.manual_seed(sample_seed)  # CPU only: leave CUDA's RNG to the model
        torch.set_num_threads(1)
        try:
            return self.dataset[index]
        finally:
            torch.set_num_threads(threads)
            restore_rng_state(saved)


def shard_indices(num_samples: int, rank: int, world_size: int) -> list[int]:
    """Evaluation shard of one process: every `world_size`-th sample (no padding, no duplicates)."""
    return list(range(rank, num_samples, world_size))


def unshard(per_rank: list[list], num_samples: int) -> list:
    """Inverse of `shard_indices`: per-process result lists -> one list in sample order."""
    world_size = len(per_rank)
    return [per_rank[i % world_size][i // world_size] for i in range(num_samples)]
