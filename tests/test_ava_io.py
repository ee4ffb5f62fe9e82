"""AVA file readers/writers: exact round trips, and one FILE:LINE error per malformed row."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from sfdet.data import ava
from sfdet.errors import DataError

REFERENCE = "/work/shared/reference"


def random_boxes(rng, n):
    corners = np.sort(rng.random((n, 2, 2)), axis=1)
    return corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]


def predictions(rng, n=500):
    x1, y1, x2, y2 = random_boxes(rng, n)
    return pd.DataFrame({
        "video_id": rng.choice(["-5KQ66BBWC4", "a_b-c", "vid"], n),
        "timestamp": rng.choice([902.0, 1798.0, 903.5, 0.25, 7.0], n),
        "x1": x1, "y1": y1, "x2": x2, "y2": y2,
        "action_id": rng.integers(1, 81, n),
        "score": rng.random(n),
    })


def assert_same(table: pd.DataFrame, expected: pd.DataFrame):
    assert list(table.columns) == list(expected.columns)
    for column in expected.columns:
        np.testing.assert_array_equal(table[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


# ---------------------------------------------------------------------------------------------- round trips


def test_predictions_round_trip_is_bit_exact(tmp_path):
    table = predictions(np.random.default_rng(0))
    ava.write_predictions_csv(tmp_path / "pred.csv", table)
    assert_same(ava.read_predictions_csv(tmp_path / "pred.csv"), table)


def test_gt_round_trip_with_and_without_person_id(tmp_path):
    table = predictions(np.random.default_rng(1)).drop(columns="score").assign(person_id=lambda t: t.index % 7)
    ava.write_gt_csv(tmp_path / "gt.csv", table)
    assert_same(ava.read_gt_csv(tmp_path / "gt.csv"), table)
    ava.write_gt_csv(tmp_path / "gt7.csv", table.assign(person_id=-1))
    assert all(line.count(",") == 6 for line in (tmp_path / "gt7.csv").read_text().splitlines())
    assert_same(ava.read_gt_csv(tmp_path / "gt7.csv"), table.assign(person_id=-1))


def test_timestamps_are_written_as_ava_does(tmp_path):
    table = predictions(np.random.default_rng(2), n=5).assign(timestamp=[902.0, 7.0, 903.5, 0.25, 1798.0])
    ava.write_predictions_csv(tmp_path / "pred.csv", table)
    written = [line.split(",")[1] for line in (tmp_path / "pred.csv").read_text().splitlines()]
    assert written == ["0902", "0007", "903.5", "0.25", "1798"]
    assert ava.make_key("vid", 902.0) == "vid,0902"


def test_exclusions_round_trip(tmp_path):
    table = pd.DataFrame({"video_id": ["a", "b"], "timestamp": [902.0, 1000.5]})
    ava.write_exclusions(tmp_path / "ex.csv", table)
    assert (tmp_path / "ex.csv").read_text() == "a,0902\nb,1000.5\n"
    assert_same(ava.read_exclusions(tmp_path / "ex.csv"), table)


def test_label_map_both_forms_round_trip(tmp_path):
    labels_80 = ava.read_label_map(f"{REFERENCE}/ava_action_list_v2.2.pbtxt")
    labels_60 = ava.read_label_map(f"{REFERENCE}/ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    assert len(labels_80) == 80 and len(labels_60) == 60
    assert labels_80[1] == "bend/bow (at the waist)" and labels_60[80] == "watch (a person)"
    assert set(labels_60) < set(labels_80)
    for form in ("item", "label"):
        ava.write_label_map(tmp_path / f"{form}.pbtxt", labels_80, form=form)
        assert ava.read_label_map(tmp_path / f"{form}.pbtxt") == labels_80


def test_proposals_csv_and_pickle_round_trip(tmp_path):
    table = predictions(np.random.default_rng(3)).drop(columns="action_id")
    table = table.drop_duplicates(subset=["video_id", "timestamp", "x1", "y1", "x2", "y2"]).reset_index(drop=True)
    ava.write_proposals_csv(tmp_path / "boxes.csv", table)
    assert_same(ava.read_proposals(tmp_path / "boxes.csv"), table)
    ava.write_proposals_pkl(tmp_path / "boxes.pkl", table)
    with open(tmp_path / "boxes.pkl", "rb") as f:
        content = pickle.load(f)
    assert "vid,0902" in content and content["vid,0902"].shape[1] == 5
    read = ava.read_proposals(tmp_path / "boxes.pkl")
    key = ["video_id", "timestamp", "x1", "y1", "x2", "y2"]
    assert_same(read.sort_values(key).reset_index(drop=True), table.sort_values(key).reset_index(drop=True))


def test_proposals_csv_in_ava_predicted_boxes_layout(tmp_path):
    """`ava_val_predicted_boxes.csv`: one row per (box, label), empty or -1 action id, score last."""
    (tmp_path / "boxes.csv").write_text(
        "vid,0902,0.1,0.2,0.5,0.6,,0.95\n"
        "vid,0902,0.1,0.2,0.5,0.6,12,0.95\n"
        "vid,0903,0.2,0.2,0.5,0.6,-1,0.5\n")
    table = ava.read_proposals(tmp_path / "boxes.csv")
    assert table["score"].tolist() == [0.95, 0.5] and table["timestamp"].tolist() == [902.0, 903.0]
    assert ava.read_proposals(tmp_path / "boxes.csv", min_score=0.8)["score"].tolist() == [0.95]


def test_frame_lists_round_trip(tmp_path):
    table = pd.DataFrame({
        "original_video_id": ["-5KQ66BBWC4", "-5KQ66BBWC4", "zz"],
        "video_id": [0, 0, 1], "frame_id": [0, 1, 0],
        "path": ["-5KQ66BBWC4/-5KQ66BBWC4_000001.jpg", "-5KQ66BBWC4/-5KQ66BBWC4_000002.jpg", "zz/zz_000001.jpg"],
        "labels": ["", "", "3,4"],
    })
    ava.write_frame_lists(tmp_path / "val.csv", table)
    lines = (tmp_path / "val.csv").read_text().splitlines()
    assert lines[0] == "original_vido_id video_id frame_id path labels"
    assert lines[1] == '-5KQ66BBWC4 0 0 -5KQ66BBWC4/-5KQ66BBWC4_000001.jpg ""'
    assert_same(ava.read_frame_lists(tmp_path / "val.csv"), table)


# ---------------------------------------------------------------------------------------------- bad rows

GOOD = "vid,0902,0.1,0.2,0.5,0.6,12,0.9\n"


@pytest.mark.parametrize("bad_row, message", [
    ("vid,0902,0.1,0.2,0.5,0.6,12,0.9,1", "expected 7 or 8 comma-separated fields, got 9"),
    ("vid,0902,0.1,0.2,0.5", "expected 7 or 8 comma-separated fields, got 5"),
    ("vid,0902,0.1,abc,0.5,0.6,12,0.9", "y1 'abc' is not a number"),
    ("vid,0902,0.1,0.2,0.5,0.6,twelve,0.9", "action_id 'twelve' is not an integer"),
    ("vid,noon,0.1,0.2,0.5,0.6,12,0.9", "timestamp 'noon' is not a number"),
    ("vid,0902,0.1,0.2,1.5,0.6,12,0.9", "outside [0,1]"),
    ("vid,0902,0.5,0.2,0.1,0.6,12,0.9", "x1 >= x2"),
    ("vid,0902,0.1,0.6,0.5,0.6,12,0.9", "y1 >= y2"),
    ("vid,0902,0.1,nan,0.5,0.6,12,0.9", "box 0.1,nan,0.5,0.6: y1 is not a number (NaN or inf)"),
    ("vid,0902,nan,0.2,inf,0.6,12,0.9", "box nan,0.2,inf,0.6: x1 and x2 are not a number (NaN or inf)"),
    (",0902,0.1,0.2,0.5,0.6,12,0.9", "empty video_id"),
    ("vid,0902,0.1,0.2,0.5,0.6,12,nan", "score nan is not a finite number"),
    ("vid,0902,0.1,0.2,0.5,0.6,81,0.9", "action id 81 is not in the label map"),
])
def test_malformed_prediction_row_names_file_and_line(tmp_path, bad_row, message):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD * 3 + bad_row + "\n" + GOOD)
    with pytest.raises(DataError) as error:
        ava.read_predictions_csv(path, label_map={12: "x", 1: "y"})
    assert str(error.value).startswith(f"{path}:4: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_gt_box_is_not_a_number_not_outside_the_frame(tmp_path, value):
    path = tmp_path / "gt.csv"
    path.write_text("vid,0902,0.1,0.2,0.5,0.6,12,0\n" f"vid,0902,0.1,0.2,{value},0.6,12,1\n")
    with pytest.raises(DataError) as error:
        ava.read_gt_csv(path)
    shown = repr(float(value))
    assert str(error.value) == f"{path}:2: box 0.1,0.2,{shown},0.6: x2 is not a number (NaN or inf)"
    with pytest.raises(DataError, match=r"gt.csv:2: box .*: x2 is not a number \(NaN or inf\)$"):
        ava.read_predictions_csv(path)
    with pytest.warns(ava.DataWarning, match=r"skipped 1 malformed row\(s\); first at line 2: .* not a number"):
        table = ava.read_gt_csv(path, skip_bad_rows=True)
    assert len(table) == 1 and table.attrs["bad_rows"] == 1


def test_a_directory_is_named_as_one(tmp_path):
    with pytest.raises(DataError) as error:
        ava.read_gt_csv(tmp_path)
    assert str(error.value) == f"{tmp_path}: is a directory, not a file"


def test_box_tolerance_accepts_rounding_noise(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("vid,0902,-0.0005,0.2,1.0009,0.6,12\n")
    assert ava.read_gt_csv(path)["x2"].tolist() == [1.0009]


def test_skip_bad_rows_drops_them_and_reports_the_count(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD + "vid,0902,0.1,x,0.5,0.6,12,0.9\n\n" + GOOD + "vid,0902,0.5,0.2,0.1,0.6,12,0.9\n")
    with pytest.warns(ava.DataWarning, match=r"skipped 2 malformed row\(s\); first at line 2"):
        table = ava.read_predictions_csv(path, skip_bad_rows=True)
    assert len(table) == 2 and table.attrs["bad_rows"] == 2
    path.write_text(GOOD * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file warns about nothing
        assert ava.read_predictions_csv(path, skip_bad_rows=True).attrs["bad_rows"] == 0


def test_clean_file_reports_zero_bad_rows_and_line_numbers(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD * 3)
    table = ava.read_predictions_csv(path, line_numbers=True)
    assert table.attrs["bad_rows"] == 0 and table["line"].tolist() == [1, 2, 3]


def test_prediction_rows_without_score_get_score_one(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text("vid,0902,0.1,0.2,0.5,0.6,12\n" + GOOD)
    table = ava.read_predictions_csv(path)
    assert table["score"].tolist() == [1.0, 0.9] and table.attrs["missing_scores"] == 1


def test_lenient_boxes_for_the_evaluator(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("vid,0902,0.5,0.2,0.1,0.6,12\nvid,0902,nan,0.2,1.5,0.6,12\n")
    table = ava.read_gt_csv(path, check_boxes=False, missing_person_id=1)
    assert len(table) == 2 and table["person_id"].tolist() == [1, 1]


def test_missing_file_and_bad_label_maps(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        ava.read_gt_csv(tmp_path / "nope.csv")
    (tmp_path / "a.pbtxt").write_text('item {\n  name: "x"\n  id: one\n}\n')
    with pytest.raises(DataError, match=r"a.pbtxt:3: id 'one' is not an integer"):
        ava.read_label_map(tmp_path / "a.pbtxt")
    (tmp_path / "b.pbtxt").write_text('item {\n  name: "x"\n  id: 1\n}\nitem {\n  name: "y"\n  id: 1\n}\n')
    with pytest.raises(DataError, match=r"b.pbtxt:5: duplicate id 1"):
        ava.read_label_map(tmp_path / "b.pbtxt")
    (tmp_path / "c.pbtxt").write_text("video,0902,0.1\n")
    with pytest.raises(DataError, match=r"c.pbtxt:1: unexpected line"):
        ava.read_label_map(tmp_path / "c.pbtxt")


def test_frame_list_errors(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("video frame\n")
    with pytest.raises(DataError, match=r"val.csv:1: expected the header line"):
        ava.read_frame_lists(path)
    path.write_text("original_vido_id video_id frame_id path labels\nvid 0 x vid/1.jpg \"\"\n")
    with pytest.raises(DataError, match=r"val.csv:2: frame_id 'x' is not an integer"):
        ava.read_frame_lists(path)


def test_proposal_pickle_errors(tmp_path):
    path = tmp_path / "p.pkl"
    with open(path, "wb") as f:
        pickle.dump({"vid,0902": np.array([[0.5, 0.1, 0.2, 0.6, 0.9]])}, f)
    with pytest.raises(DataError, match=r"p.pkl: key 'vid,0902': box .* x1 >= x2"):
        ava.read_proposals(path)
