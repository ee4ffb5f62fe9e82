"""`AvaDataset`: one sample per (video, keyframe) of a split, with its clip, boxes and labels.

A sample (`dataset[i]`) is a dict:
    inputs          [slow (3, T/alpha, H, W), fast (3, T, H, W)] float32 normalised ([clip] when alpha is None)
    boxes_xyxy_abs  (N, 4) float32, in the clip's pixels (after resize/crop/flip)
    labels          (N, C) float32 multi-hot, column j = class `dataset.label_ids[j]`
    boxes_norm      (N, 4) float32, the same boxes as in the annotation files (for writing results)
    video_id, timestamp
or, when the clip's video cannot be read and skipping is on (training), `{"skipped": (video_id, timestamp, reason)}`.

`collate_fn` packs samples into a batch (see its docstring); `build_loader` wraps both in a DataLoader.
Pixel sources (videos or frame folders) are opened lazily in the process that reads them,
at most `MAX_OPEN_SOURCES` at a time, and never shared across a fork. With `data.cache: ram` the
split's videos are decoded once, in the process that builds the dataset, and forked workers share them.
"""

from __future__ import annotations

import collections
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sfdet.boxes import norm_to_abs
from sfdet.data import ava
from sfdet.data.clip_sampling import clip_offsets, pack_pathways
from sfdet.data.config import DataConfig
from sfdet.data.labels import KeyframeBoxes, detection_boxes, flip_label_columns, select_classes, training_targets
from sfdet.data.transforms import ClipTransform
from sfdet.data.video import DecodedVideo, VideoReader, open_clip_source
from sfdet.errors import ConfigError, DataError

MAX_OPEN_SOURCES = 4


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux `MemAvailable`), None where it cannot tell."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class SkippedClipWarning(UserWarning):
    """A training clip was skipped because its video could not be read."""


def read_label_map(cfg: DataConfig) -> dict[int, str]:
    """The classes trained and evaluated: `data.label_map`, cut to `data.classes` when set (ids kept)."""
    path = _required(cfg, "label_map")
    return select_classes(ava.read_label_map(path), cfg.classes, source=path)


def read_split(cfg: DataConfig, split: str) -> tuple[dict[int, str], dict[tuple[str, float], KeyframeBoxes]]:
    """(label map, {(video_id, timestamp): boxes and labels}) of a split, excluded keyframes removed.

    With `data.classes` the label map is the subset and GT rows of other classes are dropped (boxes and
    training keyframes left with no class of the subset go with them); val keyframes still come from the
    proposals, as the evaluator scores every keyframe.
    """
    label_map = read_label_map(cfg)
    gt_path, exclusions_path, proposals_path = cfg.split_files(split)
    gt = ava.read_gt_csv(gt_path, skip_bad_rows=cfg.skip_bad_rows) if gt_path else None
    label_ids = list(label_map)
    if split == "train" or cfg.val_boxes == "gt":
        if gt is None:
            raise ConfigError(f"config key 'data.{split}_gt' is empty: {split} clips need GT boxes")
        proposals = None
        if split == "train" and proposals_path:
            proposals = ava.read_proposals(proposals_path, skip_bad_rows=cfg.skip_bad_rows)
        targets = training_targets(gt, proposals, label_ids, cfg.detection_score_thresh, cfg.train_proposal_iou,
                                   negatives=cfg.train_negative_proposals)
    else:
        if not proposals_path:
            raise ConfigError("config key 'data.val_proposals' is empty: set it, or data.val_boxes=gt for GT boxes")
        proposals = ava.read_proposals(proposals_path, skip_bad_rows=cfg.skip_bad_rows)
        targets = detection_boxes(proposals, gt, label_ids, cfg.detection_score_thresh, cfg.train_proposal_iou)
    if cfg.classes and not targets and gt is not None and not (split == "val" and cfg.val_boxes == "proposals"):
        raise DataError(f"{split}: {gt_path} has no GT box of the {len(label_map)} classes data.classes keeps "
                        f"({', '.join(f'{i} {n}' for i, n in label_map.items())}); check data.classes")
    if exclusions_path:
        excluded = ava.read_exclusions(exclusions_path, skip_bad_rows=cfg.skip_bad_rows)
        for video_id, timestamp in zip(excluded["video_id"], excluded["timestamp"]):
            targets.pop((str(video_id), float(timestamp)), None)
    return label_map, targets


def find_video(cfg: DataConfig, video_id: str) -> Path | None:
    """`video_dir/<video_id><ext>` for the first configured extension that exists."""
    for ext in cfg.video_extensions:
        path = cfg.path(cfg.video_dir) / f"{video_id}{ext}"
        if path.is_file():
            return path
    return None


