"""Tube benchmarks -> AVA-format datasets: MultiSports, UCF101-24 and JHMDB-21 (`sfdet data import multisports|
ucf101-24|jhmdb PKL`).

The three publish their ground truth in one layout, the "ACT pickle" (ACT, YOWO, MOC and MMAction2 read it):
`multisports_GT.pkl`, the corrected `UCF101v2-GT.pkl` and `JHMDB-GT.pkl`, a dict with

    labels        [class name, ...]                       label index = position (0-based)
    gttubes       {video: {label index: [tube, ...]}}      tube = (n, 5) array: frame, x1, y1, x2, y2
    nframes       {video: number of frames}
    resolution    {video: (height, width)}                 the pixels the boxes are given in
    train_videos  [[video, ...], ...]                      one list per split (JHMDB-21: 3, the others: 1)
    test_videos   [[video, ...], ...]

Frames are 1-based, boxes in pixels; videos are named `<class or sport>/<name>` (UCF101-24
`Basketball/v_Basketball_g01_c01`, JHMDB `brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0`, MultiSports
`aerobic_gymnastics/v_-9I4z3CwJ04_c001`). UCF101-24's and JHMDB's pickles are Python 2 pickles (read with
latin-1 strings). What differs per dataset is small: the number of splits, the frame rate of the extracted
frames (UCF101-24 and MultiSports 25, JHMDB 30) and where the media usually are (`BENCHMARKS`).

Media: `--videos DIR` (`DIR/<video>.<ext>` or `DIR/<name>.<ext>`: MultiSports' mp4s, UCF101's and JHMDB's
avis) or `--frames DIR` (`DIR/<video>/` or `DIR/<name>/` holding numbered images, file number = frame number:
YOWO's / MMAction2's `rgb-images/<class>/<name>/00001.jpg`, ACT's `Frames/<video>/00001.png`).

The written dataset (the layout of `sfdet.annotations.importer`, all or nothing):
- every tube becomes a track of its own (person id = its index in the video, in label order) holding a box on
  each of its frames, its class the action; boxes are normalised by the pickle's `resolution` and clipped to the
  frame;
- frame `n` is shown at the video's own time of its `n`-th decoded frame (`--videos`) or at `(n - 1) / fps`
  (`--frames`: sfdet's extracted-frames rule, file `n` at `(n - 1) / data.fps`), so a prediction at time `t`
  is GT frame `round(t * fps) + 1`: `sfdet eval --video-map --fps FPS --frame-shift 1`;
- keyframes: every annotated frame (`dense`, the default: what the frame-level training of these benchmarks
  uses) or `k / keyframe_rate` whose centre frame is annotated; the split's train videos -> train.csv, its
  test videos -> val.csv; the label map holds every label (id = label index + 1);
- `annotations/tubes_gt.pkl`: the pickle again, restricted to the split's videos (train_videos / test_videos
  = [that split]) and keyed by sfdet's video ids, tubes unchanged: what `sfdet eval --video-map --gt` reads.
  A video id is the video's name without its folder (`v_Basketball_g01_c01`) where those are unique, else
  the whole name with `/` replaced by `__`.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from sfdet.annotations.importer import (ImportResult, _data_yaml, build_gt, check_out, write_dataset)
from sfdet.annotations.model import AnnotationError, KeyShape, Skipped, Track, VideoAnnotations
from sfdet.annotations.videos import VIDEO_EXTENSIONS, VideoSource, read_frame_times
from sfdet.fileio import read_pickle

TUBE_GT = "tubes_gt.pkl"  # under annotations/
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
KEYS = ("labels", "gttubes", "nframes", "resolution", "train_videos", "test_videos")
_NUMBER = re.compile(r"(\d+)(?=\.\w+$)")


@dataclass(frozen=True)
class Benchmark:
    name: str  # the FORMAT of `sfdet data import`
    title: str
    gt_file: str  # the published pickle's name
    fps: float  # frame rate of its videos / extracted frames
    splits: int


BENCHMARKS = {
    "multisports": Benchmark("multisports", "MultiSports", "multisports_GT.pkl", 25.0, 1),
    "ucf101-24": Benchmark("ucf101-24", "UCF101-24", "UCF101v2-GT.pkl", 25.0, 1),
    "jhmdb": Benchmark("jhmdb", "JHMDB-21", "JHMDB-GT.pkl", 30.0, 3),
}


# ----------------------------------------------------------------------------------------------------
# The pickle


def _text(value) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def read_act_pickle(path) -> dict:
    """The GT pickle, checked: string names (Python 2 pickles read with latin-1), `(n, 5)` float tubes with
    integral frames in 1..nframes (each once), every video of a split with `nframes` and `resolution`.
    A malformed file is one AnnotationError naming the video, label and tube."""
    path = Path(path)
    gt = read_pickle(path, "GT tube pickle", AnnotationError)
    if not isinstance(gt, Mapping):
        raise AnnotationError(f"{path}: a GT tube pickle holds a dict, got {type(gt).__name__}")
    gt = {_text(k): v for k, v in gt.items()}
    missing = [key for key in KEYS if key not in gt]
    if missing:
        raise AnnotationError(f"{path}: lacks {', '.join(missing)} (an ACT-layout GT pickle has "
                              f"{', '.join(KEYS)})")
    labels = [_text(label) for label in gt["labels"]]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise AnnotationError(f"{path}: label {dup!r} appears twice in `labels`")
    nframes = {_text(v): n for v, n in gt["nframes"].items()}
    resolution = {_text(v): r for v, r in gt["resolution"].items()}
    splits = {}
    for key in ("train_videos", "test_videos"):
        value = gt[key]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(s, (list, tuple)) for s in value):
            raise AnnotationError(f"{path}: {key} must be a list of split lists (one list per split)")
        splits[key] = [[_text(v) for v in split] for split in value]
    gttubes = {}
    for video, by_label in gt["gttubes"].items():
        video = _text(video)
        where = f"{path}: gttubes[{video!r}]"
        if not isinstance(by_label, Mapping):
            raise AnnotationError(f"{where}: expected a dict label index -> list of tubes")
        limit = nframes.get(video)
        tubes = {}
        for label, tube_list in by_label.items():
            if not isinstance(label, (int, np.integer)) or not 0 <= int(label) < len(labels):
                raise AnnotationError(f"{where}: label {label!r} is not an index of `labels` "
                                      f"(0..{len(labels) - 1})")
            checked = []
            for j, tube in enumerate(tube_list):
                _check_tube(tube, f"{where}[{int(label)}][{j}]", limit)
                checked.append(np.asarray(tube))  # as published: tubes_gt.pkl keeps them unchanged
            tubes[int(label)] = checked
        gttubes[video] = tubes
    for key, value in splits.items():
        for i, split in enumerate(value):
            for video in split:
                for table, what in ((nframes, "nframes"), (resolution, "resolution")):
                    if video not in table:
                        raise AnnotationError(f"{path}: {key} split {i + 1} lists {video!r}, which has no {what}")
    for video, res in resolution.items():
        if len(res) != 2 or not all(float(x) > 0 for x in res):
            raise AnnotationError(f"{path}: resolution[{video!r}] must be (height, width), got {res!r}")
    return {"labels": labels, "gttubes": gttubes, "nframes": {v: int(n) for v, n in nframes.items()},
            "resolution": {v: (int(r[0]), int(r[1])) for v, r in resolution.items()}, **splits}


def _check_tube(tube, where: str, limit: int | None) -> None:
    try:
        array = np.asarray(tube, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: a tube is an (n, 5) array of frame, x1, y1, x2, y2") from None
    if array.ndim != 2 or array.shape[1] != 5 or array.shape[0] == 0:
        raise AnnotationError(f"{where}: a tube is an (n, 5) array of frame, x1, y1, x2, y2; got shape "
                              f"{array.shape}")
    if not np.isfinite(array).all():
        raise AnnotationError(f"{where}: holds a value that is not a finite number")
    frames = array[:, 0]
    if not (frames == np.round(frames)).all() or frames.min() < 1:
        raise AnnotationError(f"{where}: frame numbers must be whole numbers >= 1 (1-based), got "
                              f"{frames[(frames != np.round(frames)) | (frames < 1)][0]:g}")
    if limit is not None and frames.max() > limit:
        raise AnnotationError(f"{where}: frame {frames.max():g} is past the video's nframes {limit}")
    if len(np.unique(frames)) != len(frames):
        raise AnnotationError(f"{where}: frame {frames[np.argsort(frames)][np.diff(np.sort(frames)) == 0][0]:g} "
                              "appears twice")


def split_videos(gt: dict, split: int) -> dict[str, list[str]]:
    """{"train": train videos, "val": test videos} of the 1-based `split`."""
    count = len(gt["train_videos"])
    if not 1 <= split <= count or split > len(gt["test_videos"]):
        raise AnnotationError(f"--split {split}: this pickle has {count} split(s) (1..{count})")
    return {"train": list(gt["train_videos"][split - 1]), "val": list(gt["test_videos"][split - 1])}


def video_ids(videos: list[str]) -> dict[str, str]:
    """Benchmark video name -> sfdet video id: the name without its folder where those are unique, else the
    whole name with `/` (and `\\`) replaced by `__`."""
    base = {v: PurePosixPath(v.replace("\\", "/")).name for v in videos}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for v in videos:
        out[v] = base[v] if counts[base[v]] == 1 and base[v] else v.replace("\\", "/").strip("/").replace("/", "__")
    if len(set(out.values())) != len(out):
        raise AnnotationError("two videos map to one video id; rename them")
    bad = next((i for i in out.values() if "," in i or not i), None)
    if bad is not None:
        raise AnnotationError(f"video id {bad!r}: AVA CSVs cannot hold a comma in a video id")
    return out


# ----------------------------------------------------------------------------------------------------
# Media


@dataclass
class Media:
    """Where a video's pixels are and how they are put into the dataset."""

    source: VideoSource
    files: list[Path] | None = None  # frames, file i = frame i + 1; None: a video file


