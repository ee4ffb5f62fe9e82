"""The common model every annotation format is read into: videos holding person tracks of keyed boxes.

A `Track` is a list of `KeyShape`s (one per annotated frame of the source file, frames 0-based indices of the
video's decoded frames) and the rules that fill the frames between them, which differ per tool:

- `interpolate`: between two consecutive key shapes the box moves linearly (CVAT, Label Studio); else it is
  only known at the key shapes themselves (a tracks CSV);
- `KeyShape.shown`: the box is shown on its own frame (CVAT: not `outside`; Label Studio: always);
- `KeyShape.continues`: the frames after it, up to the next key shape, show the (interpolated) box
  (CVAT: not `outside`; Label Studio: `enabled`; a tracks CSV: never);
- `Track.end_frame`: after the last key shape, a continuing track holds its box up to this frame
  (CVAT: the task's stop frame; Label Studio: `framesCount`).

Actions at a frame are those of the key shape at or before it (CVAT copies mutable attributes forward).
Boxes are `boxes_norm` (x1, y1, x2, y2 in [0, 1]).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from sfdet.errors import DataError

Box = tuple[float, float, float, float]

# Normalised boxes may stray this far outside [0, 1] (rounded pixel coordinates) before they are clipped.
BOX_TOLERANCE = 1e-3


class AnnotationError(DataError):
    """A malformed annotation export: one line naming the file and the element or line."""


@dataclass
class KeyShape:
    frame: int
    box: Box
    actions: frozenset[str] = frozenset()
    shown: bool = True
    continues: bool = True


@dataclass
class Track:
    person_id: int
    shapes: list[KeyShape] = field(default_factory=list)
    interpolate: bool = True
    end_frame: int | None = None
    where: str = ""  # "track 12" / "region abc": for messages
    # Actions over frame ranges independent of the key shapes (Label Studio timeline labels): (first, last, names).
    timeline: list[tuple[int, int, frozenset[str]]] = field(default_factory=list)

    def finish(self) -> None:
        self.shapes.sort(key=lambda s: s.frame)
        self._frames = [s.frame for s in self.shapes]

    def at(self, frame: int) -> tuple[Box, frozenset[str]] | None:
        """The box and actions shown on `frame`, or None where the person is not annotated."""
        found = self.at_firm(frame)
        return None if found is None else found[:2]

    def at_firm(self, frame: int) -> tuple[Box, frozenset[str], bool] | None:
        """`at`, and whether the box is firm: a shape's own box, or moving toward a shown shape (not toward an
        `outside` one, as CVAT's boxes of a track that ends do). Of several tracks of one person, firm boxes win."""
        found = self._at(frame)
        if found is None or not self.timeline:
            return found
        extra = [names for first, last, names in self.timeline if first <= frame <= last]
        return found[0], found[1].union(*extra), found[2]

    def _at(self, frame: int) -> tuple[Box, frozenset[str], bool] | None:
        frames = getattr(self, "_frames", None)
        if frames is None:
            self.finish()
            frames = self._frames
        i = bisect.bisect_right(frames, frame) - 1
        if i < 0:
            return None
        shape = self.shapes[i]
        if shape.frame == frame:
            return (shape.box, shape.actions, True) if shape.shown else None
        if not shape.continues:
            return None
        if i + 1 < len(self.shapes):
            following = self.shapes[i + 1]
            if not self.interpolate:
                return None
            w = (frame - shape.frame) / (following.frame - shape.frame)
            box = tuple(a + (b - a) * w for a, b in zip(shape.box, following.box))
            return box, shape.actions, following.shown
        if self.end_frame is not None and frame <= self.end_frame:
            return shape.box, shape.actions, True
        return None


@dataclass
class VideoAnnotations:
    """The tracks of one video from one source file (a CVAT task or job, a Label Studio task, a CSV's video)."""

    name: str  # how the video is found: a file name or stem
    source: str  # the annotation file, for messages
    tracks: list[Track] = field(default_factory=list)
    first_frame: int = 0
    last_frame: int | None = None  # None: the video's last frame
    frames: set[int] | None = None  # annotated frames when not every frame of [first, last] is (images, CSV)
    times: dict[int, float] | None = None  # CSV rows given by time: frame -> None, resolved once the video is read
    where: str = ""  # "task 3": for messages


@dataclass
class Skipped:
    """What an importer left out and why: `reason -> count`."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    def lines(self) -> list[str]:
        return [f"{n} {reason}" for reason, n in sorted(self.counts.items())]


def check_box(box: Box, where: str, names=("xtl", "ytl", "xbr", "ybr")) -> Box:
    """Validate a normalised box: finite, x1 < x2, y1 < y2, inside the frame (clipped within tolerance)."""
    x1, y1, x2, y2 = box
    for value, name in zip(box, names):
        if value != value or value in (float("inf"), float("-inf")):
            raise AnnotationError(f"{where}: {name} is not a finite number")
    if not x2 > x1:
        raise AnnotationError(f"{where}: {names[2]} <= {names[0]} ({_fmt(box[2])} <= {_fmt(box[0])})")
    if not y2 > y1:
        raise AnnotationError(f"{where}: {names[3]} <= {names[1]} ({_fmt(box[3])} <= {_fmt(box[1])})")
    if min(box) < -BOX_TOLERANCE or max(box) > 1 + BOX_TOLERANCE:
        raise AnnotationError(f"{where}: box {', '.join(_fmt(v) for v in box)} lies outside the frame")
    return tuple(min(max(v, 0.0), 1.0) for v in box)


def _fmt(value: float) -> str:
    return f"{value:g}"


def split_action_names(value: str) -> list[str]:
    """An attribute value holding one or several action names: `a`, `a,b`, `a|b`, `a;b`, one per line."""
    for sep in ("\n", "|", ";"):
        value = value.replace(sep, ",")
    return [name.strip() for name in value.split(",") if name.strip() and name.strip().lower() not in ("none", "-")]
