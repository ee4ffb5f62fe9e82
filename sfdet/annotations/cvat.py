"""CVAT XML 1.1: "CVAT for video 1.1" (tracks) and "CVAT for images 1.1" (per-frame shapes), read and written.

Reading (`read_cvat`):
- `<meta>` holds one `<task>`, one `<job>` or a `<project>` with several `<task>`s; each gives the video
  (`<source>`, else `<name>`), `<start_frame>`, `<stop_frame>`, `<frame_filter>step=N</frame_filter>`,
  `<original_size>` and the `<labels>` with their `<attributes>`. A track or image names its task with
  `task_id` when there are several.
- Video export: frame numbers are frames of the video (0-based). Boxes between two shapes of a track are
  linear interpolations (so a track given only at its keyframes is filled as CVAT fills it); `outside="1"`
  hides the object from that shape until the next shape with `outside="0"`; after its last shape a visible
  track lasts to the task's stop frame. `occluded` boxes are kept. Tracks of other shapes (polygons, points,
  skeletons, ...) and tags are skipped and counted.
- Images export: `<image id>` is the task's frame number, i.e. video frame `start_frame + id * step`;
  `<box>`es give person ids from `track_id`, else `group_id`, else one new id per box (counted).
- Actions: `labels` (each box label is an action; tracks of one person share a `group_id`, which is the
  person id) or `attribute:NAME` (the attribute NAME of the box holds one action name, or several separated
  by commas; labels that do not declare NAME are skipped and counted).

Writing (`write_cvat_video`): tracks -> a "CVAT for video 1.1" file CVAT imports as pre-annotations.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from sfdet.annotations.model import (
    AnnotationError,
    KeyShape,
    Skipped,
    Track,
    VideoAnnotations,
    check_box,
    split_action_names,
)
from sfdet.annotations.videos import VideoResolver

NON_BOX_SHAPES = ("polygon", "polyline", "points", "cuboid", "mask", "skeleton", "ellipse")


@dataclass
class _Task:
    id: str
    name: str
    source: str
    start: int = 0
    stop: int | None = None
    step: int = 1
    size: tuple[int, int] | None = None
    labels: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # label -> attribute -> values


@dataclass
class ActionSpec:
    """`labels` or `attribute:NAME`."""

    mode: str
    attribute: str = ""

    @classmethod
    def parse(cls, text: str) -> ActionSpec:
        if text == "labels":
            return cls("labels")
        if text.startswith("attribute:") and text[len("attribute:"):].strip():
            return cls("attribute", text[len("attribute:"):].strip())
        raise AnnotationError(f"--actions-from: expected 'labels' or 'attribute:NAME', got {text!r}")


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise AnnotationError(f"{path}: not well-formed XML at line {line}, column {column} "
                              "(truncated or damaged file?)") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _int(text: str | None, where: str, default: int | None = None) -> int | None:
    if text is None or not text.strip():
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise AnnotationError(f"{where}: {text.strip()!r} is not an integer") from None


def _read_tasks(path: Path, root: ET.Element) -> dict[str, _Task]:
    meta = root.find("meta")
    if root.tag != "annotations" or meta is None:
        raise AnnotationError(f"{path}: not a CVAT XML export (expected <annotations> with <meta>)")
    elements = meta.findall("task") + meta.findall("job") + meta.findall("project/tasks/task")
    if not elements:
        raise AnnotationError(f"{path}: <meta> has no <task>, <job> or <project><tasks>")
    project_labels = _read_labels(meta.find("project/labels"))
    tasks = {}
    for element in elements:
        task_id = (element.findtext("id") or "").strip() or str(len(tasks))
        where = f"{path}: {element.tag} {task_id}"
        step = 1
        frame_filter = (element.findtext("frame_filter") or "").strip()
        if frame_filter:
            m = re.fullmatch(r"step\s*=\s*(\d+)", frame_filter)
            if not m or int(m.group(1)) < 1:
                raise AnnotationError(f"{where}: <frame_filter> {frame_filter!r} is not step=N")
            step = int(m.group(1))
        size = None
        original = element.find("original_size")
        if original is not None:
            size = (_int(original.findtext("width"), f"{where}: <original_size><width>"),
                    _int(original.findtext("height"), f"{where}: <original_size><height>"))
        labels = _read_labels(element.find("labels")) or project_labels
        tasks[task_id] = _Task(
            id=task_id, name=(element.findtext("name") or "").strip(), source=(element.findtext("source") or "").strip(),
            start=_int(element.findtext("start_frame"), f"{where}: <start_frame>", 0),
            stop=_int(element.findtext("stop_frame"), f"{where}: <stop_frame>"),
            step=step, size=size, labels=labels)
    return tasks


def _read_labels(element: ET.Element | None) -> dict[str, dict[str, list[str]]]:
    labels = {}
    if element is None:
        return labels
    for label in element.findall("label"):
        name = (label.findtext("name") or "").strip()
        attributes = {}
        for attribute in label.findall("attributes/attribute"):
            values = (attribute.findtext("values") or "").split("\n")
            attributes[(attribute.findtext("name") or "").strip()] = [v.strip() for v in values if v.strip()]
        labels[name] = attributes
    return labels


class _Reader:
    def __init__(self, path: Path, actions: ActionSpec, videos: VideoResolver, skipped: Skipped):
        self.path, self.actions, self.videos, self.skipped = path, actions, videos, skipped
        self.root = _parse_xml(path)
        self.tasks = _read_tasks(path, self.root)
        self.out: dict[str, VideoAnnotations] = {}
        self.next_person = 1_000_000  # ids for boxes of an images export without track_id / group_id

    def task_of(self, element: ET.Element, where: str) -> _Task:
        task_id = element.get("task_id")
        if task_id is None:
            if len(self.tasks) == 1:
                return next(iter(self.tasks.values()))
            raise AnnotationError(f"{self.path}: {where}: no task_id, and the export holds {len(self.tasks)} tasks")
        if task_id not in self.tasks:
            raise AnnotationError(f"{self.path}: {where}: task_id {task_id} is not a task of <meta>")
        return self.tasks[task_id]

    def video_of(self, task: _Task):
        where = f"{self.path}: task {task.id}"
        video = self.videos.get(where, task.source, task.name)
        if task.id not in self.out:
            stop = task.stop if task.stop is not None else video.num_frames - 1
            self.out[task.id] = VideoAnnotations(name=video.video_id, source=str(self.path), first_frame=task.start,
                                                 last_frame=min(stop, video.num_frames - 1), where=f"task {task.id}")
        return video, self.out[task.id]

    def box(self, element: ET.Element, task: _Task, video, where: str):
        values = []
        for name in ("xtl", "ytl", "xbr", "ybr"):
            text = element.get(name)
            if text is None:
                raise AnnotationError(f"{self.path}: {where}: missing attribute {name}")
            try:
                values.append(float(text))
            except ValueError:
                raise AnnotationError(f"{self.path}: {where}: {name}={text!r} is not a number") from None
        width, height = task.size or (video.width, video.height)
        if values[2] < values[0]:
            raise AnnotationError(f"{self.path}: {where}: xbr < xtl ({values[2]:g} < {values[0]:g})")
        if values[3] < values[1]:
            raise AnnotationError(f"{self.path}: {where}: ybr < ytl ({values[3]:g} < {values[1]:g})")
        box = (values[0] / width, values[1] / height, values[2] / width, values[3] / height)
        return check_box(box, f"{self.path}: {where}")

    def frame(self, element: ET.Element, video, where: str, attribute: str = "frame") -> int:
        text = element.get(attribute)
        if text is None:
            raise AnnotationError(f"{self.path}: {where}: missing attribute {attribute}")
        frame = _int(text, f"{self.path}: {where}: {attribute}")
        if frame < 0 or frame >= video.num_frames:
            raise AnnotationError(f"{self.path}: {where}: frame {frame} is past the end of {video.path.name} "
                                  f"({video.num_frames} frames, 0..{video.num_frames - 1})")
        return frame

    def label_actions(self, label: str, task: _Task, where: str) -> frozenset[str] | None:
        """Actions of a label (labels mode); None when the label is to be skipped."""
        if task.labels and label not in task.labels:
            raise AnnotationError(f"{self.path}: {where}: unknown label {label!r} (not among the labels of "
                                  f"<meta>: {', '.join(sorted(task.labels))})")
        return frozenset([label])

    def shape_actions(self, element: ET.Element, label: str, task: _Task, where: str,
                      previous: frozenset[str] | None) -> frozenset[str] | None:
        if self.actions.mode == "labels":
            return self.label_actions(label, task, where)
        name = self.actions.attribute
        if task.labels and label not in task.labels:
            raise AnnotationError(f"{self.path}: {where}: unknown label {label!r} (not among the labels of "
                                  f"<meta>: {', '.join(sorted(task.labels))})")
        declared = task.labels.get(label, {})
        values = {a.get("name"): (a.text or "") for a in element.findall("attribute")}
        if name not in values:
            if task.labels and name not in declared:
                return None  # a label without the action attribute (a car, a ball): skipped
            if previous is not None:
                return previous  # mutable attributes carry forward
            raise AnnotationError(f"{self.path}: {where}: missing attribute {name!r} (--actions-from attribute:{name})")
        names = split_action_names(values[name])
        if declared.get(name) and declared[name] != [""]:
            allowed = set(declared[name])
            if values[name].strip().lower() in ("true", "false") and allowed <= {"true", "false"}:
                raise AnnotationError(f"{self.path}: {where}: attribute {name!r} is a checkbox; give actions as "
                                      "labels or as a select / text attribute of action names")
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise AnnotationError(f"{self.path}: {where}: attribute {name!r} value {unknown[0]!r} is not "
                                      f"one of its declared values")
        return frozenset(names)

    def read_tracks(self) -> None:
        for track_el in self.root.findall("track"):
            track_id = track_el.get("id", "?")
            label = track_el.get("label")
            where = f"track {track_id}"
            if label is None:
                raise AnnotationError(f"{self.path}: {where}: missing attribute label")
            boxes = track_el.findall("box")
            if not boxes:
                kinds = sorted({child.tag for child in track_el if child.tag in NON_BOX_SHAPES})
                self.skipped.add(f"{'/'.join(kinds) or 'empty'} tracks (not boxes)")
                continue
            task = self.task_of(track_el, where)
            video, annotations = self.video_of(task)
            group = track_el.get("group_id")
            person = _int(group, f"{self.path}: {where}: group_id") if group not in (None, "") else \
                _int(track_id, f"{self.path}: {where}: id")
            track = Track(person_id=person, end_frame=annotations.last_frame, where=where)
            previous = None
            skip = False
            for box_el in boxes:
                frame = self.frame(box_el, video, f"{where}, box")
                bwhere = f"{where}, box at frame {frame}"
                outside = box_el.get("outside", "0") == "1"
                box = self.box(box_el, task, video, bwhere)
                actions = self.shape_actions(box_el, label, task, bwhere, previous)
                if actions is None:
                    skip = True
                    break
                previous = actions
                track.shapes.append(KeyShape(frame, box, actions, shown=not outside, continues=not outside))
            if skip:
                self.skipped.add(f"tracks of labels without attribute {self.actions.attribute!r}")
                continue
            track.finish()
            annotations.tracks.append(track)
        for tag in self.root.iter("tag"):
            self.skipped.add("tags (frame-level, no box)")

    def read_images(self) -> None:
        for image in self.root.findall("image"):
            where = f"image {image.get('id', '?')} ({image.get('name', '')})"
            task = self.task_of(image, where)
            video, annotations = self.video_of(task)
            image_id = _int(image.get("id"), f"{self.path}: {where}: id")
            if image_id is None:
                raise AnnotationError(f"{self.path}: {where}: missing attribute id")
            frame = task.start + image_id * task.step
            if frame >= video.num_frames:
                raise AnnotationError(f"{self.path}: {where}: frame {frame} is past the end of {video.path.name} "
                                      f"({video.num_frames} frames)")
            if annotations.frames is None:
                annotations.frames = set()
            annotations.frames.add(frame)
            if image.get("width") and image.get("height"):
                size = (_int(image.get("width"), where), _int(image.get("height"), where))
                task = _Task(**{**task.__dict__, "size": size})
            for child in image:
                if child.tag in NON_BOX_SHAPES:
                    self.skipped.add(f"{child.tag} shapes (not boxes)")
                    continue
                if child.tag == "tag":
                    self.skipped.add("tags (frame-level, no box)")
                    continue
                if child.tag != "box":
                    continue
                label = child.get("label")
                bwhere = f"{where}, box {label!r}"
                if label is None:
                    raise AnnotationError(f"{self.path}: {where}, box: missing attribute label")
                box = self.box(child, task, video, bwhere)
                actions = self.shape_actions(child, label, task, bwhere, None)
                if actions is None:
                    self.skipped.add(f"boxes of labels without attribute {self.actions.attribute!r}")
                    continue
                ident = child.get("track_id") or child.get("group_id")
                if ident in (None, ""):
                    self.next_person += 1
                    person = self.next_person
                    self.skipped.add("boxes without track_id or group_id: given new person ids (not skipped)")
                else:
                    person = _int(ident, f"{self.path}: {bwhere}: track_id/group_id")
                track = Track(person_id=person, interpolate=False, where=bwhere)
                track.shapes.append(KeyShape(frame, box, actions, shown=True, continues=False))
                track.finish()
                annotations.tracks.append(track)


def read_cvat(path: str | Path, actions: ActionSpec, videos: VideoResolver, skipped: Skipped,
              flavour: str = "video") -> list[VideoAnnotations]:
    """One CVAT XML file -> its videos' annotations (`flavour`: "video" or "images")."""
    reader = _Reader(Path(path), actions, videos, skipped)
    has_tracks = reader.root.find("track") is not None
    has_images = reader.root.find("image") is not None
    if flavour == "video":
        if has_images and not has_tracks:
            raise AnnotationError(f"{path}: a 'CVAT for images' export (<image> elements); import it as cvat-images")
        reader.read_tracks()
    else:
        if has_tracks and not has_images:
            raise AnnotationError(f"{path}: a 'CVAT for video' export (<track> elements); import it as cvat-video")
        reader.read_images()
    for task in reader.tasks.values():  # tasks without any track still annotate their frames (no persons)
        try:
            reader.video_of(task)
        except AnnotationError:
            if task.source or task.name:
                raise
    return list(reader.out.values())