def _candidates(directory: Path, video: str) -> list[Path]:
    name = video.replace("\\", "/").strip("/")
    return [directory / name, directory / PurePosixPath(name).name]


def find_video(directory: Path, video: str) -> Path | None:
    for base in _candidates(directory, video):
        for ext in VIDEO_EXTENSIONS:
            for path in (base.with_name(base.name + ext), base.with_name(base.name + ext.upper())):
                if path.is_file():
                    return path
    return None


def find_frames(directory: Path, video: str) -> Path | None:
    return next((p for p in _candidates(directory, video) if p.is_dir()), None)


def frame_files(folder: Path) -> list[Path]:
    """Images of a frames folder in frame order: file number n (its last run of digits) is frame n, 1..N."""
    numbered = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        match = _NUMBER.search(path.name)
        if match is None:
            continue
        number = int(match.group(1))
        if number in numbered:
            raise AnnotationError(f"{folder}: two images are frame {number} ({numbered[number].name}, {path.name})")
        numbered[number] = path
    if not numbered:
        raise AnnotationError(f"{folder}: no numbered images ({', '.join(IMAGE_EXTENSIONS)}, e.g. 00001.jpg)")
    first = min(numbered)
    if first not in (0, 1):
        raise AnnotationError(f"{folder}: frames start at {first}; expected 1 (00001.jpg), as the benchmark's")
    offset = 1 - first
    missing = next((n for n in range(first, first + len(numbered)) if n not in numbered), None)
    if missing is not None:
        raise AnnotationError(f"{folder}: frame {missing + offset} of {max(numbered) + offset} is missing")
    return [numbered[n] for n in sorted(numbered)]


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception as error:  # noqa: BLE001 - any decoding failure is a bad image
        raise AnnotationError(f"{path}: cannot read the image ({type(error).__name__}: {error})") from None


