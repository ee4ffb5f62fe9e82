"""The plain tracks CSV, for annotations from any other tool; and predict's `<stem>.tracks.csv`.

With a header line (columns in any order, extra columns ignored):

    video,frame,track_id,x1,y1,x2,y2,actions
    walk.mp4,30,1,0.10,0.20,0.30,0.90,stand|wave

- `video`: the video's file name or stem in `--videos`;
- `frame` (0-based index of the video's decoded frame) or `time` (seconds from the video's start; the nearest
  frame is used);
- `track_id`: an integer, the person id;
- `x1,y1,x2,y2`: the box normalised to [0, 1] (divide pixels by the frame's width and height);
- `actions`: action names separated by `|` (or `;`); an empty field is a person doing none of them.
  `--actions-from attribute:NAME` reads the column NAME instead.
Each row is the box of one person on one frame: nothing is interpolated between rows, and the annotated
frames are the frames the file lists (a keyframe is kept when its centre frame is one of them).

Without a header, the file is predict's `<stem>.tracks.csv` (AVA GT layout `video_id,timestamp,x1,y1,x2,y2,
action_id,person_id`, one row per action): `--label-map` names the action ids.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from sfdet.annotations.cvat import ActionSpec
from sfdet.annotations.model import AnnotationError, KeyShape, Skipped, Track, VideoAnnotations, check_box
from sfdet.annotations.videos import VideoResolver

REQUIRED = ("video", "track_id", "x1", "y1", "x2", "y2")


def _float(text: str, where: str, name: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: {name} {text!r} is not finite")
    return value


def _int(text: str, where: str, name: str) -> int:
    value = _float(text, where, name)
    if value != int(value):
        raise AnnotationError(f"{where}: {name} {text!r} is not an integer")
    return int(value)


def read_tracks_csv(path: str | Path, actions: ActionSpec, videos: VideoResolver, skipped: Skipped,
                    label_map: dict[int, str] | None = None) -> list[VideoAnnotations]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a UTF-8 text file") from None
    if not rows:
        raise AnnotationError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    if "video" in header or "track_id" in header:
        records = _headered(path, header, rows[1:], actions)
    else:
        records = _ava_layout(path, rows, label_map)
    by_video: dict[str, tuple] = {}
    tracks: dict[tuple[str, int], Track] = {}
    for line, video_name, frame, time, person, box, names in records:
        where = f"{path}:{line}"
        video = videos.get(where, video_name)
        if video.path not in by_video:
            by_video[video.path] = (video, VideoAnnotations(name=video.video_id, source=str(path), frames=set()))
        video, annotations = by_video[video.path]
        if time is not None:
            if time < -0.5 / 30 or time > video.times[-1] + 1.0:
                raise AnnotationError(f"{where}: time {time:g} s is past the end of {video.path.name} "
                                      f"({video.times[-1]:.3f} s)")
            frame = video.frame_of_time(time)
        elif not 0 <= frame < video.num_frames:
            raise AnnotationError(f"{where}: frame {frame} is past the end of {video.path.name} "
                                  f"({video.num_frames} frames, 0..{video.num_frames - 1})")
        annotations.frames.add(frame)
        key = (video.path, person)
        if key not in tracks:
            tracks[key] = Track(person_id=person, interpolate=False, where=f"track {person}")
            annotations.tracks.append(tracks[key])
        track = tracks[key]
        existing = next((s for s in track.shapes if s.frame == frame), None)
        if existing is not None:  # one row per action (AVA layout), or the same person listed twice
            if max(abs(a - b) for a, b in zip(existing.box, box)) > 1e-9:
                raise AnnotationError(f"{where}: track {person} has two different boxes on frame {frame}")
            existing.actions = existing.actions | names
            continue
        track.shapes.append(KeyShape(frame, box, names, shown=True, continues=False))
    for track in tracks.values():
        track.finish()
    return [annotations for _, annotations in by_video.values()]


def _headered(path: Path, header: list[str], rows: list[list[str]], actions: ActionSpec):
    missing = [c for c in REQUIRED if c not in header]
    if "frame" not in header and "time" not in header:
        missing.append("frame or time")
    action_column = actions.attribute if actions.mode == "attribute" else "actions"
    if action_column not in header:
        missing.append(action_column)
    if missing:
        raise AnnotationError(f"{path}:1: the header lacks column(s) {', '.join(missing)} "
                              f"(expected video,frame,track_id,x1,y1,x2,y2,actions)")
    column = {name: header.index(name) for name in header}
    for line, row in enumerate(rows, start=2):
        if not row or all(not v.strip() for v in row):
            continue
        where = f"{path}:{line}"
        if len(row) < len(header):
            raise AnnotationError(f"{where}: {len(row)} fields, the header has {len(header)}")
        get = lambda name: row[column[name]].strip()  # noqa: E731
        frame = _int(get("frame"), where, "frame") if "frame" in column and get("frame") else None
        time = _float(get("time"), where, "time") if frame is None and "time" in column else None
        if frame is None and time is None:
            raise AnnotationError(f"{where}: neither frame nor time is given")
        box = check_box(tuple(_float(get(c), where, c) for c in ("x1", "y1", "x2", "y2")), where,
                        ("x1", "y1", "x2", "y2"))
        names = frozenset(n.strip() for n in get(action_column).replace(";", "|").split("|") if n.strip())
        yield line, get("video"), frame, time, _int(get("track_id"), where, "track_id"), box, names


def _ava_layout(path: Path, rows: list[list[str]], label_map: dict[int, str] | None):
    if label_map is None:
        raise AnnotationError(f"{path}: a tracks CSV without a header (predict's AVA layout) needs --label-map "
                              "to name its action ids; or add the header video,frame,track_id,x1,y1,x2,y2,actions")
    for line, row in enumerate(rows, start=1):
        if not row or all(not v.strip() for v in row):
            continue
        where = f"{path}:{line}"
        if len(row) != 8:
            raise AnnotationError(f"{where}: expected 8 fields video_id,timestamp,x1,y1,x2,y2,action_id,person_id "
                                  f"(or a header line), got {len(row)}")
        action = _int(row[6], where, "action_id")
        if action not in label_map:
            raise AnnotationError(f"{where}: unknown label: action id {action} is not in the label map")
        box = check_box(tuple(_float(v, where, n) for v, n in zip(row[2:6], ("x1", "y1", "x2", "y2"))), where,
                        ("x1", "y1", "x2", "y2"))
        yield line, row[0], None, _float(row[1], where, "timestamp"), _int(row[7], where, "person_id"), box, \
            frozenset([label_map[action]])
