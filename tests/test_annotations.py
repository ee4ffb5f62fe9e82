"""`sfdet data import` / `data export`: labelling-tool exports <-> AVA-format datasets.

The round trips write the quick toy set's GT (3 videos, 15 fps, keyframes at integer seconds) as each tool's
export, by the tools' published formats (CVAT XML 1.1 for video and for images, Label Studio's JSON, the
documented tracks CSV), import it and compare with the original GT.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd
import pytest

from sfdet import cli
from sfdet.config import load_config
from sfdet.data import ava
from sfdet.data.check import check_dataset
from sfdet.data.timing import grid_centre

FPS = 15
W, H = 320, 180
N_FRAMES = 120


@pytest.fixture(scope="module")
def toy(quick_toy):
    label_map = ava.read_label_map(quick_toy / "annotations" / "label_map.pbtxt")
    gt = pd.concat([ava.read_gt_csv(quick_toy / "annotations" / f"{s}.csv") for s in ("train", "val")])
    return quick_toy, label_map, gt.reset_index(drop=True)


def _spaced_label_map(tmp_path: Path, label_map: dict[int, str]) -> tuple[Path, dict[int, str]]:
    """The toy label map with spaces in the names (`wave slow`): labels with spaces must work."""
    spaced = {i: n.replace("_", " ") for i, n in label_map.items()}
    path = tmp_path / "spaced.pbtxt"
    ava.write_label_map(path, spaced)
    return path, spaced


def _persons(gt: pd.DataFrame):
    """{video: {person: {t: (box_norm, [names ids])}}}."""
    out: dict = {}
    for row in gt.itertuples(index=False):
        entry = out.setdefault(row.video_id, {}).setdefault(int(row.person_id), {})
        box, ids = entry.setdefault(float(row.timestamp), ((row.x1, row.y1, row.x2, row.y2), []))
        ids.append(int(row.action_id))
    return out


def _frame(t: float) -> int:
    return grid_centre(t, FPS)


def _sorted(gt: pd.DataFrame) -> pd.DataFrame:
    cols = ["video_id", "timestamp", "person_id", "action_id"]
    return gt[ava.GT_COLUMNS].sort_values(cols).reset_index(drop=True)


def _imported(out: Path) -> pd.DataFrame:
    return pd.concat([ava.read_gt_csv(out / "annotations" / f"{s}.csv") for s in ("train", "val")])


def _assert_same_gt(got: pd.DataFrame, want: pd.DataFrame, atol: float = 1e-6) -> None:
    got, want = _sorted(got), _sorted(want)
    assert len(got) == len(want)
    for column in ("video_id", "person_id", "action_id"):
        assert got[column].tolist() == want[column].tolist(), column
    np.testing.assert_allclose(got["timestamp"], want["timestamp"], atol=1e-9)
    np.testing.assert_allclose(got[ava.BOX_COLUMNS].to_numpy(), want[ava.BOX_COLUMNS].to_numpy(), atol=atol)


def _import(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["data", "import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _check(out: Path) -> None:
    cfg = load_config(out / "data.yaml")
    lines: list[str] = []
    results = check_dataset(cfg.data, lines.append)
    assert sum(r.usable for r in results) > 0
    assert lines[-1].startswith("ok:")


# ----------------------------------------------------------------------------------------------------
# The exports, written as the tools write them


def _box_attrs(box) -> str:
    x1, y1, x2, y2 = box
    return f'xtl="{x1 * W!r}" ytl="{y1 * H!r}" xbr="{x2 * W!r}" ybr="{y2 * H!r}"'


def _labels_meta(names: list[str], attribute: str | None = None) -> str:
    if attribute is None:
        body = "".join(f"<label><name>{escape(n)}</name><type>rectangle</type><attributes/></label>" for n in names)
        return body + "<label><name>body pose</name><type>skeleton</type><attributes/></label>"
    return (f"<label><name>person</name><type>rectangle</type><attributes><attribute><name>{attribute}</name>"
            f"<mutable>True</mutable><input_type>text</input_type><default_value></default_value>"
            f"<values></values></attribute></attributes></label>"
            f"<label><name>ball</name><type>polygon</type><attributes/></label>")


def _task_meta(task_id: int, video: str, step: int, labels: str, project: bool) -> str:
    filt = f"step={step}" if step > 1 else ""
    return (f"<task><id>{task_id}</id><name>{escape(video)} task</name><size>{N_FRAMES // step}</size>"
            f"<mode>interpolation</mode><start_frame>0</start_frame><stop_frame>{N_FRAMES - 1}</stop_frame>"
            f"<frame_filter>{filt}</frame_filter>" + ("" if project else f"<labels>{labels}</labels>") +
            f"<original_size><width>{W}</width><height>{H}</height></original_size>"
            f"<source>{escape(video)}.mp4</source></task>")


def write_cvat_video(path: Path, gt: pd.DataFrame, label_map: dict[int, str], step: int = 5) -> None:
    """A CVAT for video 1.1 project export: one task per video (frame_filter step), one track per person and
    action (labels mode, `group_id` = person), boxes only at the keyframes (interpolated in between) plus a
    non-key grid shape in between, `outside` where the person stops doing the action, a skeleton track."""
    persons = _persons(gt)
    videos = sorted(persons)
    names = list(label_map.values())
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "<version>1.1</version>", "<meta><project>",
             "<name>p</name><tasks>"]
    parts += [_task_meta(i, v, step, "", True) for i, v in enumerate(videos)]
    parts += ["</tasks>", f"<labels>{_labels_meta(names)}</labels>", "</project></meta>"]
    track_id = 0
    for task_id, video in enumerate(videos):
        for person, by_time in sorted(persons[video].items()):
            for action_id, name in label_map.items():
                times = sorted(t for t, (_, ids) in by_time.items() if action_id in ids)
                if not times:
                    continue
                shapes = []
                for i, t in enumerate(times):
                    box = by_time[t][0]
                    shapes.append(f'<box frame="{_frame(t)}" keyframe="1" outside="0" occluded="{i % 2}" '
                                  f'{_box_attrs(box)} z_order="0"></box>')
                    following = t + 1
                    if following in by_time and action_id in by_time[following][1]:
                        # A non-key shape on the step grid, as CVAT writes them: the interpolated box.
                        mid = _frame(t) + step
                        w = (mid - _frame(t)) / (_frame(following) - _frame(t))
                        inter = tuple(a + (b - a) * w for a, b in zip(box, by_time[following][0]))
                        shapes.append(f'<box frame="{mid}" keyframe="0" outside="0" occluded="0" '
                                      f'{_box_attrs(inter)} z_order="0"></box>')
                    elif _frame(following) < N_FRAMES:
                        shapes.append(f'<box frame="{_frame(following)}" keyframe="1" outside="1" occluded="0" '
                                      f'{_box_attrs(box)} z_order="0"></box>')
                parts.append(f'<track id="{track_id}" label={quoteattr(name)} source="manual" '
                             f'group_id="{person}" task_id="{task_id}">')
                parts += shapes
                parts.append("</track>")
                track_id += 1
        parts.append(f'<track id="{track_id}" label="body pose" source="manual" task_id="{task_id}">'
                     f'<skeleton frame="15" keyframe="1" z_order="0"><points label="head" outside="0" '
                     f'occluded="0" keyframe="1" points="10.0,10.0"></points></skeleton></track>')
        track_id += 1
    parts.append("</annotations>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def write_cvat_images(folder: Path, gt: pd.DataFrame, label_map: dict[int, str]) -> list[Path]:
    """One CVAT for images 1.1 task export per video: an image per keyframe frame (ids = task frames of a task
    made from the video with step 15), `person` boxes with a text attribute `action` (comma-separated), a
    polygon of another label."""
    paths = []
    persons = _persons(gt)
    for video in sorted(persons):
        meta = _task_meta(7, video, FPS, _labels_meta(list(label_map.values()), "action"), False)
        parts = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations><version>1.1</version>",
                 f"<meta>{meta}</meta>"]
        times = sorted({t for by_time in persons[video].values() for t in by_time})
        for t in times:
            frame = _frame(t)
            parts.append(f'<image id="{frame // FPS}" name="frame_{frame:06d}.PNG" width="{W}" height="{H}">')
            for person, by_time in sorted(persons[video].items()):
                if t in by_time:
                    box, ids = by_time[t]
                    value = ", ".join(label_map[i] for i in ids)
                    parts.append(f'<box label="person" source="manual" occluded="0" {_box_attrs(box)} z_order="0" '
                                 f'group_id="{person}"><attribute name="action">{escape(value)}</attribute></box>')
            parts.append('<polygon label="ball" source="manual" occluded="0" points="1.0,1.0;5.0,1.0;5.0,5.0" '
                         'z_order="0"></polygon>')
            parts.append("</image>")
        parts.append("</annotations>")
        path = folder / f"{video}.xml"
        path.write_text("\n".join(parts) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_labelstudio(path: Path, gt: pd.DataFrame, label_map: dict[int, str]) -> None:
    """Label Studio's JSON export: per task a `videorectangle` region per person and run of keyframes with the
    same actions (`labels`), ids `<person>_<k>`; keyframes in percent, 1-based frames, enabled between the
    run's keyframes, disabled at its end; a `timelinelabels` result that labels mode ignores."""
    persons = _persons(gt)
    tasks = []
    for video in sorted(persons):
        results = []
        for person, by_time in sorted(persons[video].items()):
            runs: list[list[float]] = []
            previous = None
            for t in sorted(by_time):
                ids = sorted(by_time[t][1])
                if previous is None or previous[1] != ids or t - previous[0] != 1:
                    runs.append([])
                runs[-1].append(t)
                previous = (t, ids)
            for k, run in enumerate(runs):
                sequence = []
                for i, t in enumerate(run):
                    x1, y1, x2, y2 = by_time[t][0]
                    sequence.append({"frame": _frame(t) + 1, "enabled": i + 1 < len(run), "rotation": 0,
                                     "x": x1 * 100, "y": y1 * 100, "width": (x2 - x1) * 100,
                                     "height": (y2 - y1) * 100, "time": _frame(t) / FPS})
                names = [label_map[i] for i in sorted(by_time[run[0]][1])]
                results.append({"id": f"{person}_{k}", "type": "videorectangle", "from_name": "box",
                                "to_name": "video", "origin": "manual",
                                "value": {"framesCount": N_FRAMES, "duration": N_FRAMES / FPS,
                                          "sequence": sequence, "labels": names}})
        results.append({"id": "tl1", "type": "timelinelabels", "from_name": "scene", "to_name": "video",
                        "value": {"ranges": [{"start": 1, "end": 10}], "timelinelabels": ["intro"]}})
        tasks.append({"id": len(tasks) + 1, "data": {"video": f"/data/upload/1/0a1b2c3d-{video}.mp4"},
                      "annotations": [{"id": 1, "was_cancelled": False, "result": results}], "predictions": []})
    path.write_text(json.dumps(tasks), encoding="utf-8")


