"""Clip + box transforms: frames and boxes go through the same code, so boxes follow the pixels exactly.

Train (PySlowFast's AVA recipe): short side jittered in `data.train_jitter`, random square crop
`data.train_crop` (boxes clipped, boxes left narrower or shorter than `data.min_box_size`
pixels dropped), horizontal flip with probability 0.5, optional colour jitter. Test: short
side `data.test_short_side`, full frame. Both end with RGB normalisation (mean 0.45, std 0.225).
The transform says whether it flipped, so direction-dependent labels can follow
(`data.flip_label_pairs`, applied by the Dataset).

Boxes are `boxes_xyxy_abs` in continuous pixel coordinates: pixel column `j` covers `[j, j+1)`,
so a box `(x1, x2)` on a `W`-wide frame flips to `(W - x2, W - x1)` and scales by exactly the
resize ratio (bilinear resizing with `align_corners=False` maps coordinates the same way).
Randomness comes from torch's generator, which DataLoader seeds per worker.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from sfdet.data.config import DataConfig

COLOR_JITTER_STRENGTH = 0.4  # brightness, contrast and saturation factors in [0.6, 1.4] (PySlowFast)
CROP_ATTEMPTS = 10  # random crops tried to keep at least one box in a training clip


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """`(H', W')`: short side `size`, long side `floor(long * size / short)` (PySlowFast)."""
    if height <= width:
        return size, int(math.floor(width * size / height))
    return int(math.floor(height * size / width)), size


def resize_boxes(boxes_xyxy_abs: torch.Tensor, height: int, width: int, new_height: int, new_width: int):
    if (new_height, new_width) == (height, width):
        return boxes_xyxy_abs
    return boxes_xyxy_abs * boxes_xyxy_abs.new_tensor([new_width / width, new_height / height] * 2)


def resize_short_side(frames: torch.Tensor, boxes_xyxy_abs: torch.Tensor, size: int):
    """`(T, 3, H, W)` float -> short side `size`, long side `floor(long * size / short)` (PySlowFast)."""
    height, width = frames.shape[-2:]
    new_height, new_width = short_side_size(height, width, size)
    if (new_height, new_width) == (height, width):
        return frames, boxes_xyxy_abs
    frames = F.interpolate(frames, size=(new_height, new_width), mode="bilinear", align_corners=False)
    return frames, resize_boxes(boxes_xyxy_abs, height, width, new_height, new_width)


def clip_boxes(boxes_xyxy_abs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    limits = boxes_xyxy_abs.new_tensor([width, height] * 2)
    return torch.minimum(boxes_xyxy_abs.clamp(min=0), limits)


def crop(frames: torch.Tensor, boxes_xyxy_abs: torch.Tensor, top: int, left: int, height: int, width: int):
    """Cut `frames[..., top:top+height, left:left+width]`; boxes are shifted and clipped to it."""
    frames = frames[..., top : top + height, left : left + width]
    boxes = boxes_xyxy_abs - boxes_xyxy_abs.new_tensor([left, top] * 2)
    return frames, clip_boxes(boxes, height, width)


def horizontal_flip(frames: torch.Tensor, boxes_xyxy_abs: torch.Tensor):
    width = frames.shape[-1]
    boxes = torch.stack([width - boxes_xyxy_abs[:, 2], boxes_xyxy_abs[:, 1],
                         width - boxes_xyxy_abs[:, 0], boxes_xyxy_abs[:, 3]], dim=1)
    return frames.flip(-1), boxes


def color_jitter(frames: torch.Tensor, strength: float = COLOR_JITTER_STRENGTH) -> torch.Tensor:
    """Brightness, contrast and saturation in random order, the same for every frame of the clip."""
    adjust = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation]
    for i in torch.randperm(3).tolist():
        factor = 1.0 + (torch.rand(()).item() * 2 - 1) * strength
        frames = adjust[i](frames, factor)
    return frames.clamp(0.0, 1.0)


def normalize_(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """`(T, 3, H, W)` on [0, 1] -> `(x - mean) / std` per RGB channel, in place."""
    return frames.sub_(frames.new_tensor(mean).view(1, 3, 1, 1)).div_(frames.new_tensor(std).view(1, 3, 1, 1))


class ClipTransform:
    """`(T, H, W, 3)` uint8 RGB frames + `(N, 4)` boxes_xyxy_abs in their pixels ->

    `clip` `(3, T, H', W')` float32 normalised, `boxes_xyxy_abs` `(M, 4)` in the clip's pixels,
    `keep` `(N,)` bool: which input boxes are still there (`M = keep.sum()`; only the
    training crop drops boxes), `flipped`: whether the clip was mirrored left-right.
    With `channels_last=True` the clip is `(T, H', W', 3)` instead (the same values): the layout
    the optimised model reads (`sfdet.models.inference`), so prediction never transposes frames.
    """

    def __init__(self, train: bool, short_side: tuple[int, int], crop_size: int | None = None,
                 flip: bool = False, color_jitter: bool = False, mean: Sequence[float] = (0.45,) * 3,
                 std: Sequence[float] = (0.225,) * 3, min_box_size: float = 1.0):
        self.train = train
        self.short_side = short_side
        self.crop_size = crop_size
        self.flip = flip
        self.color_jitter = color_jitter
        self.mean, self.std = list(mean), list(std)
        self.min_box_size = min_box_size

    @classmethod
    def from_config(cls, cfg: DataConfig, train: bool) -> ClipTransform:
        if train:
            return cls(True, tuple(cfg.train_jitter), cfg.train_crop, cfg.train_flip, cfg.train_color_jitter,
                       cfg.mean, cfg.std, cfg.min_box_size)
        return cls(False, (cfg.test_short_side, cfg.test_short_side), mean=cfg.mean, std=cfg.std)

    def __call__(self, frames: torch.Tensor, boxes_xyxy_abs: torch.Tensor, channels_last: bool = False):
        # (T, 3, H, W) on [0, 255], channels-last in memory: the fast layout for bilinear resizing.
        # Scaling to [0, 1] after the resize and crop touches fewer pixels (the result differs by float
        # rounding only, ~1e-7).
        frames = frames.permute(0, 3, 1, 2).float()
        boxes = clip_boxes(boxes_xyxy_abs.float(), *frames.shape[-2:])
        keep = torch.ones(len(boxes), dtype=torch.bool)
        low, high = self.short_side
        size = low if low == high else int(torch.randint(low, high + 1, ()).item())
        frames, boxes = resize_short_side(frames, boxes, size)
        if self.crop_size is not None:
            frames, boxes, keep = self._random_crop(frames, boxes)
        # A new (T, 3, H', W') tensor, the input is never changed (the resize's channels-last output is kept
        # as it is for `channels_last`).
        layout = torch.channels_last if channels_last else torch.contiguous_format
        frames = frames.contiguous(memory_format=layout).div_(255.0)
        flipped = self.flip and torch.rand(()).item() < 0.5
        if flipped:
            frames, boxes = horizontal_flip(frames, boxes)
        if self.color_jitter:
            frames = color_jitter(frames)
        frames = normalize_(frames, self.mean, self.std)
        clip = frames.permute(0, 2, 3, 1) if channels_last else frames.permute(1, 0, 2, 3)
        return clip.contiguous(), boxes, keep, flipped

    def test_boxes(self, height: int, width: int, boxes_xyxy_abs: torch.Tensor) -> torch.Tensor:
        """The boxes the test transform of an `height x width` clip returns, without touching its pixels."""
        if self.train:
            raise ValueError("test_boxes: the training transform's boxes depend on its random crop")
        boxes = clip_boxes(boxes_xyxy_abs.float(), height, width)
        return resize_boxes(boxes, height, width, *short_side_size(height, width, self.short_side[0]))

    def _random_crop(self, frames, boxes):
        """A random `crop_size` square; a few tries to keep at least one box visible."""
        height, width = frames.shape[-2:]
        size = self.crop_size
        for _ in range(CROP_ATTEMPTS):
            top = int(torch.randint(0, height - size + 1, ()).item())
            left = int(torch.randint(0, width - size + 1, ()).item())
            cropped_frames, cropped_boxes = crop(frames, boxes, top, left, size, size)  # a view: cheap to retry
            keep = (cropped_boxes[:, 2:] - cropped_boxes[:, :2] >= self.min_box_size).all(dim=1)
            if keep.any() or len(boxes) == 0:
                break
        return cropped_frames, cropped_boxes[keep], keep
