"""The clip recipe: how a model's test clips are made, stored with every model.

    recipe = ClipRecipe(num_frames=32, sampling_rate=2, alpha=4, slow_sampling="linspace",
                        video_resample_fps=30.0)
    recipe.to_dict() -> plain dict (what an sfdet checkpoint stores under "recipe")
    ClipRecipe.from_dict(d)                  # unknown keys or bad values: ValueError naming the key
    ClipRecipe.from_data(data_section, alpha)  # a DataConfig, or a `data:` dict of a stored training config
    recipe.apply_to(data_cfg) -> data_cfg with the recipe's fields replaced (a new dataclass)

Every field except `alpha` is the `DataConfig` field of the same name (its defaults are DataConfig's),
so the predict layer applies a recipe onto a DataConfig without this module importing `sfdet.data`.
`alpha` is the model's Fast/Slow frame ratio (None for a Slow-only model): how the Fast clip is
split into pathways, recorded so that the recipe alone says which clips the model reads.

Where recipes come from (see `sfdet.models.checkpoint.load_checkpoint`): `sfdet train` checkpoints
and `sfdet convert` outputs store one; registry entries hold one (`PublishedModel.recipe`);
a PySlowFast file's `cfg` DATA section gives one; older sfdet checkpoints derive one from their
stored training config.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

SLOW_SAMPLINGS = ("stride", "linspace")


@dataclass(frozen=True)
class ClipRecipe:
    num_frames: int = 32  # frames of the densest pathway (Fast, or Slow for a Slow-only model)
    sampling_rate: int = 2  # raw frames between two of those frames
    alpha: int | None = 4  # Fast/Slow frame-rate ratio; None: a Slow-only model
    slow_sampling: str = "stride"  # "stride": every alpha-th Fast frame | "linspace": PySlowFast/PyTorchVideo packing
    test_short_side: int = 256
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)  # RGB on [0, 1]
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    video_resample_fps: float | None = None  # clips count the frames of a k / fps grid (AVA: 30); None: decoded frames
    time_offset: float = 0.0  # video time of a keyframe = timestamp - time_offset (AVA: 900)

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"clip recipe '{key}': {why}, got {getattr(self, key)!r}")

        for key in ("num_frames", "sampling_rate", "test_short_side"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(key, "expected an integer >= 1")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, int)
                                       or self.alpha < 1):
            raise bad("alpha", "expected an integer >= 1 or null (Slow-only)")
        if self.slow_sampling not in SLOW_SAMPLINGS:
            raise bad("slow_sampling", f"expected one of {', '.join(SLOW_SAMPLINGS)}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if (isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != 3
                    or not all(_is_number(v) for v in values)):
                raise bad(key, "expected 3 numbers (R, G, B)")
            object.__setattr__(self, key, tuple(float(v) for v in values))
        if any(s <= 0 for s in self.std):
            raise bad("std", "values must be > 0")
        if self.video_resample_fps is not None:
            if not _is_number(self.video_resample_fps) or not self.video_resample_fps > 0:
                raise bad("video_resample_fps", "expected a rate > 0 or null")
            object.__setattr__(self, "video_resample_fps", float(self.video_resample_fps))
        if not _is_number(self.time_offset) or not math.isfinite(self.time_offset):
            raise bad("time_offset", "expected a number")
        object.__setattr__(self, "time_offset", float(self.time_offset))

    # ------------------------------------------------------------------
    # Plain-dict form (checkpoints)
    # ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClipRecipe:
        """The inverse of `to_dict`; missing keys take the defaults. ValueError names an unknown or bad key."""
        if not isinstance(values, Mapping):
            raise ValueError(f"expected a mapping, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ValueError(f"unknown clip recipe key '{unknown[0]}'")
        return cls(**values)

    @classmethod
    def from_data(cls, data: Any, alpha: int | None) -> ClipRecipe:
        """The recipe of a `data:` section: a DataConfig, or a plain dict (a stored training config).

        Only the recipe's fields are read (a dict may hold every other DataConfig key); missing
        ones take the defaults, which are DataConfig's. `alpha`: the model's (None for Slow-only).
        """
        names = [f.name for f in dataclasses.fields(cls) if f.name != "alpha"]
        if isinstance(data, Mapping):
            values = {name: data[name] for name in names if name in data}
        else:
            values = {name: getattr(data, name) for name in names if hasattr(data, name)}
        return cls(alpha=alpha, **values)

    # ------------------------------------------------------------------
    # Use
    # ------------------------------------------------------------------
    def data_fields(self) -> dict:
        """The recipe as `DataConfig` fields (everything but `alpha`, which is the model's)."""
        fields = self.to_dict()
        fields.pop("alpha")
        return fields

    def apply_to(self, data_cfg: Any) -> Any:
        """A copy of `data_cfg` (a DataConfig) whose clip fields are the recipe's."""
        return dataclasses.replace(data_cfg, **self.data_fields())

    def describe(self) -> str:
        """One phrase: '32x2, alpha 4, linspace Slow frames, short side 256, mean 0.45, std 0.225, 30 fps grid'."""
        parts = [f"{self.num_frames}x{self.sampling_rate}"]
        if self.alpha is None:
            parts.append("Slow-only")
        else:
            parts += [f"alpha {self.alpha}", f"{self.slow_sampling} Slow frames"]
        parts += [f"short side {self.test_short_side}", f"mean {_triple(self.mean)}", f"std {_triple(self.std)}"]
        if self.video_resample_fps is not None:
            parts.append(f"{self.video_resample_fps:g} fps grid")
        if self.time_offset:
            parts.append(f"time offset {self.time_offset:g}")
        return ", ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _triple(values: tuple[float, float, float]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"