def open_media(videos: list[str], ids: dict[str, str], videos_dir=None, frames_dir=None,
               fps: float | None = None) -> dict[str, Media]:
    """Benchmark video -> its Media, with frame times (the decoded frames' own, or (n - 1) / fps)."""
    if (videos_dir is None) == (frames_dir is None):
        raise AnnotationError("give the media as --videos DIR or as --frames DIR (one of them)")
    directory = Path(videos_dir if videos_dir is not None else frames_dir)
    if not directory.is_dir():
        raise AnnotationError(f"{directory}: --{'videos' if videos_dir is not None else 'frames'} is not a folder")
    found = {v: (find_video(directory, v) if videos_dir is not None else find_frames(directory, v)) for v in videos}
    missing = [v for v, p in found.items() if p is None]
    if missing:
        what = f"video file ({', '.join(VIDEO_EXTENSIONS)})" if videos_dir is not None else "frames folder"
        raise AnnotationError(f"{len(missing)} of the split's {len(videos)} videos have no {what} in {directory}: "
                              f"first {missing[0]!r} (looked for {_candidates(directory, missing[0])[0]} and "
                              f"{_candidates(directory, missing[0])[1]})")
    out = {}
    for video, path in found.items():
        if videos_dir is not None:
            times, width, height = read_frame_times(path)
            out[video] = Media(VideoSource(path, ids[video], times, width, height))
        else:
            files = frame_files(path)
            width, height = _image_size(files[0])
            out[video] = Media(VideoSource(path, ids[video], [i / fps for i in range(len(files))], width, height),
                               files)
    return out


