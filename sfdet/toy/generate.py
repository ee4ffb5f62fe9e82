"""The synthetic AVA-format dataset (`sfdet toy-data`): articulated stick people acting on moving scenes.

Why: every stage of sfdet (data checks, training, evaluation, the Fast-vs-Slow
ablation, the person-detector fine-tuner) needs a dataset that is small, made
offline in under a minute on 2 CPU cores, and learnable by a tiny 3D CNN.

Scenes (320x180, 15 fps, 30 s by default). 3-5 person-like figures (head with
hair, torso, two arms with elbows, two legs with knees and feet, thick outlined
limbs, each figure with its own shirt/trousers/skin/hair colours) at heights 45%-90%
of the frame, feet lower in the frame for bigger (nearer) figures, drawn far to
near so that nearer figures occlude farther ones. 2-4 distractors (bouncing balls,
sliding/hopping crates) share the depth order. The background is a periodic
noise-and-stripes texture panned by a slowly oscillating camera; people and
distractors move with it. Walking/running people enter and leave the frame.

Classes (label_map ids). Every annotated person has exactly one pose action per
keyframe plus zero or more arm actions (waving and swiping only while it
stands or crouches: a walking, running or jumping body swings its arms; all
figures wear white gloves, so the hands that these actions move stand out):
    1 stand, 2 walk (0.8 Hz gait, 0.3 heights/s), 3 run (1.5 Hz, 0.75 heights/s, lean, bent arms),
    4 jump (1 jump/s), 5 crouch                                          -- pose actions
    6 wave_slow   front forearm waves +-40 deg at 0.3 Hz (0.02 cycles/frame)
    7 wave_fast   the same wave at 1.875 - 0.3 = 1.575 Hz (1/8 - 0.02 = 0.105 cycles/frame)
    8 swipe_down  back hand sweeps down in front of the chest (0.24 heights) and jumps back
                  up, 1.875 Hz (1/8 cycles/frame)
    9 swipe_up    the same stroke upwards
   10 clap        both hands clap overhead at 1.5 Hz (replaces waving and swiping)

The speed pair (6, 7) and the direction pair (8, 9) are built to alias on the
Slow pathway. The toy clip is 32 raw frames (Fast: 16 at stride 2 = 7.5 Hz at
15 fps, Nyquist 3.75 Hz; Slow: alpha 4, one frame every 8 raw frames =
1.875 Hz, Nyquist 0.94 Hz). Frequencies are defined per frame, so this holds at
any --fps:
  * the fast wave runs at 1/8 - f_slow cycles per frame: between two Slow samples
    (8 frames) it makes one cycle less the slow wave's phase step, so the Slow
    frames of a fast wave are those of a slow wave run backwards, i.e. of a slow
    wave with another phase (a sine reversed in time is a sine: psi = pi - phi -
    2*pi*f0/8, f0 the first Slow frame). Phases are uniform random, so the Slow
    frames of the two classes have identical distributions; the Fast pathway
    (2 frames apart: 0.04 vs 0.21 cycles per Fast frame) tells them apart. (The
    alias f_slow + 1/8 would be 0.33 cycles per Fast frame, close to the Fast
    pathway's Nyquist rate: a flicker rather than a motion);
  * a swipe is a sawtooth of one stroke per 8 frames: every Slow sample finds the
    hand at the same point of its stroke, so both directions show a hand held
    still at a uniformly random height (psi = -phi - 4*pi*f0/8 gives the twin).
    The Fast pathway sees 3 steps of 0.06 heights in the stroke's direction,
    shorter than the white glove that makes them (0.10 heights across: a motion),
    and one jump of 0.18 heights back (no overlap: not a motion). A translation
    in one direction is the simplest thing a direction-selective filter finds;
    an earlier design, circling cw / ccw at half a turn per Slow step, needed
    rotation detectors that the tiny model did not learn in its budget.
(PySlowFast's `linspace` Slow sampling picks frames 10 apart instead of 8 and
breaks the aliasing; the toy configs use the `stride` rule.) The swipes are
vertical, so a horizontal flip keeps every label (meta.json `horizontal_flip_swaps`
is empty).

Timing. Action segments last 4-10 s (a figure's first one 1.5-8.5 s, as if it
started before the video) and change only at half seconds (k + 0.5 s), blended
over 0.3 s, so a keyframe is never closer than 0.5 s to a change: the 2.13 s
window around it sees >= 73% of the labelled action. Keyframes are integer
seconds 1 .. seconds-1 (`time_offset: 0`), labelled by the actions at that time.

Annotation. GT boxes are the tight box of a person's *visible* pixels (outline
included; occluders and the frame edge removed), normalised and rounded to 3
decimals. A person is annotated when at least 35% of its drawn area is visible.
A person 20%-35% visible is ambiguous (annotating or not would both be
defensible), so the whole keyframe goes to the excluded-timestamps file, as AVA
does with keyframes it could not label reliably.

Proposals simulate an imperfect person detector (like AVA's predicted boxes): each
annotated person is missed with probability 3%, otherwise its box is jittered
(coordinates +- 4% of the box size) with a score mostly in [0.8, 1) (3% of
them lower), so about 94% of the persons have a box above the 0.8 threshold, as
AVA's own proposals (MMAction2's `..._recall_93.9.pkl`); ambiguous persons are found
half the time with middling scores;
visible distractors give false positives 35% of the time, mostly below 0.6; 5% of
keyframes get a random low-score background box.

Determinism: each video is drawn from its own random stream seeded by
(seed, split, index), so the same seed gives byte-identical annotations and
identical frames, and adding videos does not change the existing ones.
"""

from __future__ import annotations

