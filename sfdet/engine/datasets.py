"""The datasets a training run reads, built from the `data:` section with early, one-line errors."""

from __future__ import annotations

from pathlib import Path

from sfdet.config import Config
from sfdet.data import ava
from sfdet.data.dataset import AvaDataset, collate_fn
from sfdet.engine.validation import ValidationData
from sfdet.errors import DataError

collate = collate_fn


def model_alpha(cfg: Config) -> int | None:
    """The Fast/Slow frame ratio the Dataset packs clips with (None: a single-pathway model)."""
    return cfg.model.alpha if cfg.model.arch == "slowfast" else None


def build_datasets(cfg: Config, progress: bool = False) -> tuple[AvaDataset, ValidationData | None, dict[int, str]]:
    """(train set, val set with its GT for frame-mAP or None, label map)."""
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} not found (config key data.root): set data.root=DIR, "
                        f"or make the synthetic set with `sfdet toy-data {root}`")
    alpha = model_alpha(cfg)
    train_set = AvaDataset(cfg.data, "train", alpha, progress=progress)
    val_data = None
    gt_path, exclusions_path, _ = cfg.data.split_files("val")
    if gt_path is not None:
        val_set = AvaDataset(cfg.data, "val", alpha, progress=progress)
        gt = ava.read_gt_csv(gt_path, skip_bad_rows=cfg.data.skip_bad_rows)
        exclusions = ava.read_exclusions(exclusions_path, skip_bad_rows=cfg.data.skip_bad_rows) \
            if exclusions_path is not None else None
        val_data = ValidationData(val_set, gt, exclusions, train_set.label_map)
    return train_set, val_data, train_set.label_map
