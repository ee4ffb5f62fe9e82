"""`sfdet data import`: annotation exports -> a complete AVA-format dataset.

Steps: read every source into tracks (`cvat`, `labelstudio`, `tracks_csv`); sample keyframes at
`keyframe_rate` per second on the video's own frame times (keyframe `t = k / rate`; its centre frame, the
frame nearest to `t` as the Dataset picks it, must be an annotated frame; the boxes are the tracks' boxes on
that frame); name the actions with ids (`--label-map`, else 1..N in order of appearance); split by video
(`val_fraction`, `seed`); write everything into a temporary folder beside `out` and rename it at the end, so
a failure leaves nothing behind.

Layout written (what `sfdet data check` and `sfdet train` read with `--config OUT/data.yaml`):
    annotations/label_map.pbtxt, train.csv, val.csv, {train,val}_excluded_timestamps.csv (empty)
    videos/<video_id><ext>   links to the annotated videos (copies with `copy_videos`)
    data.yaml                `data:` section: root, no proposals yet (GT boxes; val on GT boxes)
    import.json              what was imported, counts and what was skipped
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from sfdet.annotations.cvat import ActionSpec, read_cvat
from sfdet.annotations.labelstudio import read_labelstudio
from sfdet.annotations.model import AnnotationError, Skipped, VideoAnnotations
from sfdet.annotations.tracks_csv import read_tracks_csv
from sfdet.annotations.videos import VideoResolver, VideoSource
from sfdet.data import ava
from sfdet.errors import DataError

FORMATS = ("cvat-video", "cvat-images", "labelstudio", "tracks-csv")
MARKER = "import.json"


@dataclass
class ImportResult:
    out: Path
    label_map: dict[int, str]
    gt: dict[str, pd.DataFrame]  # split -> GT rows
    videos: dict[str, list[str]]  # split -> video ids
    keyframes: int = 0
    empty_keyframes: int = 0
    skipped: Skipped = field(default_factory=Skipped)

    def summary_lines(self) -> list[str]:
        lines = [f"imported into {self.out}:"]
        for split in ("train", "val"):
            gt = self.gt[split]
            persons = gt.drop_duplicates(["video_id", "timestamp", "person_id"])
            lines.append(f"  {split}: {len(self.videos[split])} videos, {gt[['video_id', 'timestamp']].drop_duplicates().shape[0]}"
                         f" keyframes with persons, {len(persons)} person boxes, "
                         f"{persons[['video_id', 'person_id']].drop_duplicates().shape[0]} persons")
        lines.append(f"  keyframes sampled: {self.keyframes} ({self.empty_keyframes} with no annotated person: "
                     "not in the GT CSVs)")
        lines.append("  actions (train / val boxes):")
        counts = {s: self.gt[s].groupby("action_id").size() for s in ("train", "val")}
        for class_id, name in self.label_map.items():
            lines.append(f"    {class_id:4d} {name[:40]:40s} {int(counts['train'].get(class_id, 0)):6d} "
                         f"{int(counts['val'].get(class_id, 0)):6d}")
        skipped = self.skipped.lines()
        lines.append("  skipped: " + ("nothing" if not skipped else ""))
        lines += [f"    {line}" for line in skipped]
        lines.append(f"next: sfdet data check --config {self.out / 'data.yaml'}")
        return lines


def read_sources(fmt: str, sources: list, videos: VideoResolver, actions: ActionSpec, skipped: Skipped,
                 label_map: dict[int, str] | None = None) -> list[VideoAnnotations]:
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = []
    for source in sources:
        source = Path(source)
        if not source.is_file():
            raise AnnotationError(f"{source}: no such file")
        if fmt in ("cvat-video", "cvat-images"):
            out += read_cvat(source, actions, videos, skipped, flavour=fmt.split("-")[1])
        elif fmt == "labelstudio":
            out += read_labelstudio(source, actions, videos, skipped)
        else:
            out += read_tracks_csv(source, actions, videos, skipped, label_map)
    return out


def sample_keyframes(video: VideoSource, annotations: list[VideoAnnotations], rate: float) -> list[tuple[float, int]]:
    """(timestamp, centre frame) of the keyframes `k / rate` whose centre frame is annotated by some source."""
    times = video.times
    ranges, sets = [], set()
    for a in annotations:
        if a.frames is not None:
            sets |= a.frames
        else:
            last = video.num_frames - 1 if a.last_frame is None else min(a.last_frame, video.num_frames - 1)
            if a.first_frame <= last:
                ranges.append((a.first_frame, last))
    candidates = set()
    for first, last in ranges:
        k0 = math.ceil(times[first] * rate - 1e-9)
        k1 = math.floor(times[last] * rate + 1e-9)
        candidates.update(range(k0, k1 + 1))
    for frame in sets:
        candidates.add(round(times[frame] * rate))
    period = (times[-1] - times[0]) / max(len(times) - 1, 1) if len(times) > 1 else 1.0
    out = []
    for k in sorted(candidates):
        t = k / rate
        if t < 0:
            continue
        centre = video.frame_of_time(t)
        if abs(times[centre] - t) > period:
            continue  # a gap in the video's frames
        if centre in sets or any(first <= centre <= last for first, last in ranges):
            out.append((t, centre))
    return out


def dense_keyframes(video: VideoSource, annotations: list[VideoAnnotations]) -> list[tuple[float, int]]:
    """(timestamp, frame) of every annotated frame (sources that list their frames): a keyframe at each frame's time."""
    frames = set()
    for a in annotations:
        if a.frames is None:
            raise AnnotationError(f"{a.source}: dense keyframes need the annotated frames listed")
        frames |= {f for f in a.frames if 0 <= f < video.num_frames}
    return [(video.times[f], f) for f in sorted(frames)]