import colorsys
import json
import shutil
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from sfdet import __version__
from sfdet.data import ava
from sfdet.data.workers import fork_safe
from sfdet.errors import ConfigError, DataError
from sfdet.toy.render import (
    FOREARM_LENGTH,
    POSE_FIELDS,
    POSE_INDEX,
    background_texture,
    draw_box,
    draw_capsules,
    extend_periodic,
    figure_capsules,
    figure_joints,
    pan_background,
    UPPER_ARM_LENGTH,
    Capsules,
)

# --------------------------------------------------------------------------------------------------
# Classes and their motions

SLOW_STRIDE_FRAMES = 8  # the toy clip's Slow pathway: alpha 4 x sampling_rate 2
WAVE_SLOW_CYCLES_PER_FRAME = 0.02  # 0.3 Hz at 15 fps
WAVE_FAST_CYCLES_PER_FRAME = 1 / SLOW_STRIDE_FRAMES - WAVE_SLOW_CYCLES_PER_FRAME  # 1.575 Hz at 15 fps
SWIPE_CYCLES_PER_FRAME = 1 / SLOW_STRIDE_FRAMES  # 1.875 Hz at 15 fps: one stroke per Slow step
SWIPE_FORWARD = 0.2  # heights in front of the shoulder (clear of the torso)
SWIPE_TOP, SWIPE_LENGTH = -0.02, 0.24  # heights below the shoulder: the stroke runs -0.02 .. 0.22
CLAP_CYCLES_PER_FRAME = 0.1  # 1.5 Hz at 15 fps
WAVE_AMPLITUDE = 0.7  # radians
WAVE_UPPER_ARM = 2.35  # radians from "down": up and forward

WALK_HZ, RUN_HZ, JUMP_HZ = 0.8, 1.5, 1.0
SPEED_HEIGHTS_PER_S = {"walk": 0.3, "run": 0.75}


@dataclass(frozen=True)
class ToyClass:
    id: int
    name: str
    kind: str  # "pose": exactly one per person and keyframe; "arm": zero or more
    description: str


CLASSES: tuple[ToyClass, ...] = (
    ToyClass(1, "stand", "pose", "standing, arms hanging, slight idle sway"),
    ToyClass(2, "walk", "pose", f"walking, legs and arms swinging at {WALK_HZ} Hz, moving 0.3 heights/s"),
    ToyClass(3, "run", "pose", f"running, {RUN_HZ} Hz stride, leaning forward, elbows bent, 0.75 heights/s"),
    ToyClass(4, "jump", "pose", f"jumping in place, {JUMP_HZ} jump/s: crouch, take off, fly arms up, land"),
    ToyClass(5, "crouch", "pose", "squatting low, knees bent, torso leaning forward"),
    ToyClass(6, "wave_slow", "arm", "front arm raised, forearm waving +-40 deg at 0.02 cycles/frame"),
    ToyClass(7, "wave_fast", "arm", "the same wave at 1/8 - 0.02 cycles/frame: identical to wave_slow on the Slow pathway"),
    ToyClass(8, "swipe_down", "arm", "back hand sweeping down in front of the chest, jumping back up, 1/8 cycles/frame"),
    ToyClass(9, "swipe_up", "arm", "the same sweep upwards: a hand held still on the Slow pathway, as swipe_down"),
    ToyClass(10, "clap", "arm", "both hands clapping overhead at 0.1 cycles/frame"),
)
CLASS_ID = {c.name: c.id for c in CLASSES}
# Label pairs a horizontal flip turns into each other (none here: the swipes are vertical).
HORIZONTAL_FLIP_SWAPS: tuple[tuple[int, int], ...] = ()
ALIASED_PAIRS = (
    {"classes": [6, 7], "differs_in": "speed", "slow_pathway_sees": "identical samples (fast = slow run backwards, 1/8 - f cycles per frame)"},
    {"classes": [8, 9], "differs_in": "direction", "slow_pathway_sees": "identical samples (a still hand: one stroke per Slow step)"},
)

POSE_PROBS = {"stand": 0.3, "walk": 0.25, "run": 0.1, "jump": 0.1, "crouch": 0.25}
STILL_POSES = ("stand", "crouch")  # the poses during which a figure waves or swipes
FRONT_ARM_PROBS = {None: 0.3, "wave_slow": 0.24, "wave_fast": 0.24, "clap": 0.22}
BACK_ARM_PROBS = {None: 0.4, "swipe_down": 0.3, "swipe_up": 0.3}

# --------------------------------------------------------------------------------------------------
# Timing and annotation rules

SEGMENT_SECONDS = (4, 10)  # inclusive range of whole seconds; changes happen at k + 0.5 s
BLEND_SECONDS = 0.3
MIN_VISIBLE = 0.35  # annotate a person at a keyframe when >= 35% of it is visible
AMBIGUOUS_VISIBLE = 0.20  # 20%..35% visible: the keyframe is excluded
DISTRACTOR_ID0 = 1000  # object ids of distractors in the object-id map (persons: their person_id)

QUICK_PRESET = {"videos_train": 2, "videos_val": 1, "seconds": 8}
DEFAULTS = {"seed": 0, "videos_train": 32, "videos_val": 8, "seconds": 30, "fps": 15.0, "size": (320, 180)}
SPLITS = ("train", "val")


def _angle_wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def wave_forearm_angle(cycles_per_frame: float, phase: float, frame_index) -> np.ndarray:
    """Forearm angle (radians from "down") of a waving arm at the given frame(s)."""
    return np.pi + WAVE_AMPLITUDE * np.sin(2 * np.pi * cycles_per_frame * np.asarray(frame_index) + phase)


