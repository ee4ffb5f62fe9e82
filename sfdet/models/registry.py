"""Published AVA models: where they live, how they are built, and the local cache.

Each entry names a file on the PySlowFast / PyTorchVideo model zoos, its
format, the sfdet architecture that holds its weights, its label map and the
val frame-mAP its authors report. `fetch(name)` downloads the file once into
the torch hub cache (`torch.hub.get_dir()/checkpoints/<file>`), the same place
torch.hub and PyTorchVideo use, so a file already downloaded by them is reused.

Each entry also holds the clip recipe its model was trained and evaluated
with (`entry.recipe`, a `ClipRecipe`), so prediction rebuilds the exact
clips: all published models read RGB on [0, 1] normalised with mean
0.45 / std 0.225, a full frame with short side 256 at test time
(PySlowFast `DATA.TEST_CROP_SIZE: 256` in configs/AVA/c2/*.yaml; PyTorchVideo's
detection tutorial `crop_size=256`), the Slow pathway packed with
`linspace` (PySlowFast `pack_pathway_output`, PyTorchVideo `PackPathway`),
and AVA's frames, extracted at 30 fps (`ffmpeg -r 30`): other videos are
resampled to that grid (`video_resample_fps`).

The hosts publish no checksums. An entry may record a sha256 and/or size;
when it does, a cached or downloaded file that differs is rejected. Every
download is also checked against the server's Content-Length.
"""

from __future__ import annotations

import difflib
import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from sfdet.errors import CheckpointError
from sfdet.fileio import atomic_write
from sfdet.models.config import ModelConfig
from sfdet.models.recipe import ClipRecipe

PYSLOWFAST_AVA = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/ava"
PYTORCHVIDEO_AVA = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/ava"
AVA_80_CLASSES = "ava_action_list_v2.2.pbtxt"  # shipped in sfdet/resources

# Input facts shared by every published model (see the module docstring for the sources).
INPUT_MEAN = (0.45, 0.45, 0.45)  # RGB on [0, 1]; PySlowFast `DATA.MEAN`, PyTorchVideo tutorial `data_mean`
INPUT_STD = (0.225, 0.225, 0.225)
TEST_SHORT_SIDE = 256
SLOW_SAMPLING = "linspace"
AVA_FPS = 30.0  # AVA's frames: `ffmpeg -ss 900 -t 901 -i in.mp4 -r 30` (PySlowFast dataset/DATASET.md)


def ava_recipe(num_frames: int, sampling_rate: int, alpha: int | None) -> ClipRecipe:
    """The clips of a published AVA model: `num_frames` x `sampling_rate` on AVA's 30 fps frame grid, the
    Slow pathway packed with linspace, test short side 256, mean 0.45 / std 0.225. The time offset stays 0:
    prediction reads any video from its start (AVA's own 900 s offset is a property of the dataset)."""
    return ClipRecipe(num_frames=num_frames, sampling_rate=sampling_rate, alpha=alpha, slow_sampling=SLOW_SAMPLING,
                      test_short_side=TEST_SHORT_SIDE, mean=INPUT_MEAN, std=INPUT_STD, video_resample_fps=AVA_FPS)


# PySlowFast's R101 AVA models (configs/AVA/c2/SLOWFAST_*_R101_50_50*.yaml): lateral
# kernel 5, temporal kernels only in the first [3, 4, 6, 3] blocks of each stage,
# dot-product non-local blocks after res4 blocks 6, 13, 20 with (2, 2, 2) pooling.
_PYSLOWFAST_R101_NL = {
    "depth": 101,
    "fusion_kernel": 5,
    "num_block_temp_kernel": [3, 4, 6, 3],
    "nonlocal_res4": [6, 13, 20],
    "nonlocal_pool": [2, 2, 2],
    "nonlocal_instantiation": "dot_product",
    "roi_aligned": False,
}


@dataclass(frozen=True)
class PublishedModel:
    """One downloadable model; `model_config` holds the ModelConfig fields that differ from the defaults."""

    name: str
    url: str
    # Expected file format: "pytorchvideo" | "pyslowfast" | "caffe2" | "sfdet" | "auto"
    # (informative: loading always detects the format from the content).
    format: str
    model_config: dict
    recipe: ClipRecipe  # how its clips are made (frames x stride, alpha, Slow packing, short side, mean/std, fps grid)
    ava_version: str
    reported_map: float  # val frame-mAP@0.5 IoU, as reported by the authors
    pretrain: str
    label_map_file: str = AVA_80_CLASSES
    sha256: str | None = None
    size_bytes: int | None = None
    notes: str = ""

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def build_config(self) -> ModelConfig:
        return ModelConfig(**self.model_config)

    def label_map(self) -> dict[int, str]:
        return bundled_label_map(self.label_map_file)


def bundled_label_map(file_name: str = AVA_80_CLASSES) -> dict[int, str]:
    """A label map shipped in `sfdet/resources` (default: the 80 AVA v2.2 classes)."""
    from sfdet.data.ava import read_label_map

    with resources.as_file(resources.files("sfdet").joinpath("resources", file_name)) as path:
        return read_label_map(path)