def build_gt(videos: dict[Path, tuple[VideoSource, list[VideoAnnotations]]], rate: float | None, result: ImportResult,
             names: dict[str, int]) -> pd.DataFrame:
    """GT rows of the keyframes `k / rate` (`sample_keyframes`), or of every annotated frame (`rate` None:
    `dense_keyframes`): the tracks' boxes on each keyframe's centre frame, one row per action."""
    rows = []
    for video, annotations in videos.values():
        keyframes = dense_keyframes(video, annotations) if rate is None else sample_keyframes(video, annotations, rate)
        for t, centre in keyframes:
            result.keyframes += 1
            persons: dict[int, list] = {}  # person -> [box, actions, firm]
            for a in annotations:
                for track in a.tracks:
                    found = track.at_firm(centre)
                    if found is None:
                        continue
                    box, actions, firm = found
                    if track.person_id not in persons:
                        persons[track.person_id] = [box, set(actions), firm]
                        continue
                    entry = persons[track.person_id]
                    entry[1].update(actions)
                    if firm and not entry[2]:
                        entry[0], entry[2] = box, True
            any_row = False
            for person, (box, actions, _) in sorted(persons.items()):
                if not actions:
                    result.skipped.add("person boxes at keyframes with no action (AVA rows need one)")
                    continue
                for name in sorted(actions, key=lambda n: names[n]):
                    rows.append((video.video_id, t, *box, names[name], person))
                    any_row = True
            if not any_row:
                result.empty_keyframes += 1
    return pd.DataFrame(rows, columns=ava.GT_COLUMNS)


def _label_map(annotations: list[VideoAnnotations], label_map: dict[int, str] | None) -> tuple[dict[int, str], dict[str, int]]:
    seen: dict[str, str] = {}
    for a in annotations:
        for track in a.tracks:
            for shape in track.shapes:
                for name in sorted(shape.actions):
                    seen.setdefault(name, f"{a.source}: {a.where + ', ' if a.where else ''}{track.where}, frame {shape.frame}")
            for _, _, names in track.timeline:
                for name in sorted(names):
                    seen.setdefault(name, f"{a.source}: {a.where}, timeline")
    if label_map is None:
        label_map = {i + 1: name for i, name in enumerate(seen)}
        return label_map, {name: i for i, name in label_map.items()}
    ids = {name: i for i, name in label_map.items()}
    for name, where in seen.items():
        if name not in ids:
            raise AnnotationError(f"{where}: unknown label {name!r}: not in the label map ({len(ids)} classes)")
    return dict(label_map), ids