def swipe_hand_down(downward: bool, phase: float, frame_index) -> np.ndarray:
    """Height of a swiping hand below the shoulder (heights): a sawtooth, one stroke per 8 frames.

    The hand runs the stroke in the action's direction and jumps back at the end of each cycle
    (`phase`: radians, 2 pi = one cycle).
    """
    progress = (SWIPE_CYCLES_PER_FRAME * np.asarray(frame_index) + phase / (2 * np.pi)) % 1.0
    return SWIPE_TOP + SWIPE_LENGTH * (progress if downward else 1.0 - progress)


def _keyposes(c: float, keys: list[float], rows: dict[str, list[float]]) -> dict[str, float]:
    return {name: float(np.interp(c, keys, values)) for name, values in rows.items()}


def pose_action_angles(action: str, t: float, phase: float) -> np.ndarray:
    """(len(POSE_FIELDS),) body angles of a pose action at time t (seconds), legs and default arms."""
    p = dict.fromkeys(POSE_FIELDS, 0.0)
    if action == "stand":
        sway = np.sin(2 * np.pi * 0.25 * t + phase)
        p.update(lean=0.02, thigh_front=0.05, knee_front=0.06, thigh_back=-0.05, knee_back=0.06,
                 arm_front=0.12 + 0.05 * sway, elbow_front=0.15, arm_back=-0.1 - 0.05 * sway, elbow_back=0.12)
    elif action in ("walk", "run"):
        run = action == "run"
        psi = 2 * np.pi * (RUN_HZ if run else WALK_HZ) * t + phase
        s, c = np.sin(psi), np.cos(psi)
        offset, swing, knee0, knee_swing = (0.15, 0.65, 0.35, 1.1) if run else (0.0, 0.38, 0.1, 0.6)
        p.update(lean=0.25 if run else 0.06,
                 thigh_front=offset + swing * s, knee_front=knee0 + knee_swing * max(0.0, c),
                 thigh_back=offset - swing * s, knee_back=knee0 + knee_swing * max(0.0, -c),
                 arm_front=-(0.7 if run else 0.35) * s, elbow_front=1.5 if run else 0.3,
                 arm_back=(0.7 if run else 0.35) * s, elbow_back=1.5 if run else 0.3,
                 lift=0.03 * abs(np.sin(2 * psi)) if run else 0.0)
    elif action == "jump":
        c = (JUMP_HZ * t + phase / (2 * np.pi)) % 1.0
        keys = [0.0, 0.18, 0.3, 0.5, 0.7, 0.82, 1.0]
        k = _keyposes(c, keys, {
            "thigh": [0.05, 0.75, 0.1, 0.4, 0.15, 0.65, 0.05],
            "knee": [0.08, 1.35, 0.1, 0.7, 0.2, 1.15, 0.08],
            "lean": [0.03, 0.4, 0.05, 0.1, 0.05, 0.3, 0.03],
            "arm": [0.1, -0.6, 2.6, 2.8, 2.4, 0.3, 0.1],
        })
        lift = 0.18 * np.sin(np.pi * (c - 0.3) / 0.4) if 0.3 < c < 0.7 else 0.0
        p.update(lean=k["lean"], thigh_front=k["thigh"], knee_front=k["knee"],
                 thigh_back=k["thigh"] - 0.08, knee_back=k["knee"] - 0.05,
                 arm_front=k["arm"], elbow_front=0.25, arm_back=k["arm"] - 0.2, elbow_back=0.25, lift=lift)
    elif action == "crouch":
        sway = np.sin(2 * np.pi * 0.3 * t + phase)
        p.update(lean=0.5 + 0.04 * sway, thigh_front=1.35, knee_front=2.25, thigh_back=1.25, knee_back=2.15,
                 arm_front=0.9, elbow_front=0.5, arm_back=0.75, elbow_back=0.5)
    else:
        raise ValueError(f"unknown pose action {action!r}")
    return np.array([p[name] for name in POSE_FIELDS])


def apply_arm_actions(pose: np.ndarray, front: str | None, back: str | None, frame_index: float,
                      phase_front: float, phase_back: float) -> np.ndarray:
    """Override the arms of `pose` with the arm actions (a copy; `frame_index` may be fractional)."""
    pose = pose.copy()
    i = POSE_INDEX
    if front in ("wave_slow", "wave_fast"):
        rate = WAVE_SLOW_CYCLES_PER_FRAME if front == "wave_slow" else WAVE_FAST_CYCLES_PER_FRAME
        pose[i["arm_front"]] = WAVE_UPPER_ARM
        pose[i["elbow_front"]] = wave_forearm_angle(rate, phase_front, frame_index) - WAVE_UPPER_ARM
    elif front == "clap":
        spread = 0.12 + 0.5 * (0.5 + 0.5 * np.cos(2 * np.pi * CLAP_CYCLES_PER_FRAME * frame_index + phase_front))
        pose[i["arm_front"]], pose[i["elbow_front"]] = np.pi - spread, 0.25
        pose[i["arm_back"]], pose[i["elbow_back"]] = np.pi + spread, -0.25
    if back in ("swipe_down", "swipe_up") and front != "clap":
        down = swipe_hand_down(back == "swipe_down", phase_back, frame_index)
        pose[i["arm_back"]], pose[i["elbow_back"]] = arm_reaching(SWIPE_FORWARD, down)
    return pose


