"""Data config (the `data:` section): where the AVA-format files are and how clips are made.

The model's `alpha` (Fast/Slow frame-rate ratio) is not repeated here: whoever builds the
Dataset passes `model.alpha` in, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sfdet.errors import ConfigError

SOURCES = ("video", "frames")
SLOW_SAMPLINGS = ("stride", "linspace")
VAL_BOXES = ("proposals", "gt")
CACHES = ("none", "ram")


@dataclass
class DataConfig:
    """Paths are relative to `root` unless absolute; an empty path means "no such file"."""

    root: str = "data/ava"
    # Annotation files (AVA layout, see `sfdet.data.ava`).
    label_map: str = "annotations/label_map.pbtxt"
    train_gt: str = "annotations/train.csv"
    val_gt: str = "annotations/val.csv"
    train_exclusions: str = "annotations/train_excluded_timestamps.csv"
    val_exclusions: str = "annotations/val_excluded_timestamps.csv"
    train_proposals: str = "annotations/train_predicted_boxes.csv"  # CSV or MMAction2 pickle; "" = GT boxes only
    val_proposals: str = "annotations/val_predicted_boxes.csv"
    # Pixels: decoded videos or extracted frames.
    source: str = "video"  # "video": decode `video_dir/<video_id><ext>` | "frames": `frames_dir/<video_id>/<video_id>_000001.jpg`
    video_dir: str = "videos"
    video_extensions: list[str] = field(default_factory=lambda: [".mp4", ".mkv", ".webm", ".avi", ".mov"])
    frames_dir: str = "frames"
    fps: float = 30.0  # declared rate of extracted frames (source: frames); videos take theirs from the container
    # source: video only. None: clips count the video's own decoded frames. A rate (AVA: 30): clips count the
    # frames of a fixed grid k / rate from the video's start, each the frame `ffmpeg -r RATE` would extract
    # there (see sfdet.data.video), so videos of any frame rate give the clips of frames extracted at RATE.
    video_resample_fps: float | None = None
    # "ram" (source: video): decode every video of a split once, before training, and read clips from memory
    # (shared with forked loader workers). For small datasets read many times, like the toy set; the
    # split's decoded frames must fit in half the free memory (checked). "none": decode each clip.
    cache: str = "none"
    time_offset: float = 0.0  # video time of a keyframe = timestamp - time_offset (AVA: 900)
    # Clip sampling (PySlowFast `get_sequence`).
    num_frames: int = 32  # Fast pathway frames
    sampling_rate: int = 2  # raw frames between two Fast pathway frames
    slow_sampling: str = "stride"  # "stride": every alpha-th Fast frame | "linspace": PySlowFast/PyTorchVideo packing
    # Transforms: train = short-side jitter + random crop + flip (+ colour jitter); test = short side, full frame.
    train_jitter: list[int] = field(default_factory=lambda: [256, 320])
    train_crop: int = 224
    train_flip: bool = True
    # Action ids that trade places when a training clip is flipped horizontally (e.g. clockwise /
    # counter-clockwise), as pairs [[a, b], ...]: a flipped clip of an `a` box is labelled `b` and vice versa.
    flip_label_pairs: list[list[int]] = field(default_factory=list)
    train_color_jitter: bool = False
    min_box_size: float = 1.0  # pixels: a box cropped narrower or shorter than this is dropped
    test_short_side: int = 256
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])  # RGB, on [0, 1]
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    # Boxes and labels.
    # Train and evaluate on part of the label map: class names or ids, e.g. [stand, 12, "carry/hold (an object)"];
    # [] = every class. Ids are kept (labels, checkpoints and predictions use the label map's ids); GT rows of
    # other classes are dropped, so keyframes with only those are no training samples (MMAction2's custom_classes).
    classes: list[int | str] = field(default_factory=list)
    detection_score_thresh: float = 0.8  # proposals below this score are ignored (train and val)
    train_proposal_iou: float = 0.9  # a proposal with IoU >= this to a GT box is a training box with its labels
    train_negative_proposals: bool = False  # also train on unmatched proposals with no labels (PySlowFast's *_include_negative lists)
    val_boxes: str = "proposals"  # "proposals": detector boxes (the AVA protocol) | "gt": GT boxes (oracle)
    # Robustness.
    skip_bad_rows: bool = False  # drop malformed CSV rows (counted, one warning) instead of stopping
    skip_bad_videos: bool = True  # training: skip clips of unreadable videos with a warning instead of stopping

    def __post_init__(self) -> None:
        _one_of("source", self.source, SOURCES)
        _one_of("slow_sampling", self.slow_sampling, SLOW_SAMPLINGS)
        _one_of("val_boxes", self.val_boxes, VAL_BOXES)
        _one_of("cache", self.cache, CACHES)
        if self.cache == "ram" and self.source != "video":
            raise ConfigError("config key 'data.cache': 'ram' decodes videos (data.source: video); "
                              "extracted frames are read as they are, use data.cache=none")
        for name in ("num_frames", "sampling_rate", "train_crop", "test_short_side"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config key 'data.{name}': must be >= 1, got {getattr(self, name)}")
        if not self.fps > 0:
            raise ConfigError(f"config key 'data.fps': must be > 0, got {self.fps}")
        if self.video_resample_fps is not None and not self.video_resample_fps > 0:
            raise ConfigError(f"config key 'data.video_resample_fps': must be > 0 (or null: no resampling), "
                              f"got {self.video_resample_fps}")
        _check_flip_label_pairs(self.flip_label_pairs)
        for entry in self.classes:
            if isinstance(entry, bool) or not isinstance(entry, (int, str)) or (isinstance(entry, str) and not entry.strip()):
                raise ConfigError(f"config key 'data.classes': expected class names or ids like [stand, 12], "
                                  f"got {self.classes!r}")
        if len(self.train_jitter) != 2 or not 1 <= self.train_jitter[0] <= self.train_jitter[1]:
            raise ConfigError(f"config key 'data.train_jitter': expected [min, max] short sides, got {self.train_jitter}")
        if self.train_crop > self.train_jitter[0]:
            raise ConfigError(
                f"config key 'data.train_crop': {self.train_crop} is larger than the smallest jittered "
                f"short side {self.train_jitter[0]}; lower it or raise data.train_jitter"
            )
        for name in ("mean", "std"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"config key 'data.{name}': expected 3 values (R, G, B), got {getattr(self, name)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"config key 'data.std': values must be > 0, got {self.std}")
        if not 0.0 <= self.detection_score_thresh <= 1.0:
            raise ConfigError(f"config key 'data.detection_score_thresh': must be in [0, 1], got {self.detection_score_thresh}")
        if not 0.0 < self.train_proposal_iou <= 1.0:
            raise ConfigError(f"config key 'data.train_proposal_iou': must be in (0, 1], got {self.train_proposal_iou}")
        if not self.video_extensions or any(not e.startswith(".") for e in self.video_extensions):
            raise ConfigError(f"config key 'data.video_extensions': expected extensions like ['.mp4'], got {self.video_extensions}")

    def path(self, relative: str) -> Path | None:
        """A configured file or folder resolved against `root` (absolute paths stay), None when empty."""
        if not relative:
            return None
        path = Path(relative).expanduser()
        return path if path.is_absolute() else Path(self.root).expanduser() / path

    def split_files(self, split: str) -> tuple[Path | None, Path | None, Path | None]:
        """(GT CSV, exclusions, proposals) of "train" or "val"."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return (
            self.path(getattr(self, f"{split}_gt")),
            self.path(getattr(self, f"{split}_exclusions")),
            self.path(getattr(self, f"{split}_proposals")),
        )


def _check_flip_label_pairs(pairs: list[list[int]]) -> None:
    seen: set[int] = set()
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ConfigError(f"config key 'data.flip_label_pairs': expected pairs of two different action ids "
                              f"like [[8, 9]], got {pairs}")
        if seen & set(pair):
            raise ConfigError(f"config key 'data.flip_label_pairs': action id {sorted(seen & set(pair))[0]} "
                              f"is in more than one pair: {pairs}")
        seen.update(pair)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key 'data.{name}': expected one of {', '.join(choices)}; got {value!r}")
