"""Build GT pickles in the published layouts of MultiSports, UCF101-24 and JHMDB-21 for the import tests.

The layout (ACT / YOWO / MMAction2): a dict with `labels`, `gttubes` {video: {label index: [(n, 5) float
array of frame, x1, y1, x2, y2]}}, `nframes`, `resolution` {video: (h, w)}, `train_videos` / `test_videos`
(lists of split lists); frames 1-based, boxes in pixels. `UCF101v2-GT.pkl` and `JHMDB-GT.pkl` are Python 2
pickles: their strings (and numpy's array data) are Python 2 `str`s, which Python 3 reads only with
`encoding="latin1"`; `py2_pickle` writes such a file (protocol 2, every string as a byte string).
`multisports_GT.pkl` is a Python 3 pickle.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct

UCF24_LABELS = ["Basketball", "BasketballDunk", "Biking", "CliffDiving", "CricketBowling", "Diving", "Fencing",
                "FloorGymnastics", "GolfSwing", "HorseRiding", "IceDancing", "LongJump", "PoleVault",
                "RopeClimbing", "SalsaSpin", "SkateBoarding", "Skiing", "Skijet", "SoccerJuggling", "Surfing",
                "TennisSwing", "TrampolineJumping", "VolleyballSpiking", "WalkingWithDog"]
JHMDB_LABELS = ["brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour",
                "pullup", "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand", "swing_baseball",
                "throw", "walk", "wave"]
# MultiSports' 66 classes in label-index order (the pickle's names have spaces, as MMAction2's list of
# classes it does not evaluate shows: 'aerobic kick jump', ..., 'basketball jump ball').
MULTISPORTS_LABELS = [name.replace("_", " ") for name in (
    "aerobic_push_up", "aerobic_explosive_push_up", "aerobic_explosive_support", "aerobic_leg_circle",
    "aerobic_helicopter", "aerobic_support", "aerobic_v_support", "aerobic_horizontal_support",
    "aerobic_straight_jump", "aerobic_illusion", "aerobic_bent_leg(s)_jump", "aerobic_pike_jump",
    "aerobic_straddle_jump", "aerobic_split_jump", "aerobic_scissors_leap", "aerobic_kick_jump",
    "aerobic_off_axis_jump", "aerobic_butterfly_jump", "aerobic_split", "aerobic_turn", "aerobic_balance_turn",
    "volleyball_serve", "volleyball_block", "volleyball_first_pass", "volleyball_defend", "volleyball_protect",
    "volleyball_second_pass", "volleyball_adjust", "volleyball_save", "volleyball_second_attack",
    "volleyball_spike", "volleyball_dink", "volleyball_no_offensive_attack", "football_shoot",
    "football_long_pass", "football_short_pass", "football_through_pass", "football_cross", "football_dribble",
    "football_trap", "football_throw", "football_diving", "football_tackle", "football_steal",
    "football_clearance", "football_block", "football_press", "football_aerial_duels", "basketball_pass",
    "basketball_drive", "basketball_dribble", "basketball_3-point_shot", "basketball_2-point_shot",
    "basketball_free_throw", "basketball_block", "basketball_offensive_rebound", "basketball_defensive_rebound",
    "basketball_pass_steal", "basketball_dribble_steal", "basketball_interfere_shot",
    "basketball_pick-and-roll_defensive", "basketball_sag", "basketball_screen", "basketball_pass-inbound",
    "basketball_save", "basketball_jump_ball",
)]


def py2_pickle(obj) -> bytes:
    """`obj` pickled as Python 2 would: protocol 2 with every unicode string turned into a byte string
    (latin-1), so Python 3's default `pickle.load` fails on non-ASCII bytes (numpy's array data)."""
    data = pickle.dumps(obj, protocol=2)
    out = io.BytesIO()
    ops = list(pickletools.genops(data))
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE"):
            raw = arg.encode("latin-1")
            out.write(b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw)
        else:
            out.write(data[pos:end])
    return out.getvalue()