def arm_reaching(forward, down) -> tuple[np.ndarray, np.ndarray]:
    """(upper-arm angle, elbow angle) that put the hand at (forward, down) heights from the shoulder.

    Two-link inverse kinematics, elbow below the shoulder-hand line (see `figure_joints` for angles).
    """
    reach = np.hypot(forward, down)
    towards = np.arctan2(forward, down)  # body angle of the shoulder -> hand line
    cos_shoulder = (UPPER_ARM_LENGTH ** 2 + reach ** 2 - FOREARM_LENGTH ** 2) / (2 * UPPER_ARM_LENGTH * reach)
    upper = towards - np.arccos(np.clip(cos_shoulder, -1.0, 1.0))
    forearm = np.arctan2(forward - UPPER_ARM_LENGTH * np.sin(upper), down - UPPER_ARM_LENGTH * np.cos(upper))
    return upper, forearm - upper


# --------------------------------------------------------------------------------------------------
# Scene description (what happens), sampled from a random stream


@dataclass(frozen=True)
class PoseSegment:
    start: float  # seconds
    end: float
    action: str
    facing: int  # +1: facing right, -1: facing left
    phase: float


@dataclass(frozen=True)
class ArmSegment:
    start: float
    end: float
    front: str | None  # wave_slow / wave_fast / clap
    back: str | None  # swipe_down / swipe_up
    phase_front: float
    phase_back: float


@dataclass
class ToyFigure:
    person_id: int
    height: float  # standing height, pixels
    ground_y: float  # y of the soles, pixels
    colors: np.ndarray  # (6, 3) RGB: shirt, sleeve, skin, pants, shoes, hair
    pose_segments: list[PoseSegment]
    arm_segments: list[ArmSegment]
    x_world: np.ndarray  # (n_frames,) x of the feet in scene coordinates, pixels


@dataclass
class ToyDistractor:
    kind: str  # "ball" or "box"
    ground_y: float  # depth order key, like a figure's
    half_size: np.ndarray  # (2,) pixels (a ball: radius twice)
    rgb: np.ndarray  # (3,)
    x_world: np.ndarray  # (n_frames,) centre x in scene coordinates
    y: np.ndarray  # (n_frames,) centre y


@dataclass
class ToyScene:
    video_id: str
    width: int
    height: int
    fps: float
    n_frames: int
    texture: np.ndarray  # (height, 3 * width + 1, 3) float32, periodic in x (see pan_background)
    pan: np.ndarray  # (n_frames,) camera x offset, pixels
    figures: list[ToyFigure]
    distractors: list[ToyDistractor] = field(default_factory=list)


def _active(segments, t: float) -> int:
    for k, seg in enumerate(segments):
        if seg.start <= t < seg.end:
            return k
    return len(segments) - 1


def _blend_weights(segments, t: float) -> list[tuple[int, float]]:
    """[(segment index, weight)] at time t: a 0.3 s smoothstep across each change."""
    k = _active(segments, t)
    half = BLEND_SECONDS / 2
    for other, edge in ((k - 1, segments[k].start), (k + 1, segments[k].end)):
        if 0 <= other < len(segments) and abs(t - edge) < half:
            u = (t - edge) / (2 * half) + 0.5  # 0 -> 1 across the change
            w_later = u * u * (3 - 2 * u)
            w_other = w_later if other > k else 1 - w_later
            return [(k, 1 - w_other), (other, w_other)]
    return [(k, 1.0)]


def figure_pose(figure: ToyFigure, frame_index: int, fps: float) -> tuple[np.ndarray, int]:
    """(pose angles (len(POSE_FIELDS),), facing) of a figure at a frame, blended across action changes."""
    t = frame_index / fps
    facing = figure.pose_segments[_active(figure.pose_segments, t)].facing
    total, base = None, None
    for kp, wp in _blend_weights(figure.pose_segments, t):
        ps = figure.pose_segments[kp]
        body = pose_action_angles(ps.action, t, ps.phase)
        for ka, wa in _blend_weights(figure.arm_segments, t):
            a = figure.arm_segments[ka]
            front, back = arm_actions_during(ps.action, a)
            pose = apply_arm_actions(body, front, back, frame_index, a.phase_front, a.phase_back)
            if base is None:
                base, total = pose, np.zeros_like(pose)
            total += wp * wa * _angle_wrap(pose - base)
    return base + total, facing


def arm_actions_during(pose_action: str, arms: ArmSegment) -> tuple[str | None, str | None]:
    """(front, back) arm actions a figure shows during a pose: it waves and swipes only while
    standing or crouching (a walking, running or jumping body swings its arms; claps go with any pose)."""
    if pose_action in STILL_POSES:
        return arms.front, arms.back
    return ("clap" if arms.front == "clap" else None), None


def actions_at(figure: ToyFigure, t: float) -> list[int]:
    """Class ids of a figure at time t: its pose action first, then its arm actions."""
    pose = figure.pose_segments[_active(figure.pose_segments, t)]
    arms = arm_actions_during(pose.action, figure.arm_segments[_active(figure.arm_segments, t)])
    return [CLASS_ID[pose.action]] + [CLASS_ID[a] for a in arms if a is not None]


def _choice(rng: np.random.Generator, probs: dict):
    keys = list(probs)
    return keys[int(rng.choice(len(keys), p=np.array(list(probs.values()))))]


def _segment_ends(rng: np.random.Generator, seconds: float) -> list[float]:
    """Change times at k + 0.5 s: the first after 1.5-8.5 s, then every 4-10 s, past the end."""
    ends = [int(rng.integers(1, 9)) + 0.5]
    while ends[-1] < seconds:
        ends.append(ends[-1] + int(rng.integers(SEGMENT_SECONDS[0], SEGMENT_SECONDS[1] + 1)))
    return ends


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return np.array(rgb) * 255


SKIN_TONES = np.array([[241, 194, 160], [224, 172, 125], [198, 134, 90], [141, 85, 54], [92, 59, 40]], float)
HAIR_COLORS = np.array([[30, 25, 20], [90, 55, 30], [205, 165, 95], [150, 150, 150], [140, 55, 30]], float)


