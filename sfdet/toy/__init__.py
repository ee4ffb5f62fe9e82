"""The synthetic AVA-format dataset (`sfdet toy-data`): articulated stick people acting on moving scenes.

`generate` samples scenes, actions, annotations and proposals and writes the dataset;
`render` draws the pixels (pure geometry, no randomness). The toy set is written in the
AVA layout that `sfdet.data` reads, so this package sits above `sfdet.data` and below
everything that trains or evaluates on it.

    generate_toy_dataset(out_dir, *, seed=None, videos_train=None, videos_val=None, seconds=None,
                         fps=None, size=None, frames=None, overwrite=False, quick=False,
                         workers=None, progress=False) -> Path      # None: DEFAULTS (or QUICK_PRESET)
"""

from sfdet.toy.generate import (
    ALIASED_PAIRS,
    CLASS_ID,
    CLASSES,
    DEFAULTS,
    HORIZONTAL_FLIP_SWAPS,
    QUICK_PRESET,
    SPLITS,
    ToyClass,
    generate_toy_dataset,
    video_codec,
)

__all__ = [
    "ALIASED_PAIRS",
    "CLASS_ID",
    "CLASSES",
    "DEFAULTS",
    "HORIZONTAL_FLIP_SWAPS",
    "QUICK_PRESET",
    "SPLITS",
    "ToyClass",
    "generate_toy_dataset",
    "video_codec",
]