def video_fps(times: list[float]) -> float | None:
    """A video's frame rate from its frame times (median period), None for a one-frame video."""
    if len(times) < 2:
        return None
    period = float(np.median(np.diff(times)))
    return 1.0 / period if period > 0 else None


# ----------------------------------------------------------------------------------------------------
# Tubes -> tracks


def tube_tracks(gt: dict, video: str, label_names: dict[int, str], skipped: Skipped,
                num_frames: int) -> VideoAnnotations:
    """The tubes of one video as tracks (one per tube, person id = its index), boxes normalised and clipped."""
    height, width = gt["resolution"][video]
    tracks, frames = [], set()
    person = 0
    for label in sorted(gt["gttubes"].get(video, {})):
        for j, tube in enumerate(gt["gttubes"][video][label]):
            track = Track(person_id=person, interpolate=False, where=f"{video} label {label} tube {j}")
            person += 1
            actions = frozenset([label_names[label]])
            tube = np.asarray(tube, dtype=np.float64)
            for frame, x1, y1, x2, y2 in tube[np.argsort(tube[:, 0], kind="stable")]:
                index = int(frame) - 1
                if index >= num_frames:
                    skipped.add("tube boxes on frames past the video's last decoded frame")
                    continue
                box = (x1 / width, y1 / height, x2 / width, y2 / height)
                clipped = tuple(min(max(v, 0.0), 1.0) for v in box)
                if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
                    skipped.add("tube boxes empty inside the frame (left out of the CSVs, kept in tubes_gt.pkl)")
                    continue
                if clipped != box:
                    skipped.add("tube boxes partly outside the frame (clipped in the CSVs)")
                track.shapes.append(KeyShape(index, clipped, actions, shown=True, continues=False))
                frames.add(index)
            if track.shapes:
                track.finish()
                tracks.append(track)
    return VideoAnnotations(name=video, source=video, tracks=tracks, frames=frames)


# ----------------------------------------------------------------------------------------------------
# The import


