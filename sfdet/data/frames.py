"""Clips from extracted frames in AVA's layout: `FRAMES_DIR/<video_id>/<video_id>_000001.jpg` (1-based).

Frame `i` (0-based, file `i + 1`) is shown at `i / fps`, `fps` being the declared extraction
rate (AVA: 30 frames per second from second 900, hence `data.time_offset: 900`). The clip
rule is the one of `video.py` (the centre frame: `sfdet.data.timing.grid_centre`), so PNG
frames extracted from a video give the same tensors as decoding the video.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from sfdet.data.clip_sampling import clamped_indices
from sfdet.data.timing import check_keyframe_time, grid_centre
from sfdet.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def frame_path(frames_dir: str | Path, video_id: str, index: int, ext: str = ".jpg") -> Path:
    """Path of 0-based frame `index` of `video_id` in AVA's layout."""
    return Path(frames_dir) / video_id / f"{video_id}_{index + 1:06d}{ext}"


class FrameFolder:
    """The extracted frames of one video; lists its folder on first use.

    `read_clip(t, offsets)` -> `(T, H, W, 3)` uint8 RGB tensor, `T = len(offsets)`.
    """

    def __init__(self, frames_dir: str | Path, video_id: str, fps: float):
        self.directory = Path(frames_dir) / video_id
        self.video_id = video_id
        self.fps = float(fps)
        self._paths: list[Path] | None = None

    @property
    def paths(self) -> list[Path]:
        """Frame files in order; the numbering must run 1..N without gaps."""
        if self._paths is None:
            if not self.directory.is_dir():
                raise DataError(f"{self.directory}: no such frames folder")
            pattern = re.compile(re.escape(self.video_id) + r"_(\d+)(\.\w+)$")
            numbered = {}
            for path in self.directory.iterdir():
                match = pattern.match(path.name)
                if match and match.group(2).lower() in IMAGE_EXTENSIONS:
                    numbered[int(match.group(1))] = path
            if not numbered:
                raise DataError(f"{self.directory}: no frames named {self.video_id}_000001.jpg (or .png)")
            missing = next((i for i in range(1, len(numbered) + 1) if i not in numbered), None)
            if missing is not None:
                raise DataError(f"{self.directory}: frame {missing} of {max(numbered)} is missing; re-extract the frames")
            self._paths = [numbered[i] for i in range(1, len(numbered) + 1)]
        return self._paths

    def __len__(self) -> int:
        return len(self.paths)

    def read_clip(self, t: float, offsets: Sequence[int]) -> torch.Tensor:
        """Frames `centre + offsets` (clamped), centre = the frame nearest to `t` seconds. `(T, H, W, 3)` uint8."""
        paths = self.paths
        check_keyframe_time(t, (len(paths) - 1) / self.fps, 1.0 / self.fps, str(self.directory))
        centre = min(grid_centre(t, self.fps), len(paths) - 1)  # nearest existing frame
        indices = clamped_indices(centre, offsets, len(paths))
        images = {i: read_image(paths[i]) for i in set(indices)}
        return torch.from_numpy(np.stack([images[i] for i in indices]))

    def close(self) -> None:
        """Nothing stays open; here so both pixel sources can be used alike."""


def read_image(path: Path) -> np.ndarray:
    """JPEG/PNG file -> `(H, W, 3)` uint8 RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); re-extract it") from None
