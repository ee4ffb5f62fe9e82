"""Rotated videos (a phone's display matrix) are read upright, as ffmpeg's default `-autorotate` shows them:
the Dataset's clips (`VideoReader`, `DecodedVideo`), `proposals`' keyframes, the predict stream, predict's
boxes and its rendered video. Unrotated videos are untouched.

The rotated test videos are an mp4 whose track header (`tkhd`) matrix is rewritten, the way a phone
writes it: the coded frames are the very same bytes, so the upright frames must equal the unrotated
file's frames turned by `np.rot90` exactly.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import struct
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from sfdet.boxes import norm_to_abs
from sfdet.config import load_config
from sfdet.data.clip_sampling import clip_offsets
from sfdet.data.dataset import AvaDataset
from sfdet.data.timing import Orientation, VideoFile
from sfdet.data.video import DecodedVideo, VideoReader
from sfdet.detection.keyframes import Skipped, iter_keyframes, read_split_keyframes
from sfdet.detection.proposals import make_proposals
from sfdet.models import build_model
from sfdet.persons import PersonDetector
from sfdet.predict.actions import ActionPredictor
from sfdet.predict.pipeline import PredictOptions, predict_video
from sfdet.predict.stream import FrameStream, decode_frames
from sfdet.predict.writers import OutputPaths, read_jsonl
from test_dataset import HEIGHT, LABEL_MAP, PERSON, WIDTH, make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
DEGREES = [90, 180, 270]
OFFSETS = clip_offsets(num_frames=4, sampling_rate=2)


def set_display_rotation(path: Path, degrees: int) -> None:
    """Rewrite the mp4's `tkhd` matrix to a counter-clockwise display rotation of `degrees` (what ffprobe
    calls "rotation of `degrees`"; a phone's portrait video says -90 = 270)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data.find(b"tkhd", at + 4) < 0, "one video track"
    version = data[at + 4]
    # version, flags; creation, modification, track id, reserved, duration; reserved(8), layer, group, volume, reserved
    matrix_at = at + 4 + 4 + (4 + 4 + 4 + 4 + 4 if version == 0 else 8 + 8 + 4 + 4 + 8) + 8 + 8
    radians = math.radians(degrees)
    cos, sin = round(math.cos(radians)), round(math.sin(radians))
    # FFmpeg's av_display_rotation_set(-degrees): a b u / c d v / x y w, 16.16 (u, v, w 2.30), big-endian
    matrix = [cos << 16, -sin << 16, 0, sin << 16, cos << 16, 0, 0, 0, 1 << 30]
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