MODELS: dict[str, PublishedModel] = {
    m.name: m
    for m in [
        PublishedModel(
            name="slowfast_r50_detection",
            url=f"{PYTORCHVIDEO_AVA}/SLOWFAST_8x8_R50_DETECTION.pyth",
            format="pytorchvideo",
            model_config={"arch": "slowfast", "depth": 50},
            recipe=ava_recipe(32, 2, alpha=4),
            ava_version="2.2",
            reported_map=24.67,
            pretrain="Kinetics-400",
        ),
        PublishedModel(
            name="slow_r50_detection",
            url=f"{PYTORCHVIDEO_AVA}/SLOW_4x16_R50_DETECTION.pyth",
            format="pytorchvideo",
            model_config={"arch": "slow", "depth": 50},
            recipe=ava_recipe(4, 16, alpha=None),
            ava_version="2.2",
            reported_map=19.5,
            pretrain="Kinetics-400",
        ),
        PublishedModel(
            name="SLOWFAST_32x2_R101_50_50",
            url=f"{PYSLOWFAST_AVA}/SLOWFAST_32x2_R101_50_50.pkl",
            format="pyslowfast",
            model_config={"arch": "slowfast", **_PYSLOWFAST_R101_NL},
            recipe=ava_recipe(32, 2, alpha=4),
            ava_version="2.2",
            reported_map=29.1,
            pretrain="Kinetics-600",
            notes="PyTorch format despite the .pkl name",
        ),
        PublishedModel(
            name="SLOWFAST_32x2_R101_50_50_v2.1",
            url=f"{PYSLOWFAST_AVA}/SLOWFAST_32x2_R101_50_50_v2.1.pkl",
            format="caffe2",
            model_config={"arch": "slowfast", **_PYSLOWFAST_R101_NL},
            recipe=ava_recipe(32, 2, alpha=4),
            ava_version="2.1",
            reported_map=28.2,
            pretrain="Kinetics-600",
        ),
        PublishedModel(
            name="SLOWFAST_64x2_R101_50_50",
            url=f"{PYSLOWFAST_AVA}/SLOWFAST_64x2_R101_50_50.pkl",
            format="auto",
            model_config={"arch": "slowfast", **_PYSLOWFAST_R101_NL},
            recipe=ava_recipe(64, 2, alpha=4),
            ava_version="2.2",
            reported_map=29.4,
            pretrain="Kinetics-600",
            notes="its PySlowFast config says caffe2; the format is detected from the content",
        ),
    ]
}


def get(name: str) -> PublishedModel:
    """The registry entry called `name`; CheckpointError naming the closest names otherwise."""
    if name in MODELS:
        return MODELS[name]
    close = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else f"; known models: {', '.join(MODELS)}"
    raise CheckpointError(f"'{name}' is neither a file nor a registered model{hint}")


def cache_path(entry: PublishedModel, cache_dir: str | Path | None = None) -> Path:
    """Where the file lives locally: `<torch hub dir>/checkpoints/<file>` unless `cache_dir` is given."""
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / entry.file_name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(path: Path, entry: PublishedModel) -> str | None:
    """What is wrong with `path` against the entry's recorded size / sha256, or None if nothing is."""
    size = path.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        return f"it has {size} bytes, expected {entry.size_bytes}"
    if entry.sha256 is not None:
        digest = _sha256(path)
        if digest != entry.sha256.lower():
            return f"its sha256 is {digest}, expected {entry.sha256}"
    return None


def download(url: str, destination: Path, opener: Callable = urllib.request.urlopen, progress: bool = True) -> None:
    """Stream `url` into `destination` (through `sfdet.fileio.atomic_write`, so an interrupted download
    leaves nothing behind).

    Offline or interrupted, one CheckpointError names the URL and where to put the file by hand.
    `opener(url)` must return a context manager with `.read(n)` (and optionally `.headers`).
    """
    try:
        with opener(url) as response, atomic_write(destination, "wb") as out:
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            expected = int(length) if length else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if expected is not None and received != expected:
                raise OSError(f"connection closed after {received} of {expected} bytes")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CheckpointError(
            f"cannot download {url} ({reason}); without network access, download it elsewhere "
            f"and put it at {destination}"
        ) from None


def fetch(
    name: str,
    cache_dir: str | Path | None = None,
    opener: Callable = urllib.request.urlopen,
    progress: bool = True,
) -> Path:
    """Local path of registered model `name`, downloading it first if it is not cached.

    `opener(url)` must return a context manager with `.read(n)` (and optionally
    `.headers`): urllib's `urlopen` by default; tests inject their own.
    """
    entry = get(name)
    path = cache_path(entry, cache_dir)
    if path.is_file():
        problem = file_problem(path, entry)
        if problem:
            raise CheckpointError(
                f"cached file {path} of '{name}' is damaged: {problem}; delete it to download it again"
            )
        return path
    download(entry.url, path, opener, progress)
    problem = file_problem(path, entry)
    if problem:
        path.unlink()
        raise CheckpointError(f"the download of {entry.url} is damaged: {problem}; try again later")
    return path
