"""Action timelines: segments from known per-keyframe scores (`sfdet.predict.timelines`)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from sfdet.predict.timelines import (
    ActionTimeline,
    TimelineSettings,
    segments_from_keyframes,
    write_segments_csv,
)

LABELS = {1: "stand", 2: "wave"}


def _keyframes(track_scores):
    """{track: [(stand, wave) or None per keyframe]} -> keyframes at t = 0, 1, 2, ... (frame 10 t)."""
    length = max(len(v) for v in track_scores.values())
    for k in range(length):
        ids, rows = [], []
        for track, seq in track_scores.items():
            if k < len(seq) and seq[k] is not None:
                ids.append(track)
                rows.append(seq[k])
        yield float(k), 10 * k, ids, np.array(rows, dtype=np.float64).reshape(len(ids), 2)


def _summary(segments):
    return [(s.track_id, s.action, s.start, s.end, s.keyframes, round(s.mean_score, 4)) for s in segments]


def test_hysteresis_without_smoothing():
    wave = [0.1, 0.6, 0.4, 0.35, 0.2, 0.55, 0.1]
    scores = {0: [(0.9, w) for w in wave]}
    got = segments_from_keyframes(LABELS, _keyframes(scores), TimelineSettings(0.5, 0.3, window=1))
    # stand all along; wave opens at 0.6 (t=1), holds through 0.4 and 0.35 (>= off 0.3), ends at t=3;
    # opens again at 0.55 (t=5) for one keyframe
    assert _summary(got) == [(0, "stand", 0.0, 6.0, 7, 0.9), (0, "wave", 1.0, 3.0, 3, 0.45),
                             (0, "wave", 5.0, 5.0, 1, 0.55)]
    longer = segments_from_keyframes(LABELS, _keyframes(scores), TimelineSettings(0.5, 0.3, window=1, min_keyframes=2))
    assert [s.action for s in longer] == ["stand", "wave"]


def test_smoothing_ignores_a_single_spike_and_a_single_dip():
    wave = [0.1, 0.1, 0.9, 0.1, 0.1, 0.7, 0.8, 0.1, 0.8, 0.7, 0.1, 0.1, 0.1]
    scores = {3: [(0.0, w) for w in wave]}
    got = segments_from_keyframes(LABELS, _keyframes(scores), TimelineSettings(0.5, 0.3, window=3))
    # means of the last 3: t2 0.367, t5 0.3, t6 0.533 (opens; start moved back to t5, raw 0.7 >= 0.3),
    # t7 0.533, t8 0.567, t9 0.533, t10 0.533, t11 0.3 (>= 0.3), t12 0.1 (closes: end t11)
    assert _summary(got) == [(3, "wave", 5.0, 11.0, 7, round(np.mean(wave[5:12]), 4))]
    assert got[0].start_frame == 50 and got[0].end_frame == 110


def test_tracks_missing_keyframes_and_the_end_of_the_video():
    scores = {1: [(0.8, 0)] * 3 + [None] + [(0.8, 0)] * 2 + [None, None] + [(0.8, 0)],
              2: [None, (0.9, 0.9), (0.9, 0.9)]}
    got = segments_from_keyframes(LABELS, _keyframes(scores), TimelineSettings(0.5, 0.3, window=1, max_gap=1))
    # track 1: one missing keyframe bridged (t0-t5); two missing close it; t8 starts anew and ends with the video
    assert _summary(got) == [(1, "stand", 0.0, 5.0, 5, 0.8), (1, "stand", 8.0, 8.0, 1, 0.8),
                             (2, "stand", 1.0, 2.0, 2, 0.9), (2, "wave", 1.0, 2.0, 2, 0.9)]


def test_current_segments_and_csv(tmp_path):
    timeline = ActionTimeline(LABELS, TimelineSettings(0.5, 0.3, window=1))
    timeline.update(0.0, 0, [7], np.array([[0.9, 0.2]]))
    timeline.update(1.0, 30, [7], np.array([[0.7, 0.6]]))
    assert timeline.current(7) == [("stand", 0.0, pytest.approx(0.8)), ("wave", 1.0, pytest.approx(0.6))]
    assert timeline.current(8) == []
    timeline.finish()
    path = write_segments_csv(tmp_path / "v.segments.csv", "v", timeline.segments)
    rows = list(csv.reader(path.open()))
    assert rows[0][:6] == ["video_id", "track_id", "action_id", "action", "start", "end"]
    assert rows[1][:4] == ["v", "7", "1", "stand"] and rows[2][3] == "wave"


def test_settings_are_checked():
    with pytest.raises(ValueError):
        TimelineSettings(on_threshold=0.3, off_threshold=0.5)