def rotated_copy(source: Path, target: Path, degrees: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    set_display_rotation(target, degrees)
    return target


def upright(images, degrees: int, axes=(0, 1)) -> np.ndarray:
    """What ffmpeg's autorotate shows for a display rotation of `degrees` counter-clockwise."""
    return np.ascontiguousarray(np.rot90(np.asarray(images), degrees // 90, axes=axes))


def bright_box(frame_rgb: np.ndarray) -> np.ndarray:
    """(1, 4) xyxy box (pixels) around the bright "person" rectangle of the tiny dataset's frames."""
    ys, xs = np.nonzero(frame_rgb.min(axis=2) >= 150)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)


class BrightBoxDetector(PersonDetector):
    """Finds the bright rectangle in the frame it is given: its boxes are in that frame's orientation."""

    name = "bright-box"

    def _detect(self, frame_rgb, video_id, timestamp):
        return bright_box(frame_rgb), np.array([0.9])


def person_box_upright(degrees: int) -> np.ndarray:
    """The normalised box of the person rectangle once the coded frame is turned upright (from a mask)."""
    mask = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    x1, y1, x2, y2 = (round(v * s) for v, s in zip(PERSON, (WIDTH, HEIGHT, WIDTH, HEIGHT)))
    mask[y1:y2, x1:x2] = 255
    turned = upright(mask, degrees)
    height, width = turned.shape[:2]
    return bright_box(turned)[0] / np.array([width, height, width, height], np.float32)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """The tiny dataset as coded, and one copy per rotation whose val video carries a display matrix."""
    base = tmp_path_factory.mktemp("rotation")
    plain = make_tiny_dataset(base / "plain")
    rotated = {}
    for degrees in DEGREES:
        root = Path(shutil.copytree(plain.root, base / f"rot{degrees}"))
        set_display_rotation(root / "videos" / "val_a.mp4", degrees)
        rotated[degrees] = dataclasses.replace(plain, root=str(root))
    return plain, rotated


def test_display_matrices_map_to_ffmpegs_autorotate():
    """All eight axis-aligned matrices: ffmpeg's transpose / hflip / vflip choice, written as numpy."""
    image = np.arange(2 * 3).reshape(2, 3)
    q = 1 << 16
    cases = {  # (a, b, c, d) -> the upright image (ffmpeg fftools autorotate's filter for that matrix)
        (q, 0, 0, q): image,  # identity
        (0, -q, q, 0): np.rot90(image, 1),  # rotation 90 (ccw): transpose=cclock
        (-q, 0, 0, -q): np.rot90(image, 2),  # 180: hflip + vflip
        (0, q, -q, 0): np.rot90(image, 3),  # 270 (-90, a portrait phone video): transpose=clock
        (-q, 0, 0, q): image[:, ::-1],  # mirrored: hflip
        (q, 0, 0, -q): image[::-1],  # vflip
        (0, q, q, 0): image.T,  # transpose=cclock_flip
        (0, -q, -q, 0): image.T[::-1, ::-1],  # transpose=clock_flip
    }
    for (a, b, c, d), expected in cases.items():
        orientation = Orientation.from_display_matrix([a, b, 0, c, d, 0, 0, 0, 1 << 30])
        assert np.array_equal(orientation.apply(image), expected), (a, b, c, d)
    assert Orientation.from_display_matrix([q, 0, 0, 0, q, 0, 0, 0, 1 << 30]).is_identity
    tilted = [round(q * math.cos(0.5)), round(-q * math.sin(0.5)), 0, round(q * math.sin(0.5)),
              round(q * math.cos(0.5)), 0, 0, 0, 1 << 30]
    assert Orientation.from_display_matrix(tilted).is_identity  # not a right angle: left as coded
    image3 = np.zeros((4, 6, 3), np.uint8)
    assert Orientation().apply(image3) is image3  # nothing to turn: the very same array


@pytest.mark.parametrize("degrees", DEGREES)
def test_header_reports_the_upright_size_and_the_rotation(tiny_sets, degrees):
    plain, rotated = tiny_sets
    video = Path(rotated[degrees].root) / "videos" / "val_a.mp4"
    with av.open(str(video)) as container:  # the file says what we wrote, in FFmpeg's own reading
        assert next(container.decode(video=0)).rotation == (degrees + 180) % 360 - 180
    with VideoFile(video) as file:
        turned = degrees in (90, 270)
        assert (file.info.width, file.info.height) == ((HEIGHT, WIDTH) if turned else (WIDTH, HEIGHT))
        assert file.info.rotation == degrees
    with VideoFile(Path(plain.root) / "videos" / "val_a.mp4") as file:
        assert (file.info.width, file.info.height, file.info.rotation) == (WIDTH, HEIGHT, 0)


@pytest.mark.parametrize("degrees", DEGREES)
def test_dataset_clips_are_upright(tiny_sets, degrees):
    plain, rotated = tiny_sets
    source = Path(plain.root) / "videos" / "val_a.mp4"
    video = Path(rotated[degrees].root) / "videos" / "val_a.mp4"
    with VideoReader(source) as coded, VideoReader(video) as reader:
        cached = DecodedVideo(video)
        for t in (0.0, 1.0, 2.5, 3.9):
            expected = upright(coded.read_clip(t, OFFSETS).numpy(), degrees, axes=(1, 2))
            assert np.array_equal(reader.read_clip(t, OFFSETS).numpy(), expected), t
            assert np.array_equal(cached.read_clip(t, OFFSETS).numpy(), expected), t
    # The Dataset (boxes are normalised to the upright frame): its clip is the transform of the upright frames.
    for cache in ("none", "ram"):
        cfg = dataclasses.replace(rotated[degrees], cache=cache)
        dataset = AvaDataset(cfg, "val", alpha=None)
        reference = AvaDataset(plain, "val", alpha=None)
        for i in range(len(dataset)):
            sample, base = dataset[i], reference[i]
            with VideoReader(source) as coded:
                frames = upright(coded.read_clip(sample["timestamp"], dataset.offsets).numpy(), degrees, axes=(1, 2))
            height, width = frames.shape[1:3]
            boxes = torch.from_numpy(norm_to_abs(sample["boxes_norm"].numpy(), width, height, np.float32))
            clip, boxes_abs, _, _ = dataset.transform(torch.from_numpy(frames), boxes)
            assert torch.equal(sample["inputs"][0], clip)
            assert torch.allclose(sample["boxes_xyxy_abs"], boxes_abs)
            if degrees in (90, 270):
                assert sample["inputs"][0].shape[2:] == base["inputs"][0].shape[2:][::-1]
        dataset.close()
        reference.close()


@pytest.mark.parametrize("degrees", DEGREES)
def test_stream_frames_are_upright(tiny_sets, degrees):
    plain, rotated = tiny_sets
    source = Path(plain.root) / "videos" / "val_a.mp4"
    video = Path(rotated[degrees].root) / "videos" / "val_a.mp4"
    coded = [f.rgb for f in decode_frames(source)]
    turned = [f.rgb for f in decode_frames(video)]
    assert len(turned) == len(coded) == 60
    for a, b in zip(turned, coded):
        assert np.array_equal(a, upright(b, degrees))
    stream = FrameStream(video, [1.0, 2.0], prepare_frame=lambda rgb: rgb, window_offsets=OFFSETS)
    assert (stream.info.width, stream.info.height) == upright(coded[0], degrees).shape[1::-1]
    for item in stream:
        if item.prepared is not None:
            assert np.array_equal(item.prepared, upright(coded[item.index], degrees))
        if item.keyframes:
            assert np.array_equal(item.rgb, upright(coded[item.index], degrees))


@pytest.mark.parametrize("degrees", DEGREES)
def test_proposals_read_upright_keyframes_and_give_upright_boxes(tiny_sets, degrees):
    plain, rotated = tiny_sets
    cfg = rotated[degrees]
    keys = read_split_keyframes(cfg, "val").keys
    skipped: list[Skipped] = []
    with VideoReader(Path(plain.root) / "videos" / "val_a.mp4") as coded:
        for keyframe in iter_keyframes(cfg, keys, skipped, progress=False):
            expected = upright(coded.read_clip(keyframe.timestamp, [0])[0].numpy(), degrees)
            assert np.array_equal(keyframe.image.numpy(), expected)
            assert keyframe.original_hw == expected.shape[:2]
    assert not skipped
    result = make_proposals(cfg, "val", BrightBoxDetector(), progress=False)
    boxes = result.proposals[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
    assert len(boxes) == 3
    np.testing.assert_allclose(boxes, np.repeat(person_box_upright(degrees)[None], 3, 0), atol=2e-3)


@pytest.fixture(scope="module")
def predictor(tiny_sets):
    plain, _ = tiny_sets
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml", [f"data.root={plain.root}"])
    cfg.model.num_classes = len(LABEL_MAP)
    cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.test_short_side = 4, 2, 64
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    return ActionPredictor(model, cfg.data, LABEL_MAP, torch.device("cpu"), precision="fp32")


@pytest.mark.parametrize("degrees", DEGREES)
def test_predict_boxes_and_rendered_video_are_upright(tiny_sets, predictor, degrees, tmp_path):
    plain, _ = tiny_sets
    video = rotated_copy(Path(plain.root) / "videos" / "val_a.mp4", tmp_path / "phone.mp4", degrees)
    paths = OutputPaths.for_video(tmp_path / "out", "phone", render=True)
    options = PredictOptions(timestamps=[1.0, 2.0, 3.0], time_offset=0.0, batch_size=2, render=True,
                             render_threshold=0.0, progress=False)
    result = predict_video(video, predictor, BrightBoxDetector(), paths, options)
    assert result.keyframes == 3 and result.warnings == []
    records = read_jsonl(paths.jsonl)
    header, keyframes = records[0], [r for r in records if r["type"] == "keyframe"]
    with VideoReader(Path(plain.root) / "videos" / "val_a.mp4") as coded:
        first = upright(coded.read_clip(0.0, [0])[0].numpy(), degrees)
    assert (header["width"], header["height"], header["rotation"]) == (first.shape[1], first.shape[0], degrees)
    expected = person_box_upright(degrees)
    for keyframe in keyframes:
        (person,) = keyframe["persons"]
        np.testing.assert_allclose(person["box_norm"], expected, atol=2e-3)
    # The rendered video plays upright: its size is the upright one, and a frame before any box is the upright frame.
    with av.open(str(paths.video)) as rendered:
        frames = [f.to_ndarray(format="rgb24") for f in rendered.decode(video=0)]
    assert frames[0].shape == first.shape
    assert np.abs(frames[0].astype(int) - first).mean() < 6
    assert np.abs(frames[0].astype(int) - upright(first, 180)).mean() > 20  # (a wrong turn would not pass)
