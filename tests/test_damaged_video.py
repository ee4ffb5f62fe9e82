"""Damaged AVI files (cut in half, garbage in the middle) are not truncated silently: the stream's
`DecodeReport`, `sfdet predict`'s warning lines and JSONL `end` record, and `sfdet data check` say so.

An AVI cut in half decodes without a single decoder error: only the header's frame count tells that
half the video is gone. Garbage in the middle loses frames and gives frames decoded from damaged data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from sfdet import cli
from sfdet.config import load_config
from sfdet.data.timing import SHORTFALL_FRAMES, DecodeReport, VideoFile
from sfdet.data.video import write_video
from sfdet.models import build_model
from sfdet.persons import PersonDetector
from sfdet.predict.actions import ActionPredictor
from sfdet.predict.pipeline import PredictOptions, predict_videos
from sfdet.predict.stream import decode_frames
from sfdet.predict.writers import read_jsonl
from test_dataset import FPS, LABEL_MAP, _frames, make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
FRAMES = 200  # 8 s at 25 fps


def write_avi(path: Path, codec: str, frames: int = FRAMES, fps: int = 25) -> Path:
    """An AVI (mpeg4 as Xvid's vtest.avi, or mjpeg) of frames that change every frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = 96, 64
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 200, (64, 96, 3), dtype=np.uint8)
        for i in range(frames):
            image = np.roll(base, 2 * i, axis=1)
            image[20:50, 30:60] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def garbage_in_the_middle(source: Path, target: Path, size: int = 4000) -> Path:
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle:middle + size] = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def avis(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avi")
    out = {}
    for codec in ("mpeg4", "mjpeg"):
        intact = write_avi(folder / f"{codec}.avi", codec)
        out[codec] = {
            "intact": intact,
            "half": cut_in_half(intact, folder / f"{codec}_half.avi"),
            "garbage": garbage_in_the_middle(intact, folder / f"{codec}_garbage.avi"),
        }
    return out


@pytest.mark.parametrize("codec", ["mpeg4", "mjpeg"])
def test_intact_avi_gives_no_warning(avis, codec):
    report = DecodeReport()
    assert len(list(decode_frames(avis[codec]["intact"], report))) == FRAMES
    assert report.header_frames == FRAMES and report.warnings(avis[codec]["intact"]) == []


@pytest.mark.parametrize("codec", ["mpeg4", "mjpeg"])
def test_avi_cut_in_half_warns_with_the_frames_decoded_and_listed(avis, codec):
    half = avis[codec]["half"]
    report = DecodeReport()
    frames = list(decode_frames(half, report))
    assert FRAMES * 0.3 < len(frames) < FRAMES * 0.55
    warnings = report.warnings(half)
    line = next(w for w in warnings if "frames its header lists" in w)
    assert line.startswith(f"{half}: decoded {len(frames)} of the {FRAMES} frames its header lists, the last at ")
    assert line.endswith("the file is cut short or damaged; nothing after that is predicted")


@pytest.mark.parametrize("codec", ["mpeg4", "mjpeg"])
def test_avi_with_garbage_in_the_middle_warns(avis, codec):
    damaged = avis[codec]["garbage"]
    report = DecodeReport()
    frames = list(decode_frames(damaged, report))
    assert len(frames) < FRAMES
    warnings = report.warnings(damaged)
    assert warnings and all(w.startswith(f"{damaged}: ") for w in warnings)
    # What went wrong is named: lost frames, and/or damaged packets skipped, and/or frames decoded from damaged data.
    assert report.shortfall() or report.bad_packets or report.corrupt_frames
    if FRAMES - len(frames) > SHORTFALL_FRAMES:
        assert any(f"decoded {len(frames)} of the {FRAMES} frames" in w for w in warnings)


def test_shortfall_margin():
    assert DecodeReport(frames=198, header_frames=200).shortfall() == 0  # 2 frames: within the margin
    assert DecodeReport(frames=197, header_frames=200).shortfall() == 3
    assert DecodeReport(frames=990, header_frames=1000).shortfall() == 0  # 1 %
    assert DecodeReport(frames=989, header_frames=1000).shortfall() == 11
    assert DecodeReport(frames=50, header_frames=0).shortfall() == 0  # the header does not say
    assert DecodeReport(frames=60, header_frames=40).shortfall() == 0  # more than listed: not damage


class FixedBox(PersonDetector):
    name = "fixed"

    def _detect(self, frame_rgb, video_id, timestamp):
        height, width = frame_rgb.shape[:2]
        return np.array([[0.2 * width, 0.2 * height, 0.7 * width, 0.9 * height]], np.float32), np.array([0.9])


@pytest.fixture(scope="module")
def predictor():
    cfg = load_config(REPO / "configs/toy/slowfast_tiny.yaml")
    cfg.model.num_classes = len(LABEL_MAP)
    cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.test_short_side = 4, 2, 64
    torch.manual_seed(0)
    return ActionPredictor(build_model(cfg.model).eval(), cfg.data, LABEL_MAP, torch.device("cpu"), precision="fp32")


def test_predict_warns_on_damaged_avis_in_its_output_and_end_record(avis, predictor, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("intact", "half", "garbage"):
        shutil.copyfile(avis["mpeg4"][name], videos / f"{name}.avi")
    out = tmp_path / "out"
    results = predict_videos([videos], predictor, FixedBox(), PredictOptions(batch_size=4, progress=False), out)
    err = capsys.readouterr().err
    assert all(r.error is None for r in results)
    lines = [line for line in err.splitlines() if line.startswith("sfdet predict: warning: ")]
    half_lines = [line for line in lines if f"{videos / 'half.avi'}: decoded " in line]
    assert len(half_lines) == 1 and f"of the {FRAMES} frames its header lists" in half_lines[0]
    assert any(str(videos / "garbage.avi") in line for line in lines)
    assert not any(str(videos / "intact.avi") in line for line in lines)

    end = {name: read_jsonl(out / f"{name}.jsonl")[-1] for name in ("intact", "half", "garbage")}
    assert end["intact"]["warnings"] == [] and end["intact"]["frames_decoded"] == FRAMES
    assert end["half"]["frames_decoded"] < FRAMES * 0.55
    assert [w for w in end["half"]["warnings"] if "frames its header lists" in w] == \
        [half_lines[0].removeprefix("sfdet predict: warning: ")]
    assert end["garbage"]["warnings"] and end["garbage"]["frames_decoded"] < FRAMES
    # Only the seconds that were decoded are predicted: no keyframe past the half video's last frame.
    keyframes = [r for r in read_jsonl(out / "half.jsonl") if r["type"] == "keyframe"]
    assert keyframes and max(k["timestamp"] for k in keyframes) <= end["half"]["frames_decoded"] / 25 + 1


def test_readable_end_finds_a_cut_file_without_decoding_it(avis, tmp_path):
    with VideoFile(avis["mpeg4"]["intact"]) as file:
        end = file.readable_end()
        assert end == pytest.approx(FRAMES / 25) and file.info.missing_tail(end) == 0
    with VideoFile(avis["mpeg4"]["half"]) as file:
        end = file.readable_end()
        assert file.info.header_end == pytest.approx(FRAMES / 25)
        assert 3 < end < 4.5 and file.info.missing_tail(end) == pytest.approx(FRAMES / 25 - end)


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_data_check_reports_a_video_cut_short(tmp_path, capsys, kind):
    cfg = make_tiny_dataset(tmp_path / "tiny")
    videos = Path(cfg.root) / "videos"
    (videos / "val_a.mp4").unlink()
    frames = _frames(2)  # 4 s at 15 fps, GT at 1, 2, 3 s
    if kind == "mp4":  # the index at the front: the cut file still opens and lists every frame
        intact = tmp_path / "intact.mp4"
        write_video(intact, frames, FPS, keyframe_interval=8, options={"movflags": "faststart"})
    else:
        intact = tmp_path / "intact.avi"
        with av.open(str(intact), "w") as container:
            stream = container.add_stream("mpeg4", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    data = intact.read_bytes()
    (videos / f"val_a.{kind}").write_bytes(data[: int(len(data) * 0.45)])

    assert cli.main(["data", "check", str(cfg.root)]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert "videos cut short or damaged: 1 (keyframes past the readable end cannot be read; re-encode or replace them)" \
        in lines
    (line,) = [line for line in lines if line.startswith("cut short: ")]
    assert line.startswith("cut short: val_a (readable to ") and line.endswith(", the header says 4.00 s)")
    readable = float(line.split("readable to ")[1].split(" s")[0])
    assert (1.0 if kind == "mp4" else 0.0) < readable < 2.5  # a cut AVI without its index reads less
    # The val keyframes past the readable end are counted as outside the video.
    assert any(line.startswith("keyframes outside their video's duration: ") for line in lines)
    assert not any("keyframes with GT and a readable video: 3 of 3" == line for line in lines)
