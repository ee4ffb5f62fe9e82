"""`sfdet data export`: predict's `<stem>.tracks.csv` -> pre-annotations for CVAT or Label Studio.

Each tracks CSV (AVA GT layout: `video_id,timestamp,x1,y1,x2,y2,action_id,person_id`, one row per action above
predict's `--render-threshold`, person id = track id) becomes one task per video: a track per person with a
box at each keyframe it was seen on (the keyframe's centre frame, from the video's own frame times), ended
(`outside` / a disabled keyframe) at the next keyframe it is missing from. Importing the file back with
`sfdet data import` at the same keyframe rate gives the same boxes, person ids and actions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sfdet.annotations.cvat import ActionSpec, write_cvat_video
from sfdet.annotations.labelstudio import write_labelstudio
from sfdet.annotations.model import AnnotationError
from sfdet.annotations.videos import VideoResolver
from sfdet.data import ava
from sfdet.errors import DataError
from sfdet.fileio import atomic_write_text

EXPORT_FORMATS = ("cvat", "labelstudio")


def tracks_to_videos(tracks_csvs: list, resolver: VideoResolver, label_map: dict[int, str]) -> list[dict]:
    videos = []
    for path in tracks_csvs:
        try:
            gt = ava.read_gt_csv(path, label_map)
        except DataError as exc:
            raise AnnotationError(str(exc)) from None
        for video_id, rows in gt.groupby("video_id", sort=True):
            video = resolver.get(str(path), str(video_id))
            timestamps = np.sort(rows["timestamp"].unique())
            period = float(np.min(np.diff(timestamps))) if len(timestamps) > 1 else None
            frames = {float(t): video.frame_of_time(float(t)) for t in timestamps}
            tracks = []
            for person, person_rows in rows.groupby("person_id", sort=True):
                by_time: dict[float, tuple] = {}
                for row in person_rows.itertuples(index=False):
                    box = (row.x1 * video.width, row.y1 * video.height, row.x2 * video.width, row.y2 * video.height)
                    entry = by_time.setdefault(float(row.timestamp), (box, set()))
                    entry[1].add(label_map[int(row.action_id)])
                shapes = []
                times = sorted(by_time)
                for i, t in enumerate(times):
                    box, actions = by_time[t]
                    shapes.append((frames[t], box, actions, False))
                    if period is None:
                        continue
                    following = t + period
                    if i + 1 < len(times) and abs(times[i + 1] - following) < 1e-6 * max(1.0, period):
                        continue  # seen on the next keyframe too
                    end = video.frame_of_time(following)
                    if end > frames[t]:
                        shapes.append((end, box, actions, True))  # gone at the next keyframe
                tracks.append({"person_id": int(person), "shapes": shapes})
            videos.append({"name": video.path.name, "id": len(videos), "size": (video.width, video.height),
                           "frames": video.num_frames, "duration": video.times[-1], "times": video.times,
                           "url": f"/data/local-files/?d={video.path.name}", "tracks": tracks})
    return videos


def export_tracks(fmt: str, tracks_csvs: list, videos_dir, out, label_map_path,
                  actions_as: str = "labels") -> Path:
    """Write the pre-annotation file `out` (all or nothing); returns its path."""
    if fmt not in EXPORT_FORMATS:
        raise AnnotationError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    actions = ActionSpec.parse(actions_as)
    label_map = ava.read_label_map(label_map_path)
    videos = tracks_to_videos(tracks_csvs, VideoResolver(videos_dir), label_map)
    names = list(label_map.values())
    if fmt == "cvat":
        parts: list[str] = []
        write_cvat_video(out, videos, names, actions, parts.append)
        text = "".join(parts)
    else:
        text = write_labelstudio(videos, names, actions)
    return atomic_write_text(out, text)