# ------------------------------------------------------------------------------------------------
# Writing


def _xml_number(value: float) -> str:
    return repr(float(value))  # full precision: a re-import gives back the same boxes


def write_cvat_video(path, videos: list[dict], label_names: list[str], actions: ActionSpec,
                     write) -> None:
    """Write a "CVAT for video 1.1" file with one task per video.

    `videos`: [{"name": file name, "id": task id, "size": (w, h), "frames": count,
                "tracks": [{"person_id": int, "shapes": [(frame, box_abs (4,), actions set, outside bool)]}]}]
    `labels` mode: one track per person and action, grouped by `group_id` = person id, outside where the
    person is not doing that action. `attribute:NAME` mode: one `person` track per person, a mutable text
    attribute NAME holding the comma-separated actions. `write(text)` receives the file's text.
    """
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>",
           "    <project>", "      <name>sfdet predictions</name>", "      <tasks>"]
    for video in videos:
        w, h = video["size"]
        out += ["        <task>", f"          <id>{video['id']}</id>", f"          <name>{escape(video['name'])}</name>",
                f"          <size>{video['frames']}</size>", "          <mode>interpolation</mode>",
                "          <start_frame>0</start_frame>", f"          <stop_frame>{video['frames'] - 1}</stop_frame>",
                "          <frame_filter></frame_filter>",
                f"          <original_size><width>{w}</width><height>{h}</height></original_size>",
                f"          <source>{escape(video['name'])}</source>", "        </task>"]
    out += ["      </tasks>", "      <labels>"]
    if actions.mode == "labels":
        for name in label_names:
            out.append(f"        <label><name>{escape(name)}</name><type>rectangle</type><attributes/></label>")
    else:
        out.append(f"        <label><name>person</name><type>rectangle</type><attributes><attribute>"
                   f"<name>{escape(actions.attribute)}</name><mutable>True</mutable><input_type>text</input_type>"
                   f"<default_value></default_value><values></values></attribute></attributes></label>")
    out += ["      </labels>", "    </project>", "  </meta>"]
    track_id = 0
    for video in videos:
        for person in video["tracks"]:
            shapes = sorted(person["shapes"], key=lambda s: s[0])
            if actions.mode == "labels":
                names = [n for n in label_names if any(n in s[2] for s in shapes)]
                for name in names:
                    body = []
                    for frame, box, acts, outside in shapes:
                        body.append(_box_xml(frame, box, outside or name not in acts))
                    out.append(f'  <track id="{track_id}" label={quoteattr(name)} source="auto" '
                               f'group_id="{person["person_id"]}" task_id="{video["id"]}">')
                    out += body
                    out.append("  </track>")
                    track_id += 1
            else:
                out.append(f'  <track id="{person["person_id"]}" label="person" source="auto" task_id="{video["id"]}">')
                for frame, box, acts, outside in shapes:
                    attr = ",".join(n for n in label_names if n in acts)
                    out.append(_box_xml(frame, box, outside, f'<attribute name={quoteattr(actions.attribute)}>'
                                                             f'{escape(attr)}</attribute>'))
                out.append("  </track>")
    out.append("</annotations>")
    write("\n".join(out) + "\n")


def _box_xml(frame: int, box, outside: bool, inner: str = "") -> str:
    coords = " ".join(f'{k}="{_xml_number(float(v))}"' for k, v in zip(("xtl", "ytl", "xbr", "ybr"), box))
    return (f'    <box frame="{frame}" keyframe="1" outside="{int(bool(outside))}" occluded="0" {coords} '
            f'z_order="0">{inner}</box>')
