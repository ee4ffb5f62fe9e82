"""The keyframes of a dataset split, their person boxes, and their decoded images.

Why: both the detector fine-tuner and `sfdet proposals` work on single keyframe images, not
clips. They share one definition of "the keyframes of a split" (GT keyframes plus excluded
ones, in GT file order) and of "the person boxes" (AVA GT has one row per action: the rows of one
person at one keyframe collapse into one box), and one reader that decodes each keyframe once,
video by video, from videos or extracted frames as `data.source` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sfdet.config import load_config
from sfdet.data import ava
from sfdet.data.config import DataConfig
from sfdet.data.dataset import find_video
from sfdet.data.frames import FrameFolder
from sfdet.data.video import VideoReader, open_clip_source
from sfdet.errors import ConfigError, DataError

Key = tuple[str, float]  # (video_id, timestamp)


def data_config(items: Sequence[str], config_path: str | None = None) -> DataConfig:
    """`DATA` (a dataset root laid out like `sfdet toy-data`'s) and/or `--config YAML`, plus `data.key=value`
    overrides -> DataConfig whose root exists."""
    overrides = [item for item in items if "=" in item]
    roots = [item for item in items if "=" not in item]
    if len(roots) > 1:
        raise ConfigError(f"give one dataset root, got {len(roots)}: {' '.join(roots)}")
    if not roots and config_path is None:
        raise ConfigError("give the dataset root (e.g. data/toy) or --config YAML with a data: section")
    cfg = load_config(config_path, overrides + [f"data.root={root}" for root in roots]).data
    if not Path(cfg.root).expanduser().is_dir():
        raise DataError(f"dataset root {cfg.root}: no such directory; pass the folder holding annotations/ and videos/")
    return cfg


def person_boxes(gt: pd.DataFrame) -> pd.DataFrame:
    """GT rows (one per action) -> one row per person and keyframe: DataFrame[video_id, timestamp, x1..y2, person_id].

    Rows are deduplicated on (keyframe, person id, box), so GT without person ids (-1) still
    gives one row per distinct box.
    """
    columns = ["video_id", "timestamp", *ava.BOX_COLUMNS, "person_id"]
    return gt.drop_duplicates(columns)[columns].reset_index(drop=True)


@dataclass
class SplitKeyframes:
    """What a split says about its keyframes.

    keys          GT keyframes and excluded keyframes, in file order (first appearance)
    persons       person boxes (`person_boxes`), excluded keyframes included
    excluded      set of excluded keys
    exclusions    DataFrame[video_id, timestamp] as read (for the evaluator)
    """

    keys: list[Key]
    persons: pd.DataFrame
    excluded: set[Key]
    exclusions: pd.DataFrame


def read_split_keyframes(cfg: DataConfig, split: str) -> SplitKeyframes:
    gt_path, exclusions_path, _ = cfg.split_files(split)
    if gt_path is None:
        raise ConfigError(f"config key 'data.{split}_gt' is empty: the {split} keyframes come from its GT")
    gt = ava.read_gt_csv(gt_path, skip_bad_rows=cfg.skip_bad_rows)
    if exclusions_path is not None and exclusions_path.is_file():
        exclusions = ava.read_exclusions(exclusions_path, skip_bad_rows=cfg.skip_bad_rows)
    else:
        exclusions = pd.DataFrame({"video_id": pd.Series([], dtype=object), "timestamp": np.zeros(0)})
    excluded_keys = list(zip(exclusions["video_id"].astype(str), exclusions["timestamp"].astype(float)))
    gt_keys = list(zip(gt["video_id"].astype(str), gt["timestamp"].astype(float)))
    keys = list(dict.fromkeys(gt_keys + excluded_keys))
    return SplitKeyframes(keys, person_boxes(gt), set(excluded_keys), exclusions)


def boxes_by_key(persons: pd.DataFrame) -> dict[Key, np.ndarray]:
    """{(video_id, timestamp): (N, 4) float32 boxes_norm} of a `person_boxes` table."""
    coordinates = persons[ava.BOX_COLUMNS].to_numpy(np.float32)
    return {
        (str(video_id), float(timestamp)): coordinates[rows]
        for (video_id, timestamp), rows in persons.groupby(["video_id", "timestamp"], sort=False).indices.items()
    }


@dataclass
class Keyframe:
    video_id: str
    timestamp: float
    image: torch.Tensor  # (H, W, 3) uint8 RGB, upright (a rotated video's display matrix applied)
    original_hw: tuple[int, int]  # upright frame size before any downscaling (normalised boxes are relative to it)


@dataclass
class Skipped:
    """Keyframes that could not be decoded: a whole video (missing, unreadable) or one keyframe."""

    video_id: str
    timestamp: float | None  # None: the whole video
    reason: str
    keyframes: int


def _open_source(cfg: DataConfig, video_id: str) -> VideoReader | FrameFolder:
    """The video or frame folder of `video_id`, opened as the Dataset opens it (`data.video_resample_fps`
    included, so a keyframe is the frame training reads), now so that a bad one fails here (`DataError`)."""
    if cfg.source == "video":
        location = find_video(cfg, video_id)
        if location is None:
            exts = "|".join(cfg.video_extensions)
            raise DataError(f"{cfg.path(cfg.video_dir) / video_id}{{{exts}}}: no such video")
    else:
        location = cfg.path(cfg.frames_dir) / video_id
    source = open_clip_source(cfg, video_id, location)
    _ = source.info if isinstance(source, VideoReader) else source.paths
    return source


def shrink_to_short_side(image: torch.Tensor, short_side: int | None) -> torch.Tensor:
    """(H, W, 3) uint8 -> the same, downscaled (bilinear, antialiased) so that min(H, W) <= short_side."""
    height, width = image.shape[:2]
    if short_side is None or min(height, width) <= short_side:
        return image
    scale = short_side / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    chw = image.permute(2, 0, 1)[None].float()
    out = F.interpolate(chw, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def iter_keyframes(
    cfg: DataConfig,
    keys: Sequence[Key],
    skipped: list[Skipped],
    short_side: int | None = None,
    progress: bool = True,
    desc: str = "keyframes",
) -> Iterator[Keyframe]:
    """Decode `keys` video by video (each video opened once); one `Keyframe` per readable key.

    A video that is missing or cannot be opened, and a keyframe that cannot be decoded, are
    appended to `skipped` and the others go on. `short_side` downscales larger frames to bound memory.
    """
    by_video: dict[str, list[float]] = {}
    for video_id, timestamp in keys:
        by_video.setdefault(video_id, []).append(timestamp)
    with tqdm(total=len(keys), desc=desc, unit="frame", disable=not progress, leave=False) as bar:
        for video_id, timestamps in by_video.items():
            try:
                source = _open_source(cfg, video_id)
            except DataError as exc:
                skipped.append(Skipped(video_id, None, str(exc), len(timestamps)))
                bar.update(len(timestamps))
                continue
            try:
                for timestamp in timestamps:
                    try:
                        frame = source.read_clip(timestamp - cfg.time_offset, [0])[0]
                    except DataError as exc:  # e.g. a keyframe past the end of a truncated video
                        skipped.append(Skipped(video_id, timestamp, str(exc), 1))
                    else:
                        yield Keyframe(video_id, timestamp, shrink_to_short_side(frame, short_side),
                                       tuple(frame.shape[:2]))
                    bar.update()
            finally:
                source.close()


def skipped_summary(skipped: list[Skipped], limit: int = 3) -> list[str]:
    """Report lines for what could not be decoded (the first `limit` named with their reason)."""
    if not skipped:
        return []
    lines = [f"skipped {sum(s.keyframes for s in skipped)} keyframes that could not be decoded:"]
    lines += [f"  {s.video_id}{'' if s.timestamp is None else f' t={s.timestamp:g}'}: {s.reason}"
              for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return lines
