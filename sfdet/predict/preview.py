"""`sfdet predict SOURCE --preview PORT`: a live view on http://127.0.0.1:PORT/ (stdlib http.server + PIL).

Endpoints:
- `/`: a small page: the annotated frames, the latest actions per track, and the status, refreshed;
- `/stream.mjpg`: the annotated frames as MJPEG (`multipart/x-mixed-replace`), at most `max_fps`;
- `/frame.jpg`: the latest annotated frame;
- `/status.json`: fps in, keyframes/s scored, dropped keyframes, latency percentiles, queue sizes;
- `/tracks.json`: the latest actions of each track (most recent first).

Frames are only referenced when offered (the newest one); they are drawn (`render.draw_overlay`, the
latest keyframe's boxes, ids and actions) and JPEG-encoded when a client asks, once per frame for all
clients. Nothing is done while nobody watches.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np
from PIL import Image

from sfdet.errors import SfdetError
from sfdet.predict.render import Overlay, draw_overlay

MAX_TRACKS = 50
PREVIEW_MAX_WIDTH = 960

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sfdet live</title>
<style>
body { font: 14px sans-serif; margin: 12px; background: #111; color: #eee; }
#frame { display: block; max-width: 100%; background: #000; min-width: 320px; min-height: 180px; }
table { border-collapse: collapse; margin-top: 8px; }
td, th { padding: 2px 8px; border-bottom: 1px solid #333; text-align: left; }
#status { margin-top: 8px; color: #aaa; }
</style></head>
<body>
<div id="title">sfdet live</div>
<img id="frame" alt="annotated frames">
<div id="status">waiting for the stream...</div>
<table id="tracks"><thead><tr><th>track</th><th>time</th><th>actions</th></tr></thead><tbody></tbody></table>
<script>
const img = document.getElementById("frame");
let framesShown = 0;
img.addEventListener("load", () => { framesShown += 1; document.body.dataset.frames = framesShown; });
// Set after the page's load event: an MJPEG image never finishes loading.
window.addEventListener("load", () => { img.src = "/stream.mjpg"; });
function fmt(v) { return v === null || v === undefined ? "-" : v; }
async function poll() {
  try {
    const s = await (await fetch("/status.json", {cache: "no-store"})).json();
    const l = s.latency_s || {};
    document.getElementById("title").textContent = "sfdet live: " + s.source + " (" + s.state + ")";
    document.getElementById("status").textContent =
      "in " + s.fps_in + " fps, " + s.frames_in + " frames | scored " + s.keyframes_scored +
      " keyframes (" + s.keyframes_per_s + "/s), dropped " + s.dropped +
      " | latency p50 " + fmt(l.p50) + " s, p95 " + fmt(l.p95) + " s, max " + fmt(l.max) + " s";
    const tracks = await (await fetch("/tracks.json", {cache: "no-store"})).json();
    const body = document.querySelector("#tracks tbody");
    body.innerHTML = "";
    for (const t of tracks) {
      const row = body.insertRow();
      row.insertCell().textContent = "#" + t.track_id;
      row.insertCell().textContent = t.timestamp;
      row.insertCell().textContent = t.actions.map(a => a.name + " " + a.score.toFixed(2)).join(", ");
    }
  } catch (e) { document.getElementById("status").textContent = "preview stopped"; }
}
setInterval(poll, 500); poll();
</script>
</body></html>
"""


