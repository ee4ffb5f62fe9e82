"""Label Studio video JSON exports (`videorectangle` tracks), read and written.

Reading (`read_labelstudio`): the export is a list of tasks; `task.data.<video key>` names the video (an upload
URL such as `/data/upload/3/1a2b3c4d-walk.mp4` matches `walk.mp4`); the first annotation that was not
cancelled is read. Each `videorectangle` result is a track: `value.sequence` holds keyframes
`{frame (1-based), enabled, x, y, width, height (percent of the frame, top-left corner), rotation}`.
Between a keyframe and the next the box is interpolated linearly; a keyframe with `enabled: false` is
shown on its own frame and hides the object until the next keyframe; an enabled last keyframe holds its box
up to `framesCount` (label-studio-tools' `extract_key_frames` rules). Rotated boxes become the axis-aligned
box around them. Frame `n` is the video's decoded frame `n - 1`; a `framesCount` that differs from the
video's frame count means Label Studio assumed another frame rate (set `frameRate` in the labelling config).

Person ids: a region id that is a number, or starts with a number and `_` (`7_2` is person 7: several regions
of one person, for actions that change over time), else numbered in the order of the file.

Actions: `labels` (the region's `labels`) or `attribute:NAME` (results of the control NAME: per-region
`choices` / `labels` with the region's id, and `timelinelabels` ranges, which apply to every person of the
task on their frames).

Writing (`write_labelstudio`): tracks -> a Label Studio import file of tasks with `predictions`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from sfdet.annotations.cvat import ActionSpec
from sfdet.annotations.model import AnnotationError, KeyShape, Skipped, Track, VideoAnnotations, check_box
from sfdet.annotations.videos import VideoResolver

TRACK_TYPES = ("videorectangle",)


def _load(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None
    if isinstance(data, dict) and "data" in data:
        data = [data]  # one task
    if not isinstance(data, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in data):
        raise AnnotationError(f"{path}: not a Label Studio JSON export (expected a list of tasks, each with "
                              "'data' and 'annotations'; export with 'JSON', not 'JSON-MIN' or CSV)")
    return data


def _person_id(region_id, numbered: dict) -> int:
    text = str(region_id)
    m = re.fullmatch(r"(\d+)(?:_.*)?", text)
    if m:
        return int(m.group(1))
    if text not in numbered:
        numbered[text] = 1 + len(numbered)
    return numbered[text]


def _number(item: dict, key: str, where: str, default=None) -> float:
    value = item.get(key, default)
    if value is None:
        raise AnnotationError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationError(f"{where}: {key!r} is {value!r}, not a number")
    return float(value)


def _box(item: dict, width: int, height: int, where: str):
    x, y = _number(item, "x", where), _number(item, "y", where)
    w, h = _number(item, "width", where), _number(item, "height", where)
    rotation = _number(item, "rotation", where, 0.0)
    if w <= 0 or h <= 0:
        raise AnnotationError(f"{where}: width and height must be > 0, got {w:g} x {h:g}")
    if rotation % 360 == 0:
        return check_box((x / 100, y / 100, (x + w) / 100, (y + h) / 100), where, ("x", "y", "x + width", "y + height"))
    # Rotated about the top-left corner, in pixels: the axis-aligned box around it.
    a = math.radians(rotation)
    px, py, pw, ph = x / 100 * width, y / 100 * height, w / 100 * width, h / 100 * height
    xs, ys = [], []
    for cx, cy in ((0, 0), (pw, 0), (pw, ph), (0, ph)):
        xs.append(px + cx * math.cos(a) - cy * math.sin(a))
        ys.append(py + cx * math.sin(a) + cy * math.cos(a))
    box = (max(min(xs) / width, 0.0), max(min(ys) / height, 0.0), min(max(xs) / width, 1.0), min(max(ys) / height, 1.0))
    return check_box(box, where)


def read_labelstudio(path: str | Path, actions: ActionSpec, videos: VideoResolver, skipped: Skipped
                     ) -> list[VideoAnnotations]:
    path = Path(path)
    out = []
    for index, task in enumerate(_load(path)):
        task_where = f"{path}: task {task.get('id', index)}"
        names = [v for v in task["data"].values() if isinstance(v, str)]
        video = videos.get(task_where, *names)
        for key in ("annotations", "predictions"):
            if not isinstance(task.get(key) or [], list):
                raise AnnotationError(f"{task_where}: {key!r} is not a list")
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations and task.get("predictions"):
            annotations = [a for a in task["predictions"] if isinstance(a, dict)]
            skipped.add("tasks read from their predictions (no annotation yet; not skipped)")
        if not annotations:
            skipped.add("tasks without an annotation")
            continue
        if len(annotations) > 1:
            skipped.add("extra annotations of a task (the first one is read)")
        results = annotations[0].get("result")
        if not isinstance(results, list):
            raise AnnotationError(f"{task_where}: annotation has no 'result' list")
        per_region: dict[str, set[str]] = {}
        timeline: list[tuple[int, int, frozenset[str]]] = []
        if actions.mode == "attribute":
            for result in results:
                if result.get("from_name") != actions.attribute:
                    continue
                value = result.get("value") or {}
                kind = result.get("type")
                rwhere = f"{task_where}: result {result.get('id', '?')} ({kind})"
                if kind == "timelinelabels":
                    labels = frozenset(value.get("timelinelabels") or [])
                    for r in value.get("ranges") or []:
                        first, last = int(_number(r, "start", rwhere)), int(_number(r, "end", rwhere))
                        timeline.append((first - 1, last - 1, labels))
                elif kind in ("choices", "labels"):
                    per_region.setdefault(str(result.get("id")), set()).update(value.get(kind) or [])
                else:
                    raise AnnotationError(f"{rwhere}: control {actions.attribute!r} gives {kind!r} results; "
                                          "expected choices, labels or timelinelabels")
        numbered: dict[str, int] = {}
        video_annotations = VideoAnnotations(name=video.video_id, source=str(path), where=f"task {task.get('id', index)}")
        for result in results:
            kind = (result.get("type") or "").lower()
            if kind not in TRACK_TYPES:
                if actions.mode != "attribute" or result.get("from_name") != actions.attribute:
                    skipped.add(f"{kind or 'untyped'} results (not video rectangles)")
                continue
            region = result.get("id", "?")
            where = f"{task_where}: region {region}"
            value = result.get("value")
            if not isinstance(value, dict) or not isinstance(value.get("sequence"), list):
                raise AnnotationError(f"{where}: missing value.sequence")
            frames_count = value.get("framesCount")
            if isinstance(frames_count, (int, float)) and abs(int(frames_count) - video.num_frames) > 1:
                raise AnnotationError(
                    f"{where}: framesCount {int(frames_count)} but {video.path.name} has {video.num_frames} frames: "
                    "Label Studio assumed another frame rate (set frameRate in the labelling config)")
            if actions.mode == "labels":
                names = value.get("labels")
                if not names:
                    raise AnnotationError(f"{where}: missing value.labels (--actions-from labels)")
                region_actions = frozenset(names)
            else:
                region_actions = frozenset(per_region.get(str(region), ()))
            end = video.num_frames - 1 if frames_count is None else min(int(frames_count), video.num_frames) - 1
            track = Track(person_id=_person_id(region, numbered), end_frame=end, where=f"region {region}",
                          timeline=list(timeline))
            for item in value["sequence"]:
                if not isinstance(item, dict):
                    raise AnnotationError(f"{where}: a sequence item is not an object")
                frame = int(_number(item, "frame", where))
                kwhere = f"{where}, keyframe at frame {frame}"
                if frame < 1 or frame > video.num_frames:
                    raise AnnotationError(f"{kwhere}: frame {frame} is past the end of {video.path.name} "
                                          f"({video.num_frames} frames, 1..{video.num_frames})")
                enabled = item.get("enabled", True)
                box = _box(item, video.width, video.height, kwhere)
                track.shapes.append(KeyShape(frame - 1, box, region_actions, shown=True, continues=bool(enabled)))
            if not track.shapes:
                skipped.add("regions with an empty sequence")
                continue
            track.finish()
            video_annotations.tracks.append(track)
        out.append(video_annotations)
    return out


def write_labelstudio(videos: list[dict], label_names: list[str], actions: ActionSpec) -> str:
    """Tasks with `predictions` (pre-annotations) for Label Studio, in its JSON import format.

    `videos` as `cvat.write_cvat_video` takes them, plus "url" (what `data.video` holds). One region per
    person and run of keyframes with the same actions (ids `<person>_<k>`); boxes in percent.
    """
    tasks = []
    for video in videos:
        w, h = video["size"]
        results = []
        for person in video["tracks"]:
            runs: list[tuple[frozenset, list]] = []
            broken = False
            for frame, box, acts, outside in sorted(person["shapes"], key=lambda s: s[0]):
                key = frozenset(acts)
                item = {"frame": frame + 1, "enabled": False, "x": box[0] / w * 100, "y": box[1] / h * 100,
                        "width": (box[2] - box[0]) / w * 100, "height": (box[3] - box[1]) / h * 100,
                        "rotation": 0, "time": video["times"][frame]}
                if outside:
                    broken = True
                    continue
                if broken or not runs or runs[-1][0] != key:
                    runs.append((key, []))
                    broken = False
                runs[-1][1].append(item)
            for k, (acts, items) in enumerate(runs):
                for i, item in enumerate(items):
                    # Consecutive keyframes of one run interpolate; its last one ends the region.
                    item["enabled"] = i + 1 < len(items)
                region = {"id": f"{person['person_id']}_{k}", "type": "videorectangle", "from_name": "box",
                          "to_name": "video", "origin": "prediction",
                          "value": {"framesCount": video["frames"], "duration": video["duration"],
                                    "sequence": items}}
                names = [n for n in label_names if n in acts]
                if actions.mode == "labels":
                    region["value"]["labels"] = names
                else:
                    region["value"]["labels"] = ["person"]
                results.append(region)
                if actions.mode == "attribute":
                    results.append({"id": region["id"], "type": "choices", "from_name": actions.attribute,
                                    "to_name": "video", "value": {"choices": names}})
        tasks.append({"data": {"video": video["url"]},
                      "predictions": [{"model_version": "sfdet", "result": results}]})
    return json.dumps(tasks, indent=1) + "\n"
