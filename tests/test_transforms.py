"""Boxes follow the pixels through resize, crop and flip; crop drops boxes left with no area."""

from __future__ import annotations

import pytest
import torch

from sfdet.data.config import DataConfig
from sfdet.data.transforms import ClipTransform, horizontal_flip, resize_short_side

IDENTITY_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def frames_with_box(height, width, box, num_frames=2):
    """`(T, H, W, 3)` uint8: 255 inside the integer box `[x1, x2) x [y1, y2)`, 0 elsewhere."""
    frames = torch.zeros(num_frames, height, width, 3, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    frames[:, y1:y2, x1:x2] = 255
    return frames


def assert_box_matches_pixels(clip, box, margin=1.0):
    """Pixels whose centre is > margin inside the box are white, > margin outside are black."""
    image = clip[0, 0]  # (H, W), identity normalisation -> values on [0, 1]
    height, width = image.shape
    ys = torch.arange(height).float().view(-1, 1) + 0.5
    xs = torch.arange(width).float().view(1, -1) + 0.5
    x1, y1, x2, y2 = box.tolist()
    inside = (xs > x1 + margin) & (xs < x2 - margin) & (ys > y1 + margin) & (ys < y2 - margin)
    outside = (xs < x1 - margin) | (xs > x2 + margin) | (ys < y1 - margin) | (ys > y2 + margin)
    assert inside.any()
    assert (image[inside] > 0.9).all()
    assert (image[outside] < 0.1).all()


@pytest.mark.parametrize("seed", range(12))
def test_training_transform_moves_boxes_with_pixels(seed):
    torch.manual_seed(seed)
    transform = ClipTransform(train=True, short_side=(120, 150), crop_size=100, flip=True, **IDENTITY_NORM)
    box = (50, 20, 110, 70)  # on a 90 x 160 frame
    clip, boxes, keep, _ = transform(frames_with_box(90, 160, box), torch.tensor([box], dtype=torch.float32))
    assert clip.shape[:2] == (3, 2) and clip.shape[2:] == (100, 100)
    if keep.all():
        assert_box_matches_pixels(clip, boxes[0])
    else:  # dropped: nothing of it is left in the crop
        assert (clip[0, 0] < 0.5).all()


def test_flipped_flag_says_when_the_clip_was_mirrored():
    transform = ClipTransform(train=True, short_side=(90, 90), flip=True, **IDENTITY_NORM)  # no resize, no crop
    box = (10, 20, 50, 70)  # left part of a 90 x 160 frame
    seen = set()
    for seed in range(16):
        torch.manual_seed(seed)
        clip, boxes, keep, flipped = transform(frames_with_box(90, 160, box), torch.tensor([box], dtype=torch.float32))
        expected = (160 - 50, 20, 160 - 10, 70) if flipped else box
        assert boxes[0].tolist() == list(expected)
        assert_box_matches_pixels(clip, boxes[0])
        seen.add(flipped)
    assert seen == {True, False}


def test_test_transform_resizes_short_side_and_keeps_full_frame():
    transform = ClipTransform.from_config(DataConfig(), train=False)  # short side 256
    box = (40, 30, 200, 150)
    frames = frames_with_box(180, 320, box)
    clip, boxes, keep, flipped = transform(frames, torch.tensor([box], dtype=torch.float32))
    assert clip.shape == (3, 2, 256, 455)  # floor(320 * 256 / 180) = 455
    assert keep.tolist() == [True] and not flipped
    assert torch.allclose(boxes[0], torch.tensor([40 * 455 / 320, 30 * 256 / 180, 200 * 455 / 320, 150 * 256 / 180]))
    # normalisation: white -> (1 - 0.45) / 0.225, black -> -0.45 / 0.225
    assert clip[:, 0, 128, 200].tolist() == pytest.approx([0.55 / 0.225] * 3)
    assert clip[:, 0, 5, 5].tolist() == pytest.approx([-0.45 / 0.225] * 3)
    denormalised = clip * 0.225 + 0.45
    assert_box_matches_pixels(denormalised, boxes[0])


def test_flip_is_exact_on_pixel_grid():
    box = (3, 1, 7, 4)
    frames = frames_with_box(6, 10, box).permute(0, 3, 1, 2).float()
    flipped, boxes = horizontal_flip(frames, torch.tensor([box], dtype=torch.float32))
    assert boxes.tolist() == [[10 - 7, 1, 10 - 3, 4]]
    assert torch.equal(flipped, frames_with_box(6, 10, (3, 1, 7, 4)).permute(0, 3, 1, 2).float())


def test_resize_scales_boxes_per_axis():
    frames = torch.zeros(1, 3, 100, 200)
    resized, boxes = resize_short_side(frames, torch.tensor([[10.0, 20.0, 30.0, 40.0]]), 50)
    assert resized.shape[-2:] == (50, 100)
    assert boxes.tolist() == [[5.0, 10.0, 15.0, 20.0]]


@pytest.mark.parametrize("seed", range(8))
def test_crop_clips_boxes_and_drops_the_ones_left_without_area(seed):
    torch.manual_seed(seed)
    # columns carry their own index, so the crop's left edge can be read back from the clip
    frames = torch.arange(100, dtype=torch.uint8).view(1, 1, 100, 1).expand(1, 50, 100, 3).contiguous()
    boxes = torch.tensor([[0.0, 0.0, 50.0, 50.0], [50.0, 0.0, 100.0, 50.0], [49.5, 10.0, 50.5, 20.0]])
    transform = ClipTransform(train=True, short_side=(50, 50), crop_size=50, **IDENTITY_NORM)
    clip, out_boxes, keep, _ = transform(frames, boxes)
    left = round(clip[0, 0, 0, 0].item() * 255)
    expected = (boxes - torch.tensor([left, 0, left, 0])).clamp(0, 50)
    expected_keep = ((expected[:, 2:] - expected[:, :2]) >= 1.0).all(dim=1)
    assert keep.tolist() == expected_keep.tolist()
    assert torch.allclose(out_boxes, expected[expected_keep])


@pytest.mark.parametrize("train, size_hw", [(False, (90, 160)), (False, (144, 256)), (True, (90, 160))])
def test_channels_last_clip_holds_the_same_values(train, size_hw):
    # Prediction keeps frames (T, H', W', 3): the values must be the standard clip's, bit for bit
    # (also with no resize at all, and with the training crop, flip and colour jitter).
    cfg = DataConfig(test_short_side=144, train_jitter=[80, 100], train_crop=64, train_color_jitter=True)
    transform = ClipTransform.from_config(cfg, train=train)
    frames = torch.randint(0, 256, (4, *size_hw, 3), dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 60.0, 80.0]])
    torch.manual_seed(3)
    clip, boxes_a, keep_a, flipped_a = transform(frames, boxes)
    torch.manual_seed(3)
    clip_last, boxes_b, keep_b, flipped_b = transform(frames, boxes, channels_last=True)
    assert clip.shape == (3, 4, *clip.shape[2:]) and clip_last.shape == (4, *clip.shape[2:], 3)
    assert clip_last.is_contiguous() and torch.equal(clip_last, clip.permute(1, 2, 3, 0))
    assert torch.equal(boxes_a, boxes_b) and torch.equal(keep_a, keep_b) and flipped_a == flipped_b


@pytest.mark.parametrize("size_hw", [(90, 160), (144, 256), (360, 640), (200, 120)])
def test_test_boxes_equal_the_test_transforms_boxes(size_hw):
    # Prediction scales the detector's boxes without resizing the full-resolution frame again.
    transform = ClipTransform.from_config(DataConfig(test_short_side=144), train=False)
    height, width = size_hw
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(6, 2, generator=g) * torch.tensor([width, height]) * 1.1 - 5  # some outside the frame
    boxes = torch.cat([corners, corners + torch.rand(6, 2, generator=g) * 60], dim=1)
    _, expected, _, _ = transform(torch.zeros(1, height, width, 3, dtype=torch.uint8), boxes)
    assert torch.equal(transform.test_boxes(height, width, boxes), expected)
    with pytest.raises(ValueError, match="random crop"):
        ClipTransform.from_config(DataConfig(), train=True).test_boxes(height, width, boxes)