def write_tracks_csv(path: Path, gt: pd.DataFrame, label_map: dict[int, str]) -> None:
    lines = ["video,frame,track_id,x1,y1,x2,y2,actions"]
    for video, persons in sorted(_persons(gt).items()):
        for person, by_time in sorted(persons.items()):
            for t, (box, ids) in sorted(by_time.items()):
                names = "|".join(label_map[i] for i in ids)
                lines.append(f"{video}.mp4,{_frame(t)},{person}," + ",".join(repr(float(v)) for v in box) + f",{names}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------
# Round trips


def _interpolated_truth(gt: pd.DataFrame, rate_times: list[float]) -> pd.DataFrame:
    """GT at half seconds by the CVAT export's rules (the frame of k + 0.5 is the earlier one on a tie): a
    person keeps the actions of keyframe k; its box moves linearly toward keyframe k + 1 when one of its action
    tracks goes on there, else it holds (the tracks end with `outside` boxes equal to the last box)."""
    rows = []
    for video, persons in _persons(gt).items():
        for person, by_time in persons.items():
            for t in rate_times:
                k = math.floor(t)
                if k not in by_time:
                    continue
                box, ids = by_time[k]
                if k + 1 in by_time and set(ids) & set(by_time[k + 1][1]):
                    w = (_frame(t) - _frame(k)) / (_frame(k + 1) - _frame(k))
                    box = tuple(a + (c - a) * w for a, c in zip(box, by_time[k + 1][0]))
                rows += [(video, t, *box, action, person) for action in ids]
    return pd.DataFrame(rows, columns=ava.GT_COLUMNS)


def test_cvat_video_round_trip_with_interpolation_outside_step_and_skipped_shapes(toy, tmp_path, capsys):
    root, label_map, gt = toy
    label_path, spaced = _spaced_label_map(tmp_path, label_map)
    export = tmp_path / "annotations.xml"
    write_cvat_video(export, gt, spaced)
    out = tmp_path / "data"
    code, stdout, err = _import(["cvat-video", str(export), "--videos", str(root / "videos"), "--out", str(out),
                                 "--label-map", str(label_path), "--val-fraction", "0.34"], capsys)
    assert code == 0, err
    _assert_same_gt(_imported(out), gt)
    assert "3 skeleton tracks (not boxes)" in stdout, stdout
    assert ava.read_label_map(out / "annotations" / "label_map.pbtxt") == spaced
    splits = json.loads((out / "import.json").read_text())["splits"]
    assert len(splits["val"]) == 1 and len(splits["train"]) == 2
    assert set(ava.read_gt_csv(out / "annotations" / "val.csv")["video_id"]) == set(splits["val"])
    _check(out)

    # Between keyframes: the interpolated truth at half seconds (keyframe rate 2).
    out2 = tmp_path / "data2"
    code, _, err = _import(["cvat-video", str(export), "--videos", str(root / "videos"), "--out", str(out2),
                            "--label-map", str(label_path), "--keyframe-rate", "2"], capsys)
    assert code == 0, err
    got = _imported(out2)
    halves = got[got["timestamp"] % 1 != 0]
    assert len(halves) > 0
    _assert_same_gt(halves, _interpolated_truth(gt, [k + 0.5 for k in range(8)]))
    _assert_same_gt(got[got["timestamp"] % 1 == 0], gt)


def test_cvat_images_round_trip_with_attribute_actions(toy, tmp_path, capsys):
    root, label_map, gt = toy
    exports = write_cvat_images(tmp_path, gt, label_map)
    out = tmp_path / "data"
    code, stdout, err = _import(["cvat-images", *map(str, exports), "--videos", str(root / "videos"),
                                 "--out", str(out), "--actions-from", "attribute:action",
                                 "--label-map", str(root / "annotations" / "label_map.pbtxt")], capsys)
    assert code == 0, err
    _assert_same_gt(_imported(out), gt)
    assert "polygon shapes (not boxes)" in stdout
    _check(out)


def test_labelstudio_round_trip(toy, tmp_path, capsys):
    root, label_map, gt = toy
    export = tmp_path / "project.json"
    write_labelstudio(export, gt, label_map)
    out = tmp_path / "data"
    code, stdout, err = _import(["labelstudio", str(export), "--videos", str(root / "videos"), "--out", str(out)],
                                capsys)
    assert code == 0, err
    # Without --label-map, ids are 1..N in order of appearance: compare by name.
    imported = ava.read_label_map(out / "annotations" / "label_map.pbtxt")
    to_toy = {i: {n: j for j, n in label_map.items()}[name] for i, name in imported.items()}
    got = _imported(out)
    got["action_id"] = got["action_id"].map(to_toy)
    _assert_same_gt(got, gt)
    assert "timelinelabels results (not video rectangles)" in stdout
    _check(out)


def test_tracks_csv_round_trip(toy, tmp_path, capsys):
    root, label_map, gt = toy
    export = tmp_path / "tracks.csv"
    write_tracks_csv(export, gt, label_map)
    out = tmp_path / "data"
    code, _, err = _import(["tracks-csv", str(export), "--videos", str(root / "videos"), "--out", str(out),
                            "--label-map", str(root / "annotations" / "label_map.pbtxt")], capsys)
    assert code == 0, err
    _assert_same_gt(_imported(out), gt)
    _check(out)


def test_interpolation_rules_of_cvat_and_label_studio():
    from sfdet.annotations.model import KeyShape, Track

    a, b = (0.0, 0.0, 0.2, 0.2), (0.4, 0.4, 0.6, 0.6)
    cvat = Track(1, [KeyShape(10, a, frozenset("x")), KeyShape(20, b, frozenset("x"), shown=False, continues=False),
                     KeyShape(30, a, frozenset("y"))], end_frame=40)
    assert cvat.at(9) is None and cvat.at(10)[0] == a
    assert cvat.at(15)[0] == pytest.approx((0.2, 0.2, 0.4, 0.4))  # toward the outside box, as CVAT
    assert cvat.at(20) is None and cvat.at(25) is None
    assert cvat.at(35) == (a, frozenset("y")) and cvat.at(41) is None
    studio = Track(1, [KeyShape(10, a, continues=True), KeyShape(20, b, continues=False), KeyShape(30, a)],
                   end_frame=40)
    assert studio.at(20)[0] == b and studio.at(21) is None and studio.at(40)[0] == a


# ----------------------------------------------------------------------------------------------------
# Malformed exports: one line naming the file and the element, nothing written


MINIMAL_META = ("<meta><task><id>1</id><name>t</name><start_frame>0</start_frame><stop_frame>119</stop_frame>"
                "<labels><label><name>stand</name><attributes/></label></labels>"
                "<original_size><width>320</width><height>180</height></original_size>"
                "<source>{video}.mp4</source></task></meta>")


@pytest.mark.parametrize("box, problem", [
    ('<box frame="15" outside="0" xtl="10" ytl="10" ybr="50"/>', "track 12, box at frame 15: missing attribute xbr"),
    ('<box frame="15" outside="0" xtl="50" ytl="10" xbr="40" ybr="50"/>', "track 12, box at frame 15: xbr < xtl"),
    ('<box frame="340" outside="0" xtl="10" ytl="10" xbr="40" ybr="50"/>', "track 12, box: frame 340 is past the end"),
    ("UNKNOWN", "track 12, box at frame 15: unknown label 'sit'"),
    ("TRUNCATED", "not well-formed XML at line"),
])
def test_malformed_cvat_exports_name_the_element_and_write_nothing(toy, tmp_path, capsys, box, problem):
    root, _, gt = toy
    video = sorted(gt["video_id"])[0]
    label = "stand"
    if box == "UNKNOWN":
        box, label = '<box frame="15" outside="0" xtl="10" ytl="10" xbr="40" ybr="50"/>', "sit"
    text = (f'<?xml version="1.0"?><annotations><version>1.1</version>{MINIMAL_META.format(video=video)}'
            f'<track id="12" label="{label}">{box if box != "TRUNCATED" else ""}</track></annotations>')
    if box == "TRUNCATED":
        text = text[: len(text) // 2]
    export = tmp_path / "annotations.xml"
    export.write_text(text)
    out = tmp_path / "data"
    code, stdout, err = _import(["cvat-video", str(export), "--videos", str(root / "videos"), "--out", str(out)],
                                capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{export}: " in lines[0] and problem in lines[0], err
    assert not out.exists() and not list(tmp_path.glob(".data*"))


@pytest.mark.parametrize("content", ['{"images": [], "annotations": []}', '[{"data": {"video": "x.mp4"}, '])
def test_json_that_is_not_a_label_studio_export(toy, tmp_path, capsys, content):
    root = toy[0]
    export = tmp_path / "coco.json"
    export.write_text(content)
    code, _, err = _import(["labelstudio", str(export), "--videos", str(root / "videos"), "--out",
                            str(tmp_path / "data")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{export}: " in err
    assert not (tmp_path / "data").exists()


def test_missing_action_attribute_is_named(toy, tmp_path, capsys):
    root, _, gt = toy
    video = sorted(gt["video_id"])[0]
    meta = MINIMAL_META.format(video=video).replace(
        "<label><name>stand</name><attributes/></label>",
        "<label><name>person</name><attributes><attribute><name>action</name><mutable>True</mutable>"
        "<input_type>text</input_type><values></values></attribute></attributes></label>")
    export = tmp_path / "a.xml"
    export.write_text(f'<annotations>{meta}<track id="3" label="person"><box frame="15" outside="0" xtl="1" '
                      f'ytl="1" xbr="40" ybr="50"></box></track></annotations>')
    code, _, err = _import(["cvat-video", str(export), "--videos", str(root / "videos"), "--out",
                            str(tmp_path / "data"), "--actions-from", "attribute:action"], capsys)
    assert code == 2
    assert f"{export}: track 3, box at frame 15: missing attribute 'action'" in err


# ----------------------------------------------------------------------------------------------------
# The road back: predict's tracks CSV -> export -> import


@pytest.mark.parametrize("fmt, import_fmt", [("cvat", "cvat-video"), ("labelstudio", "labelstudio")])
def test_predicted_tracks_export_and_import_back(toy, tmp_path, capsys, fmt, import_fmt):
    from sfdet.predict.writers import KeyframePrediction, OutputPaths, PersonPrediction, PredictionWriter

    root, label_map, gt = toy
    label_path = root / "annotations" / "label_map.pbtxt"
    video = sorted(gt["video_id"])[-1]
    rows = gt[gt["video_id"] == video]
    ids = list(label_map)
    paths = OutputPaths(csv=tmp_path / f"{video}.csv", tracks_csv=tmp_path / f"{video}.tracks.csv",
                        jsonl=tmp_path / f"{video}.jsonl", video=None)
    writer = PredictionWriter(paths, label_map, min_score=0.01, label_threshold=0.5)
    for t in range(8):  # predict's keyframes: every second from 0
        persons = []
        for person, p_rows in rows[rows["timestamp"] == t].groupby("person_id"):
            scores = np.full(len(ids), 0.1, dtype=np.float32)
            for action in p_rows["action_id"]:
                scores[ids.index(int(action))] = 0.9
            persons.append(PersonPrediction(p_rows[ava.BOX_COLUMNS].to_numpy(np.float32)[0], 0.99, int(person) + 3,
                                            scores))
        writer.write_keyframe(KeyframePrediction(video, float(t), t * FPS, persons))
    writer.close()
    predicted = ava.read_gt_csv(paths.tracks_csv)

    export = tmp_path / ("annotations.xml" if fmt == "cvat" else "tasks.json")
    assert cli.main(["data", "export", fmt, str(paths.tracks_csv), "--videos", str(root / "videos"),
                     "--label-map", str(label_path), "--out", str(export)]) == 0
    out = tmp_path / "data"
    code, _, err = _import([import_fmt, str(export), "--videos", str(root / "videos"), "--out", str(out),
                            "--label-map", str(label_path), "--val-fraction", "0"], capsys)
    assert code == 0, err
    _assert_same_gt(_imported(out), predicted, atol=1e-6)


def test_sfdet_predict_then_export_cvat_then_import_gives_back_the_predicted_tracks(toy, tmp_path, capsys):
    """The loop as a user runs it: `sfdet predict` (random-weight toy model, the toy set's proposals) ->
    `sfdet data export cvat` -> `sfdet data import cvat-video` gives back predict's tracks CSV."""
    import torch

    from sfdet.config import load_config
    from sfdet.models import build_model
    from sfdet.models.checkpoint import save_sfdet_checkpoint
    from sfdet.models.recipe import ClipRecipe

    root, label_map, gt = toy
    label_path = root / "annotations" / "label_map.pbtxt"
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "toy" / "slowfast_tiny.yaml",
                      [f"data.root={root}", "data.num_frames=8", "data.test_short_side=64",
                       f"model.num_classes={len(label_map)}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    weights = tmp_path / "model.pt"
    save_sfdet_checkpoint(weights, model, label_map=label_map, recipe=ClipRecipe.from_data(cfg.data, cfg.model.alpha))
    video = sorted((root / "videos").glob("*val*"))[0]
    preds = tmp_path / "preds"
    assert cli.main(["predict", str(video), "--weights", str(weights), "--boxes",
                     str(root / "annotations" / "val_predicted_boxes.csv"), "--out", str(preds), "--precision", "fp32",
                     "--render-threshold", "0.3", "--no-progress"]) == 0
    tracks = preds / f"{video.stem}.tracks.csv"
    predicted = ava.read_gt_csv(tracks)
    assert len(predicted) > 0
    capsys.readouterr()

    export = tmp_path / "annotations.xml"
    assert cli.main(["data", "export", "cvat", str(tracks), "--videos", str(root / "videos"),
                     "--label-map", str(label_path), "--out", str(export)]) == 0
    out = tmp_path / "data"
    code, _, err = _import(["cvat-video", str(export), "--videos", str(root / "videos"), "--out", str(out),
                            "--label-map", str(label_path), "--val-fraction", "0"], capsys)
    assert code == 0, err
    _assert_same_gt(_imported(out), predicted, atol=1e-6)
