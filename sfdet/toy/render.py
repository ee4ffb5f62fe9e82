"""Pixels of the synthetic toy scenes: background texture, stick-figure bodies, distractors.

Pure geometry and drawing, no randomness and no actions: `sfdet.toy.generate` decides
what happens (who is where, doing what) and calls these functions per frame.

Shapes are drawn as signed distance fields (SDFs): each part (a thick segment,
a disc, a box) is evaluated with numpy over its own bounding box only, then the
parts of one object are composited painter-style (later parts on top), each with
a 1-pixel dark outline, the outer silhouette anti-aliased. About 5-7 ms of CPU per
320x180 frame with 4 people. Alongside the RGB canvas an `object_ids` map
(H, W) int32 records which object is visible at each pixel (-1: background),
from which the annotations take the tight box of each person's *visible* pixels.

Coordinates are image pixels, x right and y down; a pixel (row i, col j) has its
centre at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTLINE_RGB = np.array([24.0, 22.0, 26.0], dtype=np.float32)

# Body proportions in units of the standing height (sole to top of head).
ANKLE_HEIGHT = 0.03
THIGH_LENGTH = 0.245
SHIN_LENGTH = 0.25
FOOT_LENGTH = 0.075
TORSO_LENGTH = 0.30  # hip to neck
NECK_TO_HEAD = 0.09  # neck to head centre
SHOULDER_DROP = 0.035  # shoulder below the neck
UPPER_ARM_LENGTH = 0.17
FOREARM_LENGTH = 0.16
HEAD_RADIUS = 0.072
TORSO_RADIUS = 0.068
THIGH_RADIUS = 0.043
SHIN_RADIUS = 0.036
FOOT_RADIUS = 0.022
UPPER_ARM_RADIUS = 0.031
FOREARM_RADIUS = 0.026
HAND_RADIUS = 0.05  # white gloves: the hands are what the arm actions move, so they stand out
GLOVE_RGB = (250.0, 250.0, 242.0)

# The joint angles of a pose, radians. Body angles are measured from "pointing
# straight down", positive towards the facing direction: a limb at angle a points
# along (facing * sin a, cos a) in image coordinates. Knees bend backwards
# (shin = thigh - knee), elbows forwards (forearm = upper arm + elbow). `lift` is
# the height of the soles above the ground (jumps), in standing heights.
POSE_FIELDS = (
    "lean",
    "thigh_front",
    "knee_front",
    "thigh_back",
    "knee_back",
    "arm_front",
    "elbow_front",
    "arm_back",
    "elbow_back",
    "lift",
)
POSE_INDEX = {name: i for i, name in enumerate(POSE_FIELDS)}

# Colour slots of a figure, indexed by its parts below (GLOVE: the same for everyone).
SHIRT, SLEEVE, SKIN, PANTS, SHOES, HAIR, GLOVE = range(7)


@dataclass(frozen=True)
class Capsules:
    """Thick line segments of one object, in drawing order (later ones on top).

    p0, p1: (N, 2) float endpoints (x, y) in pixels; radius: (N,) pixels;
    rgb: (N, 3) float fill colours.
    """

    p0: np.ndarray
    p1: np.ndarray
    radius: np.ndarray
    rgb: np.ndarray


def _direction(angle: np.ndarray | float, facing: float) -> np.ndarray:
    """Unit vector (x, y) in image coordinates of a body angle (0 = down)."""
    return np.array([facing * np.sin(angle), np.cos(angle)], dtype=np.float64)


def figure_joints(pose: np.ndarray, foot_x: float, ground_y: float, height: float, facing: float) -> dict:
    """Joint positions (x, y) in pixels of a figure standing on `ground_y`.

    pose: (len(POSE_FIELDS),) angles, see POSE_FIELDS. The hip height follows
    from the legs so that the lower foot touches the ground (plus `lift`).
    """
    p = {name: float(pose[i]) for name, i in POSE_INDEX.items()}
    legs = {}
    drop = 0.0
    for side in ("front", "back"):
        thigh = p[f"thigh_{side}"]
        shin = thigh - p[f"knee_{side}"]
        legs[side] = (thigh, shin)
        drop = max(drop, THIGH_LENGTH * np.cos(thigh) + SHIN_LENGTH * np.cos(shin))
    hip = np.array([foot_x, ground_y - height * (p["lift"] + ANKLE_HEIGHT + drop)])

    up = np.array([facing * np.sin(p["lean"]), -np.cos(p["lean"])])  # torso leans forward by `lean`
    joints = {"hip": hip, "neck": hip + up * TORSO_LENGTH * height}
    joints["head"] = joints["neck"] + up * NECK_TO_HEAD * height
    joints["shoulder"] = joints["neck"] - up * SHOULDER_DROP * height
    for side, (thigh, shin) in legs.items():
        knee = hip + _direction(thigh, facing) * THIGH_LENGTH * height
        ankle = knee + _direction(shin, facing) * SHIN_LENGTH * height
        joints[f"knee_{side}"] = knee
        joints[f"ankle_{side}"] = ankle
        joints[f"toe_{side}"] = ankle + np.array([facing * FOOT_LENGTH * height, 0.0])  # flat foot
    for side in ("front", "back"):
        upper = p[f"arm_{side}"]
        elbow = joints["shoulder"] + _direction(upper, facing) * UPPER_ARM_LENGTH * height
        joints[f"elbow_{side}"] = elbow
        joints[f"hand_{side}"] = elbow + _direction(upper + p[f"elbow_{side}"], facing) * FOREARM_LENGTH * height
    return joints


def figure_capsules(joints: dict, height: float, facing: float, colors: np.ndarray) -> Capsules:
    """The body parts of a figure as capsules, back arm and leg first, front arm last.

    colors: (6, 3) float RGB in the slot order SHIRT, SLEEVE, SKIN, PANTS, SHOES, HAIR (gloves: GLOVE_RGB).
    """
    j = joints
    head = j["head"]
    hair = head + np.array([-facing * 0.22, -0.3]) * HEAD_RADIUS * height
    parts = [  # (start, end, radius in heights, colour slot)
        (j["shoulder"], j["elbow_back"], UPPER_ARM_RADIUS, SLEEVE),
        (j["elbow_back"], j["hand_back"], FOREARM_RADIUS, SKIN),
        (j["hand_back"], j["hand_back"], HAND_RADIUS, GLOVE),
        (j["hip"], j["knee_back"], THIGH_RADIUS, PANTS),
        (j["knee_back"], j["ankle_back"], SHIN_RADIUS, PANTS),
        (j["ankle_back"], j["toe_back"], FOOT_RADIUS, SHOES),
        (j["hip"] + (j["neck"] - j["hip"]) * 0.1, j["neck"], TORSO_RADIUS, SHIRT),
        (j["hip"], j["knee_front"], THIGH_RADIUS, PANTS),
        (j["knee_front"], j["ankle_front"], SHIN_RADIUS, PANTS),
        (j["ankle_front"], j["toe_front"], FOOT_RADIUS, SHOES),
        (hair, hair, HEAD_RADIUS * 0.92, HAIR),
        (head, head, HEAD_RADIUS, SKIN),
        (j["shoulder"], j["elbow_front"], UPPER_ARM_RADIUS, SLEEVE),
        (j["elbow_front"], j["hand_front"], FOREARM_RADIUS, SKIN),
        (j["hand_front"], j["hand_front"], HAND_RADIUS, GLOVE),
    ]
    palette = np.vstack([np.asarray(colors, dtype=np.float32), np.array(GLOVE_RGB, dtype=np.float32)])
    return Capsules(
        p0=np.array([p[0] for p in parts], dtype=np.float32),
        p1=np.array([p[1] for p in parts], dtype=np.float32),
        radius=np.array([p[2] * height for p in parts], dtype=np.float32),
        rgb=palette[[p[3] for p in parts]],
    )


def _region(lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int]:
    """Integer pixel box (x0, x1, y0, y1), i.e. [x0, x1) x [y0, y1), covering the float box lo..hi."""
    return int(np.floor(lo[0])), int(np.ceil(hi[0])), int(np.floor(lo[1])), int(np.ceil(hi[1]))


def _pixel_centres(x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """(1, w) x and (h, 1) y coordinates of the pixel centres of a region."""
    xs = np.arange(x0 + 0.5, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0 + 0.5, y1, dtype=np.float32)[:, None]
    return xs, ys


def capsule_sdf(p0: np.ndarray, p1: np.ndarray, radius: float, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """(y1-y0, x1-x0) signed distance of each pixel centre to a capsule (negative inside).

    Written with in-place operations: this is the generator's innermost loop.
    """
    xs, ys = _pixel_centres(x0, x1, y0, y1)
    abx, aby = float(p1[0] - p0[0]), float(p1[1] - p0[1])
    inv = 1.0 / max(abx * abx + aby * aby, 1e-6)
    ax, ay = xs - np.float32(p0[0]), ys - np.float32(p0[1])
    t = ax * np.float32(abx * inv) + ay * np.float32(aby * inv)  # projection on the segment, (h, w)
    np.clip(t, 0, 1, out=t)
    dx = t * np.float32(-abx)
    dx += ax
    t *= np.float32(-aby)
    t += ay
    dx *= dx
    t *= t
    dx += t
    np.sqrt(dx, out=dx)
    dx -= np.float32(radius)
    return dx


def box_sdf(center: np.ndarray, half_size: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """(y1-y0, x1-x0) signed distance to an axis-aligned box with rounded corners."""
    xs, ys = _pixel_centres(x0, x1, y0, y1)
    corner = 2.0
    qx = np.abs(xs - np.float32(center[0])) - np.float32(half_size[0] - corner)
    qy = np.abs(ys - np.float32(center[1])) - np.float32(half_size[1] - corner)
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - np.float32(corner)


def composite(
    canvas: np.ndarray,
    object_ids: np.ndarray,
    object_id: int,
    region: tuple[int, int, int, int],
    parts: list[tuple[int, int, np.ndarray]],
    rgb: np.ndarray,
    outline: float = 1.0,
) -> int:
    """Paint one object made of parts, each with a dark outline, the silhouette anti-aliased.

    canvas: (H, W, 3) float32, modified in place; object_ids: (H, W) int32, set to
    `object_id` where the object covers at least half a pixel. region: the object's
    (x0, x1, y0, y1), which may extend past the canvas. parts: (x0, y0, sdf (h, w))
    in drawing order, each inside the region; rgb: (N, 3) their fill colours.
    Returns the object's area in pixels *including* what lies outside the canvas,
    so that visibility = visible pixels / area.
    """
    x0, x1, y0, y1 = region
    min_sdf = np.full((y1 - y0, x1 - x0), np.inf, dtype=np.float32)
    top_sdf = np.full_like(min_sdf, np.inf)
    top = np.zeros(min_sdf.shape, dtype=np.intp)
    for k, (px0, py0, sdf) in enumerate(parts):  # painter's algorithm: later parts cover earlier ones
        window = (slice(py0 - y0, py0 - y0 + sdf.shape[0]), slice(px0 - x0, px0 - x0 + sdf.shape[1]))
        np.minimum(min_sdf[window], sdf, out=min_sdf[window])
        covered = sdf < outline + 0.5
        np.copyto(top[window], k, where=covered)
        np.copyto(top_sdf[window], sdf, where=covered)
    alpha = np.minimum(np.maximum(np.float32(outline + 0.5) - min_sdf, 0), 1)
    solid = alpha >= 0.5
    area = int(np.count_nonzero(solid))

    height, width = object_ids.shape
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return area
    inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    fill = np.minimum(np.maximum(np.float32(0.5) - top_sdf[inner], 0), 1)[..., None]
    color = (rgb - OUTLINE_RGB).take(top[inner], axis=0) * fill + OUTLINE_RGB  # take: 4x faster than rgb[top]
    view = canvas[cy0:cy1, cx0:cx1]
    view += (color - view) * alpha[inner][..., None]
    object_ids[cy0:cy1, cx0:cx1][solid[inner]] = object_id
    return area


_MARGIN = 2.5  # pixels around a shape: outline + anti-aliasing


def draw_capsules(canvas: np.ndarray, object_ids: np.ndarray, object_id: int, shape: Capsules) -> int:
    """Draw a capsule object (a figure or a ball); returns its full area in pixels (0 if off-canvas)."""
    lo = np.minimum(shape.p0, shape.p1) - shape.radius[:, None] - _MARGIN
    hi = np.maximum(shape.p0, shape.p1) + shape.radius[:, None] + _MARGIN
    region = _region(lo.min(0), hi.max(0))
    if region[1] <= 0 or region[3] <= 0 or region[0] >= canvas.shape[1] or region[2] >= canvas.shape[0]:
        return 0
    parts = []
    for k in range(len(shape.radius)):
        x0, x1, y0, y1 = _region(lo[k], hi[k])
        parts.append((x0, y0, capsule_sdf(shape.p0[k], shape.p1[k], shape.radius[k], x0, x1, y0, y1)))
    return composite(canvas, object_ids, object_id, region, parts, shape.rgb)


def draw_box(
    canvas: np.ndarray, object_ids: np.ndarray, object_id: int, center: np.ndarray, half_size: np.ndarray, rgb
) -> int:
    """Draw a box with a lighter band near its top (a crate); returns its full area in pixels."""
    region = _region(center - half_size - _MARGIN, center + half_size + _MARGIN)
    if region[1] <= 0 or region[3] <= 0 or region[0] >= canvas.shape[1] or region[2] >= canvas.shape[0]:
        return 0
    x0, x1, y0, y1 = region
    band_center = center - np.array([0.0, half_size[1] * 0.55])
    band_half = np.array([half_size[0] * 0.8, half_size[1] * 0.18])
    parts = [(x0, y0, box_sdf(center, half_size, *region)), (x0, y0, box_sdf(band_center, band_half, *region))]
    rgb = np.asarray(rgb, dtype=np.float32)
    return composite(canvas, object_ids, object_id, region, parts, np.stack([rgb, np.minimum(rgb * 1.35 + 30, 255)]))


def periodic_noise(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """(height, width) smooth noise in [-1, 1] that wraps around horizontally.

    Low-pass filtered white noise (Gaussian in the Fourier domain, `scale` pixels),
    so that a background panned by any offset has no seam.
    """
    white = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    smooth = np.real(np.fft.ifft2(np.fft.fft2(white) * np.exp(-((fx**2 + fy**2) * (np.pi * scale) ** 2))))
    return smooth / (np.abs(smooth).max() + 1e-9)


def background_texture(rng: np.random.Generator, height: int, width: int, horizon: float) -> np.ndarray:
    """(height, width, 3) float32 muted scene texture, periodic in x.

    A wall/sky band with vertical stripes (a fence, buildings) above `horizon`
    (fraction of the height) and textured ground with horizontal streaks below.
    """
    y = (np.arange(height) / height)[:, None, None]
    wall_rgb = rng.uniform(90, 170, size=3)
    ground_rgb = rng.uniform(70, 150, size=3)
    coarse = periodic_noise(rng, height, width, 14.0)[..., None]
    fine = periodic_noise(rng, height, width, 1.5)[..., None]
    period = width // int(rng.integers(12, 30))
    stripes = (np.arange(width) % period < period * rng.uniform(0.2, 0.6)).astype(np.float64)
    stripe_rgb = rng.uniform(-35, 35, size=3)
    wall = wall_rgb + 40 * coarse + 12 * fine + stripes[None, :, None] * stripe_rgb
    streaks = periodic_noise(rng, height, width, 3.0)
    streaks = np.repeat(streaks[:, :1], width, axis=1) * 0.6 + 0.4 * np.roll(streaks, 7, axis=0)
    ground = ground_rgb + 30 * coarse + 22 * fine + 18 * streaks[..., None]
    texture = np.where(y < horizon, wall, ground)
    texture = np.where(np.abs(y - horizon) < 1.0 / height, wall_rgb * 0.55, texture)  # the horizon line
    return np.clip(texture, 0, 255).astype(np.float32)


def pan_background(texture: np.ndarray, offset: float, width: int) -> np.ndarray:
    """(H, width, 3) float32 window at a sub-pixel x offset of a periodic texture.

    texture: (H, period + width + 1, 3), a periodic texture with its first
    width + 1 columns repeated at the end (`extend_periodic`), so every window is a slice.
    """
    period = texture.shape[1] - width - 1
    start = int(np.floor(offset))
    frac = np.float32(offset - start)
    start %= period
    window = texture[:, start : start + width + 1]
    return window[:, :-1] * (1 - frac) + window[:, 1:] * frac


def extend_periodic(texture: np.ndarray, width: int) -> np.ndarray:
    """Append the first width + 1 columns of a periodic texture (for `pan_background`)."""
    return np.concatenate([texture, texture[:, : width + 1]], axis=1)