def _sample_figure(rng, person_id: int, width: int, height: int, seconds: float, fps: float, n_frames: int):
    scale = rng.uniform(0.45, 0.9)
    fig_height = scale * height
    ground_y = height * (0.64 + 0.33 * (scale - 0.45) / 0.45)
    shirt = _hsv(rng, (0.55, 0.9), (0.65, 1.0))
    colors = np.stack([shirt, shirt * 0.8, SKIN_TONES[rng.integers(len(SKIN_TONES))],
                       _hsv(rng, (0.3, 0.7), (0.3, 0.6)), _hsv(rng, (0.0, 0.4), (0.1, 0.25)),
                       HAIR_COLORS[rng.integers(len(HAIR_COLORS))]])

    # Pose actions, simulating the walk so that people head back into view.
    x = rng.uniform(-0.25, 1.25) * width
    facing = int(rng.choice([-1, 1]))
    x_world = np.empty(n_frames)
    pose_segments, start = [], 0.0
    for end in _segment_ends(rng, seconds):
        toward_centre = 1 if x < width / 2 else -1
        if not -0.1 * width < x < 1.1 * width:  # off screen: mostly come back
            action = str(rng.choice(["walk", "run"])) if rng.uniform() < 0.75 else "stand"
            facing = toward_centre
        else:
            action = _choice(rng, POSE_PROBS)
            if action in SPEED_HEIGHTS_PER_S:
                facing = toward_centre if rng.uniform() < 0.6 else -toward_centre
        speed = facing * SPEED_HEIGHTS_PER_S.get(action, 0.0) * fig_height
        frames = np.arange(int(np.ceil(start * fps)), min(int(np.ceil(end * fps)), n_frames))
        x_world[frames] = np.clip(x + speed * (frames / fps - start), -0.6 * width, 1.6 * width)
        x = float(np.clip(x + speed * (end - start), -0.6 * width, 1.6 * width))
        pose_segments.append(PoseSegment(start, end, action, facing, rng.uniform(0, 2 * np.pi)))
        start = end

    arm_segments, start = [], 0.0
    for end in _segment_ends(rng, seconds):
        front = _choice(rng, FRONT_ARM_PROBS)
        back = None if front == "clap" else _choice(rng, BACK_ARM_PROBS)
        arm_segments.append(ArmSegment(start, end, front, back, rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)))
        start = end
    return ToyFigure(person_id, fig_height, ground_y, colors, pose_segments, arm_segments, x_world)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bounce a free path x(t) between walls lo and hi (a triangle wave)."""
    span = hi - lo
    u = np.mod(x - lo, 2 * span)
    return lo + np.where(u > span, 2 * span - u, u)


def _sample_distractor(rng, width: int, height: int, fps: float, n_frames: int) -> ToyDistractor:
    t = np.arange(n_frames) / fps
    ground_y = rng.uniform(0.6, 0.98) * height
    rgb = _hsv(rng, (0.5, 0.9), (0.5, 0.95))
    x0, vx = rng.uniform(0, width), rng.choice([-1, 1]) * rng.uniform(5, 40)
    x = _reflect(x0 + vx * t, -0.1 * width, 1.1 * width)
    hop = np.abs(np.sin(np.pi * rng.uniform(0.6, 1.5) * t + rng.uniform(0, np.pi)))
    if rng.uniform() < 0.5:
        radius = rng.uniform(0.04, 0.085) * height
        y = ground_y - radius - rng.uniform(0.1, 0.3) * height * hop
        return ToyDistractor("ball", ground_y, np.array([radius, radius]), rgb, x, y)
    half = np.array([rng.uniform(0.05, 0.13), rng.uniform(0.04, 0.11)]) * height
    y = ground_y - half[1] - (rng.uniform() < 0.4) * 0.08 * height * hop
    return ToyDistractor("box", ground_y, half, rgb, x, y)


def sample_scene(rng: np.random.Generator, video_id: str, width: int, height: int, seconds: int, fps: float) -> ToyScene:
    """Everything that happens in one video, drawn from `rng`."""
    n_frames = int(round(seconds * fps))
    t = np.arange(n_frames) / fps
    amplitude, period, phase = rng.uniform(4, 12), rng.uniform(12, 30), rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(-1.5, 1.5)
    pan = amplitude * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase)) + drift * t
    texture = extend_periodic(background_texture(rng, height, 2 * width, horizon=rng.uniform(0.4, 0.55)), width)
    figures = [_sample_figure(rng, k, width, height, seconds, fps, n_frames) for k in range(int(rng.integers(3, 6)))]
    distractors = [_sample_distractor(rng, width, height, fps, n_frames) for _ in range(int(rng.integers(2, 5)))]
    return ToyScene(video_id, width, height, fps, n_frames, texture, pan, figures, distractors)


# --------------------------------------------------------------------------------------------------
# Rendering


def render_frame(scene: ToyScene, frame_index: int) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Draw one frame.

    Returns rgb (H, W, 3) uint8, object_ids (H, W) int32 (person_id, DISTRACTOR_ID0 + k,
    or -1 for background) and {object id: full drawn area in pixels, off-frame parts included}.
    """
    pan = scene.pan[frame_index]
    canvas = pan_background(scene.texture, pan, scene.width)
    object_ids = np.full((scene.height, scene.width), -1, dtype=np.int32)
    objects = [(f.ground_y, f.person_id, f) for f in scene.figures]
    objects += [(d.ground_y, DISTRACTOR_ID0 + k, d) for k, d in enumerate(scene.distractors)]
    areas = {}
    for _, object_id, obj in sorted(objects, key=lambda o: (o[0], o[1])):  # far (high on screen) first
        x = obj.x_world[frame_index] - pan
        if isinstance(obj, ToyFigure):
            pose, facing = figure_pose(obj, frame_index, scene.fps)
            joints = figure_joints(pose, x, obj.ground_y, obj.height, facing)
            shape = figure_capsules(joints, obj.height, facing, obj.colors)
            areas[object_id] = draw_capsules(canvas, object_ids, object_id, shape)
        elif obj.kind == "ball":
            center = np.array([x, obj.y[frame_index]], dtype=np.float32)
            r = obj.half_size[0]
            spot = center - 0.35 * r
            shape = Capsules(p0=np.stack([center, spot]), p1=np.stack([center, spot]),
                             radius=np.array([r, 0.3 * r], dtype=np.float32),
                             rgb=np.stack([obj.rgb, np.minimum(obj.rgb * 1.3 + 60, 255)]).astype(np.float32))
            areas[object_id] = draw_capsules(canvas, object_ids, object_id, shape)
        else:
            center = np.array([x, obj.y[frame_index]])
            areas[object_id] = draw_box(canvas, object_ids, object_id, center, obj.half_size, obj.rgb)
    rgb = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return rgb, object_ids, areas