class PreviewServer:
    """The preview's state and HTTP server (a daemon thread). `port` 0 picks a free one (`self.port`)."""

    def __init__(self, port: int, host: str = "127.0.0.1", max_fps: float = 10.0, jpeg_quality: int = 80):
        self.max_fps = max_fps
        self.jpeg_quality = jpeg_quality
        self.status: Callable[[], dict] = lambda: {"state": "opening"}
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None  # (seq, bytes) of the last encoded frame
        self._overlay = Overlay.empty()
        self._tracks: dict[int, dict] = {}
        self._closed = False
        self.frames_served = 0
        handler = _handler_for(self)
        try:
            self._server = ThreadingHTTPServer((host, int(port)), handler)
        except OSError as exc:
            raise SfdetError(f"--preview {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self._server.daemon_threads = True
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="preview", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    # -- fed by the run ---------------------------------------------------------------------

    def offer_frame(self, rgb: np.ndarray) -> None:
        """The newest frame (only referenced; drawn and encoded when a client wants it)."""
        with self._cond:
            self._frame = rgb
            self._seq += 1
            self._cond.notify_all()

    def update_keyframe(self, keyframe, scores, label_map: dict[int, str], threshold: float) -> None:
        """A written keyframe: its boxes become the overlay, its persons' actions the tracks' latest."""
        names = list(label_map.values())
        labels, now, latest = [], time.time(), {}
        for i, track_id in enumerate(keyframe.track_ids):
            person = scores[i] if scores is not None else np.zeros(len(names))
            top = np.argsort(-person, kind="stable")[:5]
            labels.append([f"{names[j]} {person[j]:.2f}" for j in top[:3] if person[j] >= threshold])
            latest[int(track_id)] = {
                "track_id": int(track_id), "timestamp": keyframe.timestamp, "updated_at": round(now, 3),
                "box_norm": [round(float(v), 4) for v in keyframe.boxes_norm[i]],
                "actions": [{"name": names[j], "score": round(float(person[j]), 4)} for j in top],
            }
        with self._cond:  # the HTTP threads read these
            self._tracks.update(latest)
            if len(self._tracks) > MAX_TRACKS:
                for track_id in sorted(self._tracks, key=lambda t: self._tracks[t]["updated_at"])[:-MAX_TRACKS]:
                    del self._tracks[track_id]
            self._overlay = Overlay(keyframe.boxes_norm, keyframe.track_ids, labels)
            self._jpeg = None  # redraw the current frame with the new boxes
            self._cond.notify_all()

    def tracks(self) -> list[dict]:
        with self._cond:
            tracks = list(self._tracks.values())
        return sorted(tracks, key=lambda t: (-t["updated_at"], t["track_id"]))

    # -- served ---------------------------------------------------------------------------------

    def jpeg(self, after_seq: int = -1, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """The latest annotated frame as JPEG, once there is a frame newer than `after_seq` (else None)."""
        with self._cond:
            deadline = time.monotonic() + timeout
            while (self._frame is None or self._seq <= after_seq) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return after_seq, None
                self._cond.wait(left)
            if self._frame is None:
                return after_seq, None
            if self._jpeg is not None and self._jpeg[0] == self._seq:
                return self._jpeg
            seq, frame, overlay = self._seq, self._frame, self._overlay
        image = Image.fromarray(draw_overlay(frame, overlay))
        if image.width > PREVIEW_MAX_WIDTH:
            image = image.resize((PREVIEW_MAX_WIDTH, round(image.height * PREVIEW_MAX_WIDTH / image.width)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.jpeg_quality)
        encoded = (seq, buffer.getvalue())
        with self._cond:
            if self._seq == seq:
                self._jpeg = encoded
        return encoded

    def full_status(self) -> dict:
        try:
            status = dict(self.status())
        except Exception as exc:  # never break the page
            status = {"state": f"status unavailable ({type(exc).__name__})"}
        status["preview_frames_served"] = self.frames_served
        return status

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


def _handler_for(preview: PreviewServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    self._send(PAGE.encode(), "text/html; charset=utf-8")
                elif path == "/status.json":
                    self._send(json.dumps(preview.full_status()).encode(), "application/json")
                elif path == "/tracks.json":
                    self._send(json.dumps(preview.tracks()).encode(), "application/json")
                elif path == "/frame.jpg":
                    _, jpeg = preview.jpeg(-1, timeout=5.0)
                    if jpeg is None:
                        self._send(b"no frame yet\n", "text/plain", 503)
                    else:
                        preview.frames_served += 1
                        self._send(jpeg, "image/jpeg")
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(b"not found\n", "text/plain", 404)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq, period = -1, 1.0 / preview.max_fps
            while not preview.closed:
                tick = time.monotonic()
                seq, jpeg = preview.jpeg(seq, timeout=1.0)
                if jpeg is None:
                    continue
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
                preview.frames_served += 1
                time.sleep(max(0.0, period - (time.monotonic() - tick)))

    return Handler