def _required(cfg: DataConfig, key: str) -> Path:
    path = cfg.path(getattr(cfg, key))
    if path is None:
        raise ConfigError(f"config key 'data.{key}' is empty")
    return path


class AvaDataset(Dataset):
    """Clips of one split ("train": GT + matching proposals, augmented; "val": proposals, test transform).

    `alpha` is the model's Fast/Slow frame-rate ratio (`model.alpha`), None for a single-pathway model.
    `train_transform` (default: split == "train") picks the augmenting transform; a clip it flips
    gets the labels of `data.flip_label_pairs` swapped.
    `skip_bad_videos` (default: `data.skip_bad_videos` in training) turns an unreadable video into
    a skipped sample with a warning instead of a `DataError`.
    `progress`: show a progress bar while `data.cache: ram` decodes the videos.
    """

    def __init__(self, cfg: DataConfig, split: str, alpha: int | None, train_transform: bool | None = None,
                 skip_bad_videos: bool | None = None, progress: bool = False):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.cfg, self.split, self.alpha = cfg, split, alpha
        self.label_map, self.targets = read_split(cfg, split)
        self.label_ids = list(self.label_map)
        self.offsets = clip_offsets(cfg.num_frames, cfg.sampling_rate)
        left_out = ava.read_label_map(_required(cfg, "label_map")).keys() - self.label_map.keys() if cfg.classes else ()
        self.flip_columns = flip_label_columns(self.label_ids, cfg.flip_label_pairs, left_out)
        self.transform = ClipTransform.from_config(cfg, split == "train" if train_transform is None else train_transform)
        self.skip_bad_videos = (cfg.skip_bad_videos and split == "train") if skip_bad_videos is None else skip_bad_videos
        self.locations: dict[str, Path] = {}
        missing = []
        for video_id in sorted({video_id for video_id, _ in self.targets}):
            location = find_video(cfg, video_id) if cfg.source == "video" else cfg.path(cfg.frames_dir) / video_id
            if location is None or not location.exists():
                missing.append(video_id)
            else:
                self.locations[video_id] = location
        self.samples = sorted(key for key in self.targets if key[0] in self.locations)
        where = cfg.path(cfg.video_dir if cfg.source == "video" else cfg.frames_dir)
        if not self.samples:
            raise DataError(
                f"{split}: no keyframe has both boxes and {'a video' if cfg.source == 'video' else 'frames'} "
                f"in {where}; run `sfdet data check` to see what does not line up"
            )
        if missing:
            warnings.warn(f"{split}: {len(missing)} video(s) not found in {where} (first: {missing[0]}); "
                          f"{len(self.targets) - len(self.samples)} keyframes left out", stacklevel=2)
        self._sources: collections.OrderedDict = collections.OrderedDict()
        self._pid = os.getpid()
        self._warned: set[str] = set()
        self._decoded: dict[str, DecodedVideo] = self._decode_videos(progress) if cfg.cache == "ram" else {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        video_id, timestamp = self.samples[index]
        target = self.targets[(video_id, timestamp)]
        try:
            frames = self._source(video_id).read_clip(timestamp - self.cfg.time_offset, self.offsets)
        except DataError as exc:
            if not self.skip_bad_videos:
                raise
            if video_id not in self._warned:
                self._warned.add(video_id)
                warnings.warn(f"skipping clips of {video_id}: {exc}", SkippedClipWarning, stacklevel=2)
            return {"skipped": (video_id, timestamp, str(exc))}
        height, width = frames.shape[1:3]
        boxes_norm = torch.from_numpy(target.boxes_norm)
        boxes_abs = torch.from_numpy(norm_to_abs(target.boxes_norm, width, height, np.float32))
        clip, boxes_xyxy_abs, keep, flipped = self.transform(frames, boxes_abs)
        labels = torch.from_numpy(target.labels)[keep]
        if flipped and self.flip_columns is not None:
            labels = labels[:, self.flip_columns]
        return {
            "inputs": pack_pathways(clip, self.alpha, self.cfg.slow_sampling),
            "boxes_xyxy_abs": boxes_xyxy_abs,
            "labels": labels,
            "boxes_norm": boxes_norm[keep],
            "video_id": video_id,
            "timestamp": timestamp,
        }

    def _decode_videos(self, progress: bool) -> dict[str, DecodedVideo]:
        """`data.cache: ram`: every video of the split decoded once, after checking that they fit in memory."""
        needed = 0
        for location in self.locations.values():
            try:
                with VideoReader(location) as reader:
                    info = reader.info
            except DataError:
                continue  # read (and skipped or reported) like any unreadable video
            frames = info.num_frames or math.ceil(info.duration * info.fps) + 1
            needed += info.width * info.height * 3 * frames
        free = available_memory_bytes()
        if free is not None and needed > free / 2:
            raise DataError(
                f"data.cache=ram: the {len(self.locations)} {self.split} videos need ~{needed / 2**30:.1f} GiB decoded, "
                f"more than half the free memory ({free / 2**30:.1f} GiB); set data.cache=none"
            )
        decoded = {}
        for video_id, location in tqdm(self.locations.items(), desc=f"decoding {self.split} videos into memory",
                                       unit="video", dynamic_ncols=True, leave=False, disable=not progress):
            try:
                decoded[video_id] = DecodedVideo(location, resample_fps=self.cfg.video_resample_fps)
            except DataError:
                pass  # left to VideoReader, which raises (or skips) when one of its clips is read
        return decoded

    def _source(self, video_id: str):
        """The pixel source of a video: its decoded frames (`data.cache: ram`) or an open file in a small LRU."""
        if video_id in self._decoded:
            return self._decoded[video_id]
        if self._pid != os.getpid():
            # Forked into a worker: the parent's open videos are not ours to read, nor to close
            # (closing a decoder whose threads stayed in the parent hangs), so keep them untouched.
            self._inherited_sources = self._sources
            self._sources, self._pid = collections.OrderedDict(), os.getpid()
        source = self._sources.pop(video_id, None)
        if source is None:
            source = open_clip_source(self.cfg, video_id, self.locations[video_id])
        self._sources[video_id] = source
        while len(self._sources) > MAX_OPEN_SOURCES:
            self._sources.popitem(last=False)[1].close()
        return source

    def close(self) -> None:
        """Close the open videos of this process."""
        while self._sources:
            self._sources.popitem()[1].close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sources"] = collections.OrderedDict()  # open files never travel to another process
        state.pop("_inherited_sources", None)
        return state


def collate_fn(samples: list[dict]) -> dict:
    """Samples -> batch of the B clips that were read:

        inputs          list of pathways, each (B, 3, T_p, H, W); clips of different sizes are
                        zero-padded at the bottom/right to the largest (zero = the mean colour after
                        normalisation; boxes are unchanged). Use batch size 1 for bit-exact results
                        on mixed aspect ratios.
        boxes           list (len B) of (N_i, 4) float32 boxes_xyxy_abs in input pixels
        labels          (K, C) float32 multi-hot, K = sum N_i, in box order
        boxes_norm      (K, 4) float32 original boxes
        batch_index     (K,) int64 clip of each box
        keys            list (len B) of (video_id, timestamp)
        image_sizes     list (len B) of (H, W) before padding
        skipped         list of (video_id, timestamp, reason) of unreadable clips (count and report them)
    """
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    samples = [s for s in samples if "skipped" not in s]
    sizes = [tuple(s["inputs"][0].shape[-2:]) for s in samples]
    height = max((h for h, _ in sizes), default=0)
    width = max((w for _, w in sizes), default=0)
    num_pathways = len(samples[0]["inputs"]) if samples else 0
    inputs = [
        torch.stack([F.pad(s["inputs"][p], (0, width - s["inputs"][p].shape[-1], 0, height - s["inputs"][p].shape[-2]))
                     for s in samples])
        for p in range(num_pathways)
    ]
    boxes = [s["boxes_xyxy_abs"] for s in samples]
    return {
        "inputs": inputs,
        "boxes": boxes,
        "labels": torch.cat([s["labels"] for s in samples]) if samples else torch.zeros(0, 0),
        "boxes_norm": torch.cat([s["boxes_norm"] for s in samples]) if samples else torch.zeros(0, 4),
        "batch_index": torch.cat([torch.full((len(b),), i, dtype=torch.int64) for i, b in enumerate(boxes)])
        if samples else torch.zeros(0, dtype=torch.int64),
        "keys": [(s["video_id"], s["timestamp"]) for s in samples],
        "image_sizes": sizes,
        "skipped": skipped,
    }


def build_loader(dataset: AvaDataset, batch_size: int, num_workers: int = 0, shuffle: bool | None = None,
                 drop_last: bool = False) -> DataLoader:
    """DataLoader with `collate_fn`; shuffles the train split by default; pins memory when CUDA is there."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=dataset.split == "train" if shuffle is None else shuffle,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