# --------------------------------------------------------------------------------------------------
# Annotations: what is visible at a keyframe, GT, exclusions, simulated person-detector proposals

MISS_RATE = 0.03
BOX_JITTER = 0.04  # std of each proposal coordinate, in box widths/heights
LOW_SCORE_RATE = 0.03
FALSE_POSITIVE_RATE = 0.35  # per visible distractor
BACKGROUND_FP_RATE = 0.05  # per keyframe


@dataclass(frozen=True)
class VisibleObject:
    object_id: int  # person_id, or DISTRACTOR_ID0 + k
    visible: float  # fraction of its drawn area that is visible in the frame
    box_abs: tuple[int, int, int, int]  # tight box of the visible pixels, xyxy pixels (x2, y2 exclusive)


def visible_objects(object_ids: np.ndarray, areas: dict[int, int]) -> list[VisibleObject]:
    """Objects with at least one visible pixel, from a frame's object-id map (H, W)."""
    found = []
    for object_id, area in sorted(areas.items()):
        mask = object_ids == object_id
        count = int(np.count_nonzero(mask))
        if count == 0 or area == 0:
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        found.append(VisibleObject(object_id, min(count / area, 1.0), box))
    return found


def _box_norm(box_abs, width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box_abs
    return [round(x1 / width, 3), round(y1 / height, 3), round(x2 / width, 3), round(y2 / height, 3)]


def keyframe_annotations(scene: ToyScene, t: float, objects: list[VisibleObject]) -> tuple[list[list], bool]:
    """GT rows [video_id, t, x1, y1, x2, y2, action_id, person_id] at keyframe t, and whether to exclude it."""
    figures = {f.person_id: f for f in scene.figures}
    rows, ambiguous = [], False
    for obj in objects:
        if obj.object_id not in figures:
            continue
        if obj.visible >= MIN_VISIBLE:
            box = _box_norm(obj.box_abs, scene.width, scene.height)
            for action_id in actions_at(figures[obj.object_id], t):
                rows.append([scene.video_id, t, *box, action_id, obj.object_id])
        elif obj.visible >= AMBIGUOUS_VISIBLE:
            ambiguous = True
    return rows, ambiguous


def _jittered_box(rng: np.random.Generator, box_abs, width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box_abs)
    w, h = x2 - x1, y2 - y1
    x1, x2 = np.clip(np.array([x1, x2]) + rng.normal(0, BOX_JITTER, 2) * w, 0, width)
    y1, y2 = np.clip(np.array([y1, y2]) + rng.normal(0, BOX_JITTER, 2) * h, 0, height)
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    x2, y2 = max(x2, x1 + 2), max(y2, y1 + 2)
    x1, y1 = min(x1, width - 2), min(y1, height - 2)
    return [round(x1 / width, 3), round(y1 / height, 3), round(min(x2, width) / width, 3), round(min(y2, height) / height, 3)]


def simulate_proposals(rng: np.random.Generator, scene: ToyScene, t: float, objects: list[VisibleObject]) -> list[list]:
    """Rows [video_id, t, x1, y1, x2, y2, score] of a simulated, imperfect person detector at keyframe t."""
    person_ids = {f.person_id for f in scene.figures}
    rows = []
    for obj in objects:
        if obj.object_id in person_ids:
            if obj.visible >= MIN_VISIBLE:
                if rng.uniform() < MISS_RATE:
                    continue
                score = rng.uniform(0.3, 0.8) if rng.uniform() < LOW_SCORE_RATE else 1 - 0.2 * rng.beta(1.5, 4)
            elif obj.visible >= AMBIGUOUS_VISIBLE and rng.uniform() < 0.5:
                score = rng.uniform(0.3, 0.85)
            else:
                continue
        elif obj.visible >= 0.5 and rng.uniform() < FALSE_POSITIVE_RATE:
            score = rng.uniform(0.6, 0.9) if rng.uniform() < 0.1 else rng.uniform(0.05, 0.6)
        else:
            continue
        rows.append([scene.video_id, t, *_jittered_box(rng, obj.box_abs, scene.width, scene.height), round(score, 4)])
    if rng.uniform() < BACKGROUND_FP_RATE:
        w, h = rng.uniform(0.1, 0.3) * scene.width, rng.uniform(0.3, 0.8) * scene.height
        x, y = rng.uniform(0, scene.width - w), rng.uniform(0, scene.height - h)
        box = _jittered_box(rng, (x, y, x + w, y + h), scene.width, scene.height)
        rows.append([scene.video_id, t, *box, round(rng.uniform(0.05, 0.4), 4)])
    return sorted(rows, key=lambda r: -r[-1])


# --------------------------------------------------------------------------------------------------
# Videos


def video_codec() -> str:
    """libx264 (H.264) when this PyAV build has it, else mpeg4."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _save_frames(video_path: Path, frames_dir: Path, video_id: str, image_format: str) -> None:
    """Extract every frame of the written video, as AVA's frames are extracted from its videos."""
    import av
    from PIL import Image

    frames_dir.mkdir(parents=True, exist_ok=True)
    with av.open(str(video_path)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            path = frames_dir / f"{video_id}_{k + 1:06d}.{image_format}"
            image = Image.fromarray(frame.to_ndarray(format="rgb24"))
            image.save(path, quality=90) if image_format == "jpg" else image.save(path)


@dataclass(frozen=True)
class _VideoJob:
    out_dir: Path
    split: str
    index: int
    seed: int
    seconds: int
    fps: float
    width: int
    height: int
    frames: str | None
    codec: str

    @property
    def video_id(self) -> str:
        return f"toy_{self.split}_{self.index:03d}"


def _make_video(job: _VideoJob) -> dict:
    """Render, encode and annotate one video; returns its GT rows, exclusions and proposals."""
    import av

    split_code = SPLITS.index(job.split)
    scene = sample_scene(np.random.default_rng([job.seed, split_code, job.index, 0]), job.video_id,
                         job.width, job.height, job.seconds, job.fps)
    proposal_rng = np.random.default_rng([job.seed, split_code, job.index, 1])
    keyframes = {int(round(t * job.fps)): float(t) for t in range(1, job.seconds)}
    gt, excluded, proposals = [], [], []
    video_path = job.out_dir / "videos" / f"{job.video_id}.mp4"
    with av.open(str(video_path), mode="w") as container:
        stream = container.add_stream(job.codec, rate=Fraction(job.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = job.width, job.height, "yuv420p"
        stream.codec_context.gop_size = max(1, int(round(job.fps)))  # a keyframe per second: cheap seeking
        stream.codec_context.thread_count = 1
        if job.codec == "libx264":
            # With its default mbtree/B-frame lookahead, x264 here gave different bytes for the same frames
            # from one run to the next; without them the output is reproducible (and seeking is simpler).
            stream.options = {"crf": "20", "preset": "veryfast", "x264-params": "bframes=0:mbtree=0"}
        else:
            stream.codec_context.bit_rate = 2_000_000
        for i in range(scene.n_frames):
            rgb, object_ids, areas = render_frame(scene, i)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            if i in keyframes:
                t = keyframes[i]
                objects = visible_objects(object_ids, areas)
                rows, ambiguous = keyframe_annotations(scene, t, objects)
                gt += rows
                if ambiguous:
                    excluded.append([job.video_id, t])
                proposals += simulate_proposals(proposal_rng, scene, t, objects)
        container.mux(stream.encode(None))
    if job.frames:
        _save_frames(video_path, job.out_dir / "frames" / job.video_id, job.video_id, job.frames)
    return {"video_id": job.video_id, "split": job.split, "n_frames": scene.n_frames,
            "gt": gt, "excluded": excluded, "proposals": proposals}


# --------------------------------------------------------------------------------------------------
# The dataset


OUTPUT_ENTRIES = ("videos", "annotations", "frame_lists", "frames", "meta.json")


def _parse_size(size) -> tuple[int, int]:
    if isinstance(size, str):
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"size {size!r} is not WIDTHxHEIGHT (e.g. 320x180)") from None
    else:
        width, height = (int(v) for v in size)
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ConfigError(f"size {width}x{height}: width and height must be even and >= 64 (H.264 yuv420p)")
    return width, height


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is not a directory; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise DataError(f"{out_dir} is not empty; pass --overwrite to replace the toy dataset in it")
        for name in OUTPUT_ENTRIES:  # only what this generator writes: never a user's other files
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)


def generate_toy_dataset(
    out_dir,
    *,
    seed: int | None = None,
    videos_train: int | None = None,
    videos_val: int | None = None,
    seconds: int | None = None,
    fps: float | None = None,
    size=None,
    frames: str | None = None,
    overwrite: bool = False,
    quick: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write the toy AVA-format dataset to `out_dir` (layout in docs/architecture.md); returns the path.

    Unset parameters take DEFAULTS (32 train + 4 val videos x 30 s, 320x180, 15 fps,
    seed 0), or with `quick=True` the test preset: 2 train + 1 val videos x 8 s.
    frames: None, "jpg" or "png" to also extract every frame. workers: processes
    rendering videos in parallel (default: up to 2).
    """
    params = {**DEFAULTS, **(QUICK_PRESET if quick else {})}
    given = {"seed": seed, "videos_train": videos_train, "videos_val": videos_val, "seconds": seconds,
             "fps": fps, "size": size}
    params.update({k: v for k, v in given.items() if v is not None})
    width, height = _parse_size(params["size"])
    seconds, fps = int(params["seconds"]), float(params["fps"])
    counts = {"train": int(params["videos_train"]), "val": int(params["videos_val"])}
    if seconds < 3:
        raise ConfigError(f"seconds={seconds}: videos must last at least 3 s (keyframes are at 1 .. seconds-1)")
    if not 4 <= fps <= 120:
        raise ConfigError(f"fps={fps}: must be between 4 and 120")
    if min(counts.values()) < 0 or sum(counts.values()) == 0:
        raise ConfigError(f"videos: train={counts['train']}, val={counts['val']}: need >= 0 each and at least one video")
    if frames not in (None, "jpg", "png"):
        raise ConfigError(f"frames={frames!r}: must be 'jpg', 'png' or None")

    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    codec = video_codec()
    if codec != "libx264":
        import warnings

        warnings.warn("this PyAV build has no libx264: the toy videos are encoded with mpeg4 instead", stacklevel=2)
    jobs = [_VideoJob(out_dir, split, k, int(params["seed"]), seconds, fps, width, height, frames, codec)
            for split in SPLITS for k in range(counts[split])]
    results = _run_jobs(jobs, workers, progress)

    ann = out_dir / "annotations"
    ava.write_label_map(ann / "label_map.pbtxt", {c.id: c.name for c in CLASSES})
    summary = {}
    for split in SPLITS:
        done = [r for r in results if r["split"] == split]
        gt = pd.DataFrame([row for r in done for row in r["gt"]], columns=ava.GT_COLUMNS)
        excluded = pd.DataFrame([row for r in done for row in r["excluded"]], columns=ava.EXCLUSION_COLUMNS)
        proposals = pd.DataFrame([row for r in done for row in r["proposals"]], columns=ava.PROPOSAL_COLUMNS)
        ava.write_gt_csv(ann / f"{split}.csv", gt)
        ava.write_exclusions(ann / f"{split}_excluded_timestamps.csv", excluded)
        ava.write_proposals_csv(ann / f"{split}_predicted_boxes.csv", proposals)
        ava.write_frame_lists(out_dir / "frame_lists" / f"{split}.csv", _frame_list(done, frames or "jpg"))
        summary[split] = {
            "videos": len(done),
            "keyframes": len(done) * (seconds - 1),
            "excluded_keyframes": len(excluded),
            "person_boxes": int(len(gt.drop_duplicates(["video_id", "timestamp", "person_id"]))),
            "gt_rows": len(gt),
            "proposals": len(proposals),
        }
    meta = _meta(params, width, height, fps, seconds, frames, codec, summary)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _run_jobs(jobs: list[_VideoJob], workers: int | None, progress: bool) -> list[dict]:
    """Make the videos, in up to `workers` processes; results in job order."""
    import multiprocessing
    import os

    from tqdm import tqdm

    workers = min(workers or min(2, os.cpu_count() or 1), len(jobs))
    total = sum(int(round(j.seconds * j.fps)) for j in jobs)
    with tqdm(total=total, unit="frame", desc="toy-data", disable=not progress) as bar:
        if workers <= 1:
            results = []
            for job in jobs:
                results.append(_make_video(job))
                bar.update(results[-1]["n_frames"])
            return results
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None  # fork: no re-imports
        with fork_safe():
            pool = multiprocessing.get_context(method).Pool(workers)
        with pool:
            results = []
            for result in pool.imap(_make_video, jobs):
                results.append(result)
                bar.update(result["n_frames"])
            return results


def _frame_list(results: list[dict], image_format: str) -> pd.DataFrame:
    rows = [(r["video_id"], k, frame, f"{r['video_id']}/{r['video_id']}_{frame + 1:06d}.{image_format}", "")
            for k, r in enumerate(results) for frame in range(r["n_frames"])]
    return pd.DataFrame(rows, columns=ava.FRAME_LIST_COLUMNS)


def _meta(params: dict, width: int, height: int, fps: float, seconds: int, frames, codec: str, summary: dict) -> dict:
    classes = []
    rates = {"wave_slow": WAVE_SLOW_CYCLES_PER_FRAME, "wave_fast": WAVE_FAST_CYCLES_PER_FRAME,
             "swipe_down": SWIPE_CYCLES_PER_FRAME, "swipe_up": SWIPE_CYCLES_PER_FRAME, "clap": CLAP_CYCLES_PER_FRAME}
    for c in CLASSES:
        entry = asdict(c)
        if c.name in rates:
            entry["cycles_per_frame"] = rates[c.name]
            entry["frequency_hz"] = rates[c.name] * fps
        classes.append(entry)
    return {
        "generator": f"sfdet {__version__} toy-data",
        "seed": int(params["seed"]),
        "videos_train": summary["train"]["videos"],
        "videos_val": summary["val"]["videos"],
        "seconds": seconds,
        "fps": fps,
        "width": width,
        "height": height,
        "frames": frames,
        "codec": codec,
        "time_offset": 0,
        "keyframes": f"integer seconds 1..{seconds - 1}, frame index round(t * fps)",
        "classes": classes,
        "aliased_pairs": list(ALIASED_PAIRS),
        "horizontal_flip_swaps": [list(pair) for pair in HORIZONTAL_FLIP_SWAPS],
        "clip": {"fast_frames": 16, "sampling_rate": 2, "alpha": 4, "slow_stride_frames": SLOW_STRIDE_FRAMES,
                 "slow_pathway_hz": fps / SLOW_STRIDE_FRAMES, "fast_pathway_hz": fps / 2},
        "annotation": {"min_visible": MIN_VISIBLE, "excluded_if_any_person_visible": [AMBIGUOUS_VISIBLE, MIN_VISIBLE],
                       "box": "tight box of the visible pixels, normalised, 3 decimals",
                       "action_changes": "at k + 0.5 s, segments 4-10 s"},
        "proposals": {"miss_rate": MISS_RATE, "box_jitter": BOX_JITTER, "low_score_rate": LOW_SCORE_RATE,
                      "false_positive_rate_per_distractor": FALSE_POSITIVE_RATE,
                      "background_false_positive_rate": BACKGROUND_FP_RATE},
        "splits": summary,
    }
