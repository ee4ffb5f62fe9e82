"""Finding the video an annotation file refers to and reading its frames' real timestamps.

`VideoResolver(dir)` maps the names tools write (a CVAT task's `<source>`, a Label Studio URL such as
`/data/upload/3/1a2b3c4d-walk.mp4`, a CSV's `video` column) to a file of `dir`, and reads each video's frame
times once: the presentation timestamps of its frames from the stream's start (`sfdet.data.timing`), taken
from the demuxed packets (no decoding; the decoded frames are used when packets carry no timestamps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

from sfdet.annotations.model import AnnotationError
from sfdet.data.config import DataConfig
from sfdet.data.timing import VideoFile, nearest_frame

VIDEO_EXTENSIONS = tuple(DataConfig().video_extensions)
# Label Studio prefixes uploaded files with 8 hex digits and a dash.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-", re.I)


@dataclass
class VideoSource:
    path: Path
    video_id: str
    times: list[float]  # seconds from the stream's start, increasing, one per decoded frame
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.times)

    def frame_of_time(self, t: float) -> int:
        return nearest_frame(self.times, t)


def read_frame_times(path: Path) -> tuple[list[float], int, int]:
    """(frame times, width, height) of a video: its frames' presentation times from the stream's start."""
    with VideoFile(path) as video:
        width, height = video.info.width, video.info.height
        pts = []
        for packet in video.container.demux(video.stream):
            if packet.size == 0:
                continue  # the flush packet
            if packet.pts is None:
                pts = None
                break
            pts.append(packet.pts)
        if pts is not None:
            base = video.start_pts
            times = sorted(float((p - base) * video.stream.time_base) for p in pts)
        else:
            video.seek(None)
            times = [float(t) for t, _ in video.timed_frames()]
    if not times:
        raise AnnotationError(f"{path}: no video frames")
    return times, width, height


class VideoResolver:
    """Video names -> `VideoSource`s of the files in `directory` (each read once)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise AnnotationError(f"{self.directory}: --videos is not a folder")
        self._files = {p.name: p for p in sorted(self.directory.iterdir())
                       if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS}
        self._by_stem: dict[str, list[Path]] = {}
        for path in self._files.values():
            self._by_stem.setdefault(path.stem, []).append(path)
        self._sources: dict[Path, VideoSource] = {}

    def find(self, *names: str) -> Path | None:
        """The first name that matches a video: exact file name, then stem, then a Label Studio upload name."""
        for name in names:
            if not name:
                continue
            if "://" in name or name.startswith("/data/"):
                url = urlparse(name)
                local = parse_qs(url.query).get("d")  # Label Studio local storage: /data/local-files/?d=dir/a.mp4
                name = local[0] if local else unquote(url.path)
            base = PurePosixPath(name.replace("\\", "/")).name
            candidates = [base, PurePosixPath(base).stem, _UPLOAD_PREFIX.sub("", base),
                          PurePosixPath(_UPLOAD_PREFIX.sub("", base)).stem]
            for candidate in candidates:
                if candidate in self._files:
                    return self._files[candidate]
                if len(self._by_stem.get(candidate, [])) == 1:
                    return self._by_stem[candidate][0]
        return None

    def get(self, where: str, *names: str) -> VideoSource:
        path = self.find(*names)
        if path is None:
            shown = next((n for n in names if n), "?")
            raise AnnotationError(f"{where}: no video for {shown!r} in {self.directory} "
                                  f"(looked for the file name and its stem with {', '.join(VIDEO_EXTENSIONS)})")
        if path not in self._sources:
            times, width, height = read_frame_times(path)
            self._sources[path] = VideoSource(path, path.stem, times, width, height)
        return self._sources[path]