def import_benchmark(dataset: str, gt_path, out, *, videos_dir=None, frames_dir=None, split: int = 1,
                     keyframe_rate: float | None = None, fps: float | None = None, overwrite: bool = False,
                     copy_media: bool = False, print_line: Callable[[str], None] | None = print) -> ImportResult:
    """`sfdet data import multisports|ucf101-24|jhmdb PKL`: write the AVA-format dataset and `tubes_gt.pkl`.

    `keyframe_rate` None: a keyframe on every annotated frame. `fps`: the extracted frames' rate (`--frames`;
    default the benchmark's)."""
    if dataset not in BENCHMARKS:
        raise AnnotationError(f"unknown benchmark {dataset!r}; expected one of {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[dataset]
    out = Path(out).expanduser().absolute()
    if keyframe_rate is not None and not keyframe_rate > 0:
        raise AnnotationError(f"--keyframe-rate must be > 0, got {keyframe_rate}")
    if fps is not None and videos_dir is not None:
        raise AnnotationError("--fps is the rate of extracted frames (--frames); videos have their own")
    fps = float(fps if fps is not None else bench.fps)
    if not fps > 0:
        raise AnnotationError(f"--fps must be > 0, got {fps}")
    check_out(out, overwrite)
    gt = read_act_pickle(gt_path)
    splits = split_videos(gt, split)
    every = list(dict.fromkeys(splits["train"] + splits["val"]))
    overlap = set(splits["train"]) & set(splits["val"])
    if overlap:
        raise AnnotationError(f"{gt_path}: split {split} lists {sorted(overlap)[0]!r} as both a train and a test video")
    ids = video_ids(list(dict.fromkeys([*gt["nframes"], *every])))
    media = open_media(every, ids, videos_dir, frames_dir, fps)

    label_map = {i + 1: name for i, name in enumerate(gt["labels"])}
    names = {name: i for i, name in label_map.items()}
    skipped = Skipped()
    by_video = {}
    for video in every:
        source = media[video].source
        annotations = tube_tracks(gt, video, dict(enumerate(gt["labels"])), skipped, source.num_frames)
        if source.num_frames < gt["nframes"][video]:
            skipped.add("videos with fewer frames than the pickle's nframes")
        by_video[source.path] = (source, [annotations])
    id_splits = {s: [ids[v] for v in videos] for s, videos in splits.items()}
    result = ImportResult(out, label_map, {}, id_splits, skipped=skipped)
    table = build_gt(by_video, keyframe_rate, result, names)
    if table.empty:
        raise AnnotationError(f"{gt_path}: no tube box of split {split}'s videos lies on a keyframe")
    for name in ("train", "val"):
        result.gt[name] = table[table["video_id"].isin(id_splits[name])].reset_index(drop=True)

    tubes_gt = {"labels": list(gt["labels"]),
                "gttubes": {ids[v]: gt["gttubes"].get(v, {}) for v in every},
                "nframes": {ids[v]: gt["nframes"][v] for v in every},
                "resolution": {ids[v]: gt["resolution"][v] for v in every},
                "train_videos": [id_splits["train"]], "test_videos": [id_splits["val"]]}

    rates = {ids[v]: video_fps(media[v].source.times) for v in every} if videos_dir is not None else {}
    known = [r for r in rates.values() if r]
    eval_fps = fps if videos_dir is None else (float(np.median(known)) if known else bench.fps)
    mixed = sorted({round(r, 3) for r in known if abs(r - eval_fps) > 1e-3 * eval_fps})

    def write_media(tmp: Path) -> None:
        folder = tmp / ("videos" if videos_dir is not None else "frames")
        folder.mkdir()
        for video in every:
            item = media[video]
            vid = item.source.video_id
            if item.files is None:
                pairs = [(item.source.path, folder / f"{vid}{item.source.path.suffix}")]
            else:
                (folder / vid).mkdir()
                pairs = [(path, folder / vid / f"{vid}_{i + 1:06d}{path.suffix.lower()}")
                         for i, path in enumerate(item.files)]
            for source, target in pairs:
                if copy_media:
                    shutil.copy2(source, target)
                else:
                    os.symlink(source.absolute(), target)

    def write_tubes(tmp: Path) -> None:
        with open(tmp / "annotations" / TUBE_GT, "wb") as handle:
            pickle.dump(tubes_gt, handle, protocol=4)

    eval_line = (f"sfdet eval --video-map --gt {out / 'annotations' / TUBE_GT} --labelmap "
                 f"{out / 'annotations' / 'label_map.pbtxt'} --fps {eval_fps:g} --frame-shift 1 --pred PREDICTIONS")
    record = {"format": dataset, "sources": [str(Path(gt_path).absolute())], "split": split,
              "media": "videos" if videos_dir is not None else "frames",
              "media_dir": str(Path(videos_dir if videos_dir is not None else frames_dir).absolute()),
              "fps": eval_fps, "frame_shift": 1, "video_fps": rates,
              "keyframes_mode": "dense" if keyframe_rate is None else "rate", "keyframe_rate": keyframe_rate,
              "splits": id_splits, "video_names": {ids[v]: v for v in every}, "tubes_gt": f"annotations/{TUBE_GT}",
              "keyframes": result.keyframes, "empty_keyframes": result.empty_keyframes,
              "skipped": dict(skipped.counts), "eval": eval_line}
    write_dataset(out, result, write_media, _data_yaml(out, None if videos_dir is not None else fps), record,
                  extra=write_tubes)
    if print_line is not None:
        print_line(f"{bench.title} split {split}: {len(splits['train'])} train and {len(splits['val'])} test videos, "
                   f"{len(label_map)} labels, keyframes "
                   + ("on every annotated frame" if keyframe_rate is None else f"at {keyframe_rate:g} per second"))
        for line in result.summary_lines():
            print_line(line)
        if mixed:
            shown = ", ".join(f"{r:g}" for r in mixed[:5]) + (", ..." if len(mixed) > 5 else "")
            print_line(f"  warning: videos at other frame rates than {eval_fps:g} fps ({shown}): "
                       "`eval --video-map` maps every video with one --fps; "
                       "import extracted frames (--frames) for exact frame numbers")
        print_line(f"  tube GT for video-mAP: {out / 'annotations' / TUBE_GT}")
        print_line(f"  evaluate predictions (keyframes every frame: predict --keyframe-rate {eval_fps:g}) with")
        print_line(f"    {eval_line}")
    return result
