"""Rendering: boxes, track ids and action labels drawn on frames, written as H.264 mp4.

Colours are per track (a fixed palette indexed by track id), labels sit on a
filled background above the box so they stay readable on any frame, the
person's current action segments (`sfdet.predict.timelines`) on a white band
at the box's bottom, and
frames go to the encoder one at a time (nothing is held). A rotated video
(display matrix) is drawn and written upright, the frames and size the
prediction saw (`sfdet.data.timing.Orientation`), with no rotation metadata.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sfdet.errors import SfdetError

# 12 well-separated colours (Tableau-like); text is black or white by contrast.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (255, 187, 120), (152, 223, 138),
]  # fmt: skip


SEGMENT_BACKGROUND = (255, 255, 255)  # behind a person's current action segments


def track_colour(track_id: int) -> tuple[int, int, int]:
    return PALETTE[int(track_id) % len(PALETTE)]


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _font(frame_height: int):
    size = max(10, round(frame_height / 36))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


class Overlay:
    """What is drawn on frames: persons of the latest keyframe, held until the next one."""

    def __init__(self, boxes_norm: np.ndarray, track_ids: np.ndarray, labels: list[list[str]],
                 segments: list[list[str]] | None = None):
        self.boxes_norm = np.asarray(boxes_norm, dtype=np.float64).reshape(-1, 4)  # (N,4)
        self.track_ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)  # (N,)
        self.labels = labels  # N lists of "name 0.93" lines
        # N lists of the person's current action segments ("name since 12s (0.81)"), drawn in a white band
        self.segments = segments if segments is not None else [[] for _ in range(len(self.track_ids))]

    @classmethod
    def empty(cls) -> "Overlay":
        return cls(np.zeros((0, 4)), np.zeros(0, np.int64), [])


def draw_overlay(frame_rgb: np.ndarray, overlay: Overlay) -> np.ndarray:
    """(H,W,3) uint8 RGB -> a new (H,W,3) uint8 frame with boxes and labels drawn."""
    if len(overlay.boxes_norm) == 0:
        return frame_rgb
    height, width = frame_rgb.shape[:2]
    image = Image.fromarray(frame_rgb)
    draw = ImageDraw.Draw(image)
    font = _font(height)
    line_width = max(1, round(height / 240))
    scale = np.array([width, height, width, height])
    for box_norm, track_id, lines, segments in zip(overlay.boxes_norm, overlay.track_ids, overlay.labels,
                                                   overlay.segments):
        x1, y1, x2, y2 = (box_norm * scale).tolist()
        colour = track_colour(track_id)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line_width)
        text = "\n".join([f"#{track_id}"] + lines)
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=1)
        text_w, text_h = right - left + 4, bottom - top + 4
        # Above the box when there is room, else inside its top edge.
        tx = min(max(0.0, x1), max(0.0, width - text_w))
        ty = y1 - text_h if y1 - text_h >= 0 else max(0.0, y1)
        draw.rectangle([tx, ty, tx + text_w, ty + text_h], fill=colour)
        draw.multiline_text((tx + 2 - left, ty + 2 - top), text, fill=_text_colour(colour), font=font, spacing=1)
        if segments:  # the current segments: a white band, text in the track's colour, at the box's bottom
            seg_text = "\n".join(segments)
            left, top, right, bottom = draw.multiline_textbbox((0, 0), seg_text, font=font, spacing=1)
            seg_w, seg_h = right - left + 4, bottom - top + 4
            sx = min(max(0.0, x1), max(0.0, width - seg_w))
            sy = min(max(0.0, y2 - seg_h), max(0.0, height - seg_h))
            draw.rectangle([sx, sy, sx + seg_w, sy + seg_h], fill=SEGMENT_BACKGROUND, outline=colour)
            draw.multiline_text((sx + 2 - left, sy + 2 - top), seg_text, fill=colour, font=font, spacing=1)
    return np.asarray(image)


class H264Writer:
    """Streams RGB frames into an H.264 mp4 at a given size and frame rate.

    yuv420p needs even sizes; an odd-sized video is written as yuv444p so the
    output keeps the input's exact size.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float | Fraction, crf: int = 20):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(100000)
        try:
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise SfdetError(f"cannot write {self.path}: {exc}") from None
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self._stream.codec_context.time_base = Fraction(1, 1) / rate
        self.frames_written = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        frame.pts = self.frames_written
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None


class VideoRenderer:
    """Renders a whole video by decoding it a second time, in step with the keyframe results.

    The first pass (prediction) runs ahead; this pass writes frame `i` once the
    keyframe shown on it is known, so it holds no frames: `show(centre, overlay)`
    writes every frame before `centre` with the previous overlay, then switches
    to `overlay` (held until the next keyframe); `finish()` writes the rest.
    """

    def __init__(self, video_path: str | Path, out_path: str | Path, fps: float):
        from sfdet.predict.stream import decode_frames, open_video

        info = open_video(video_path)
        self._frames = decode_frames(video_path)
        self._writer = H264Writer(out_path, info.width, info.height, Fraction(fps).limit_denominator(1_001_000))
        self._overlay = Overlay.empty()

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def _write_until(self, end_index: int | None) -> None:
        while end_index is None or self._writer.frames_written < end_index:
            frame = next(self._frames, None)
            if frame is None:
                return
            self._writer.write(draw_overlay(frame.rgb, self._overlay))

    def show(self, centre_index: int, overlay: Overlay) -> None:
        self._write_until(centre_index)
        self._overlay = overlay

    def finish(self) -> None:
        self._write_until(None)
        self.close()

    def close(self) -> None:
        self._frames.close()
        self._writer.close()
