"""Training checkpoints: atomic writes, RNG states, exact resume.

A training checkpoint is an sfdet model checkpoint (`format: sfdet`, readable
by `sfdet.models.load_checkpoint`) plus a `train_state` entry holding what a
resumed run needs to continue bit-for-bit: optimizer, LR scheduler, grad
scaler, epoch/iteration counters, the data order position and every RNG state.
Everything is stored as tensors, numbers and strings, so the file loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from sfdet.errors import CheckpointError, ConfigError
from sfdet.fileio import load_torch_file

CHECKPOINT_VERSION = 1
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


def load_training_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `sfdet train` (with its `train_state`) for resuming.

    Checkpoints are written by `sfdet.models.checkpoint.save_sfdet_checkpoint`, through
    `sfdet.fileio.atomic_save` (temporary file, fsync, rename): a crash leaves the previous one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: checkpoint {path} not found")
    try:
        ckpt = load_torch_file(path)
    except CheckpointError as exc:  # truncated, not a torch file, foreign pickle
        raise CheckpointError(f"cannot resume: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "sfdet" or "train_state" not in ckpt:
        raise CheckpointError(
            f"cannot resume from {path}: not an `sfdet train` checkpoint (use train.init=... to start from weights)"
        )
    return ckpt


HEAD_WEIGHT = "head.proj.weight"  # the classifier: one row per class


def load_resume_weights(model: torch.nn.Module, ckpt: dict, path: str | Path, label_map_setting: str) -> None:
    """Load a training checkpoint's weights into the configured `model`, or raise one ConfigError line.

    When only the classifier's size differs (the label map changed), the line says so, with both class
    counts and what to do; `label_map_setting` names where this run's classes come from.
    """
    state = ckpt["model_state"]
    try:
        model.load_state_dict(state)
        return
    except RuntimeError:
        pass
    own = model.state_dict()
    differing = {key for key in set(own) | set(state)
                 if key not in own or key not in state or tuple(own[key].shape) != tuple(state[key].shape)}
    if differing and all(key.startswith("head.proj.") for key in differing) and HEAD_WEIGHT in differing:
        theirs, ours = state[HEAD_WEIGHT].shape[0], own[HEAD_WEIGHT].shape[0]
        raise ConfigError(f"cannot resume from {path}: only the head differs: the checkpoint has {theirs} classes, "
                          f"{label_map_setting} has {ours}; resume with the label map it was trained with, or "
                          f"fine-tune it with a new head in a new run: train.init={path} and another output_dir "
                          f"(or --fresh)")
    raise ConfigError(f"cannot resume from {path}: its model does not match the configured "
                      f"architecture; use --fresh to start over")


def capture_rng_state() -> dict:
    """Python, numpy, torch CPU and (when present) CUDA generator states, as tensors and numbers."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's latest checkpoint (`RUN_DIR/checkpoints/last.pt`), or None for a fresh run."""
    path = Path(run_dir) / "checkpoints" / LAST_NAME
    return path if path.is_file() else None