def split_videos(video_ids: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    video_ids = sorted(video_ids)
    n_val = int(round(val_fraction * len(video_ids)))
    if val_fraction > 0 and len(video_ids) > 1:
        n_val = min(max(n_val, 1), len(video_ids) - 1)
    order = np.random.default_rng(seed).permutation(len(video_ids))
    val = sorted(video_ids[i] for i in order[:n_val])
    return {"train": [v for v in video_ids if v not in val], "val": val}


def _data_yaml(out: Path, frames_fps: float | None = None) -> str:
    """`data.yaml` of a dataset at `out`: decoded videos (`videos/`), or extracted frames at `frames_fps`."""
    source = (f"source: frames\n  frames_dir: frames\n  fps: {frames_fps!r}" if frames_fps is not None
              else "source: video\n  video_dir: videos")
    return f"""# Written by `sfdet data import`: the `data:` section of this dataset. Use it as
#   sfdet data check --config {out}/data.yaml
# and as the `data:` part of a training config (`_base_` it, or copy the keys). There are no person
# proposals yet: training uses the GT boxes and validation scores the GT boxes (val_boxes: gt). After
# `sfdet proposals` set train_proposals / val_proposals and val_boxes: proposals for the AVA protocol.
data:
  root: {json.dumps(str(out))}
  label_map: annotations/label_map.pbtxt
  train_gt: annotations/train.csv
  val_gt: annotations/val.csv
  train_exclusions: annotations/train_excluded_timestamps.csv
  val_exclusions: annotations/val_excluded_timestamps.csv
  train_proposals: ""
  val_proposals: ""
  val_boxes: gt
  {source}
  time_offset: 0
"""


def import_annotations(fmt: str, sources: list, videos_dir, out, *, actions_from: str = "labels",
                       keyframe_rate: float = 1.0, val_fraction: float = 0.2, seed: int = 0,
                       label_map_path=None, overwrite: bool = False, copy_videos: bool = False,
                       print_line: Callable[[str], None] | None = print) -> ImportResult:
    """Read `sources`, write the dataset to `out` (all or nothing) and print the summary."""
    out = Path(out).expanduser().absolute()
    if not keyframe_rate > 0:
        raise AnnotationError(f"--keyframe-rate must be > 0, got {keyframe_rate}")
    if not 0 <= val_fraction < 1:
        raise AnnotationError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    check_out(out, overwrite)
    actions = ActionSpec.parse(actions_from)
    label_map = ava.read_label_map(label_map_path) if label_map_path else None
    resolver = VideoResolver(videos_dir)
    skipped = Skipped()
    annotations = read_sources(fmt, sources, resolver, actions, skipped, label_map)
    label_map, names = _label_map(annotations, label_map)
    if not label_map:
        raise AnnotationError("no action labels in " + ", ".join(str(s) for s in sources) +
                              (f" (--actions-from {actions_from}: is that how the actions were annotated?)"))

    by_video: dict[Path, tuple[VideoSource, list[VideoAnnotations]]] = {}
    for a in annotations:
        video = resolver.get(a.source, a.name)
        by_video.setdefault(video.path, (video, []))[1].append(a)
    ids = Counter(v.video_id for v, _ in by_video.values())
    clash = [i for i, n in ids.items() if n > 1]
    if clash:
        raise AnnotationError(f"two videos of {resolver.directory} have the id {clash[0]!r} (same stem); rename one")
    splits = split_videos(list(ids), val_fraction, seed)
    result = ImportResult(out, label_map, {}, splits, skipped=skipped)
    gt = build_gt(by_video, keyframe_rate, result, names)
    if gt.empty:
        raise AnnotationError("no keyframe has an annotated person with an action; check --actions-from, "
                              "--keyframe-rate and that the annotations cover the videos")
    for split in ("train", "val"):
        result.gt[split] = gt[gt["video_id"].isin(splits[split])].reset_index(drop=True)

    def media(tmp: Path) -> None:
        (tmp / "videos").mkdir()
        for video, _ in by_video.values():
            target = tmp / "videos" / f"{video.video_id}{video.path.suffix}"
            if copy_videos:
                shutil.copy2(video.path, target)
            else:
                os.symlink(video.path.absolute(), target)

    record = {"format": fmt, "sources": [str(Path(s).absolute()) for s in sources],
              "videos_dir": str(Path(videos_dir).absolute()), "actions_from": actions_from,
              "keyframe_rate": keyframe_rate, "val_fraction": val_fraction, "seed": seed,
              "splits": splits, "keyframes": result.keyframes, "empty_keyframes": result.empty_keyframes,
              "skipped": dict(skipped.counts)}
    write_dataset(out, result, media, _data_yaml(out), record)
    if print_line is not None:
        for line in result.summary_lines():
            print_line(line)
    return result


def check_out(out: Path, overwrite: bool) -> None:
    """`out` must be new or empty, or (with `overwrite`) a dataset an import wrote."""
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not overwrite:
            raise AnnotationError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
        if not (out / MARKER).is_file():
            raise AnnotationError(f"{out}: --overwrite replaces only a dataset `sfdet data import` wrote "
                                  f"(with {MARKER}); choose another --out")


def write_dataset(out: Path, result: ImportResult, media: Callable[[Path], None], data_yaml: str, record: dict,
                  extra: Callable[[Path], None] | None = None) -> None:
    """Write the dataset into a temporary folder beside `out`, then rename it (all or nothing): the label map,
    the GT CSVs and empty exclusions of both splits, `media(tmp)` (videos or frames), `extra(tmp)` (more
    annotation files), data.yaml and the import record."""
    tmp = out.parent / f".{out.name}.import-tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        annotations_dir = tmp / "annotations"
        annotations_dir.mkdir(parents=True)
        ava.write_label_map(annotations_dir / "label_map.pbtxt", result.label_map)
        empty = pd.DataFrame(columns=ava.EXCLUSION_COLUMNS)
        for split in ("train", "val"):
            ava.write_gt_csv(annotations_dir / f"{split}.csv", result.gt[split])
            ava.write_exclusions(annotations_dir / f"{split}_excluded_timestamps.csv", empty)
        media(tmp)
        if extra is not None:
            extra(tmp)
        (tmp / "data.yaml").write_text(data_yaml, encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if (out / MARKER).is_file() else out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        raise DataError(f"{out}: cannot write the dataset ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
