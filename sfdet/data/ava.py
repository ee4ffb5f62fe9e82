"""Readers and writers for every AVA file: GT, predictions, label maps, exclusions, frame lists, proposals.

Every reader validates every row and raises `DataError("FILE:LINE: what is wrong")` on the first
malformed one. With `skip_bad_rows=True` bad rows are dropped instead: the returned DataFrame then
carries `df.attrs["bad_rows"]` (the count; 0 when the file was clean) and one `DataWarning` is issued
naming the first dropped line. Clean files take a fast path (one pandas parse plus vectorised checks);
only a file that fails it is re-read row by row with Python's `csv` module to locate the bad lines.

Tables (all boxes are `boxes_norm`: normalised [0,1] xyxy, as in the AVA CSVs):
    GT           video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]        (no header)
    predictions  video_id, timestamp, x1, y1, x2, y2, action_id, score              (no header)
    proposals    video_id, timestamp, x1, y1, x2, y2, action_id, score              (`ava_*_predicted_boxes.csv`,
                 PySlowFast `person_box_67091280_iou90/*.csv`; action_id may be empty or -1)
                 or MMAction2's pickle {"vid,%04d": (N, 5) float [x1, y1, x2, y2, score]}
    exclusions   video_id, timestamp                                                 (no header)
    frame lists  `original_vido_id video_id frame_id path labels`                    (space-separated, header)

Timestamps are floats (fractional allowed). Writers give `%04d` for integral ones (as AVA) and the
shortest exact decimal otherwise; boxes and scores are written with the shortest exact decimal
(`repr`), so a written file reads back bit-identical.
"""

from __future__ import annotations

import csv
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from sfdet.errors import DataError

BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
GT_COLUMNS = ["video_id", "timestamp", *BOX_COLUMNS, "action_id", "person_id"]
PREDICTION_COLUMNS = ["video_id", "timestamp", *BOX_COLUMNS, "action_id", "score"]
PROPOSAL_COLUMNS = ["video_id", "timestamp", *BOX_COLUMNS, "score"]
EXCLUSION_COLUMNS = ["video_id", "timestamp"]
FRAME_LIST_COLUMNS = ["original_video_id", "video_id", "frame_id", "path", "labels"]
FRAME_LIST_HEADER = "original_vido_id video_id frame_id path labels"  # AVA's spelling, typo included

# Normalised boxes may stray this far outside [0, 1] (rounding in published files) before a row is bad.
BOX_TOLERANCE = 1e-3


class DataWarning(UserWarning):
    """Rows were dropped by a reader called with `skip_bad_rows=True`."""


# ----------------------------------------------------------------------------------------------------
# Keys and number formatting


def format_timestamp(timestamp: float) -> str:
    """`%04d` for an integral timestamp (AVA's `0902`), else the shortest exact decimal (`902.5`)."""
    timestamp = float(timestamp)
    if timestamp.is_integer():
        return "%04d" % int(timestamp)
    return repr(timestamp)


def make_key(video_id: str, timestamp: float) -> str:
    """The keyframe key `"video_id,0902"` used by the AVA evaluator and MMAction2's proposal pickles."""
    return f"{video_id},{format_timestamp(timestamp)}"


def _format_timestamps(timestamps: pd.Series) -> pd.Series:
    """Vectorised `format_timestamp`: AVA has few distinct timestamps, so format the unique ones."""
    values = timestamps.to_numpy(dtype=np.float64)
    uniques, inverse = np.unique(values, return_inverse=True)
    formatted = np.array([format_timestamp(v) for v in uniques.tolist()], dtype=object)
    return pd.Series(formatted[inverse.reshape(-1)], index=timestamps.index)


# ----------------------------------------------------------------------------------------------------
# Generic validated table reader


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # "str", "float", "int" (integral number) or "skip" (any text, not converted)
    optional: bool = False  # a trailing column that rows may leave out
    default: object = None  # value when the column is absent or (for "skip") empty


# A check: (rows that are bad, function giving the reason for one bad row from its values).
_Check = tuple[np.ndarray, Callable[[pd.Series], str]]


def _check_path(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path


def _read_table(
    path,
    columns: list[_Column],
    checks: Callable[[pd.DataFrame], list[_Check]],
    *,
    skip_bad_rows: bool,
    sep: str = ",",
    header: str | None = None,
    line_numbers: bool = False,
) -> pd.DataFrame:
    """Parse a delimited text file into typed columns, validate each row, report bad rows by line.

    `line_numbers=True` adds a `line` column (1-based line in the file) for callers that report rows later.
    """
    path = _check_path(path)
    header_lines = 0
    if header is not None:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
        if first.split() != header.split() and first.split() != [c.name for c in columns]:
            raise DataError(f"{path}:1: expected the header line '{header}', got '{first[:80]}'")
        header_lines = 1
    try:
        table, line_numbers_of_rows, n_fields, problems = _parse_fast(path, columns, sep, header_lines)
    except (ValueError, pd.errors.ParserError, _NeedsSlowPath):
        table, line_numbers_of_rows, n_fields, problems = _parse_slow(path, columns, sep, header_lines)
    table = table.reset_index(drop=True)

    bad = np.zeros(len(table), dtype=bool)
    first_bad: tuple[int, str] | None = None
    for mask, reason in problems + checks(table):
        mask = np.asarray(mask, dtype=bool) & ~bad
        if not mask.any():
            continue
        row = int(np.flatnonzero(mask)[0])
        if first_bad is None or line_numbers_of_rows[row] < first_bad[0]:
            first_bad = (int(line_numbers_of_rows[row]), reason(table.iloc[row]))
        bad |= mask
    if first_bad is not None and not skip_bad_rows:
        raise DataError(f"{path}:{first_bad[0]}: {first_bad[1]}")
    if first_bad is not None:
        warnings.warn(
            f"{path}: skipped {int(bad.sum())} malformed row(s); first at line {first_bad[0]}: {first_bad[1]}",
            DataWarning,
            stacklevel=3,
        )
        table = table[~bad].reset_index(drop=True)
    if line_numbers:
        table["line"] = np.asarray(line_numbers_of_rows, dtype=np.int64)[~bad]
    table.attrs["bad_rows"] = int(bad.sum())
    table.attrs["short_rows"] = int((n_fields[~bad] < len(columns)).sum())  # rows without the optional column
    return table


class _NeedsSlowPath(Exception):
    pass


def _empty_table(columns: list[_Column]) -> pd.DataFrame:
    dtypes = {"str": object, "skip": object, "float": np.float64, "int": np.int64}
    return pd.DataFrame({c.name: pd.Series([], dtype=dtypes[c.kind]) for c in columns})


def _parse_fast(path: Path, columns: list[_Column], sep: str, header_lines: int):
    """One pandas parse; any irregularity (ragged rows, non-numbers, blank lines) raises for the slow path."""
    n_required = sum(not c.optional for c in columns)
    dtypes = {"str": str, "skip": str, "float": np.float64, "int": np.int64}
    try:
        raw = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=header_lines,
            dtype={i: dtypes[c.kind] for i, c in enumerate(columns)},
            na_filter=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_MINIMAL,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        return _empty_table(columns), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
    if not n_required <= raw.shape[1] <= len(columns):
        raise _NeedsSlowPath
    table = pd.DataFrame({c.name: raw[i] if i < raw.shape[1] else c.default for i, c in enumerate(columns)})
    for c in columns:
        if c.kind == "str" and (table[c.name] == "").any():
            raise _NeedsSlowPath  # blank line or empty field: the slow path tells them apart
        if c.kind in ("str", "skip"):
            table[c.name] = table[c.name].astype(object)
    line_numbers = np.arange(len(table), dtype=np.int64) + 1 + header_lines
    return table, line_numbers, np.full(len(table), raw.shape[1]), []


def _parse_numbers(strings: list, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Python's `float()` on each string (exactly what the reference readers do); NaN + mask where it fails."""
    array = np.asarray(strings, dtype=object)
    try:
        values = array.astype(np.float64)
        ok = np.ones(len(array), dtype=bool)
    except (ValueError, TypeError):
        values = np.full(len(array), np.nan)
        ok = np.zeros(len(array), dtype=bool)
        for i, s in enumerate(strings):
            try:
                values[i] = float(s)
                ok[i] = True
            except (ValueError, TypeError):
                pass
    if kind == "int":
        ok &= np.isfinite(values) & (np.floor(values) == values)
    return values, ok


def _parse_slow(path: Path, columns: list[_Column], sep: str, header_lines: int):
    """Row-by-row parse with `csv`; returns per-row problems (wrong field count, non-numbers) as checks."""
    rows, line_numbers = [], []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        # Comma files as `csv` reads them (the reference evaluator does); space files as `str.split` (PySlowFast).
        lines = csv.reader(f, delimiter=sep) if sep == "," else (line.split() for line in f)
        for line_number, row in enumerate(lines, start=1):
            if line_number <= header_lines:
                continue
            if not row or (len(row) == 1 and row[0].strip() == ""):
                continue  # blank lines are ignored
            rows.append(row)
            line_numbers.append(line_number)
    if not rows:
        return _empty_table(columns), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
    n_fields = np.array([len(r) for r in rows])
    n_required = sum(not c.optional for c in columns)
    wrong_count = (n_fields < n_required) | (n_fields > len(columns))
    expected = f"{n_required}" if n_required == len(columns) else f"{n_required} or {len(columns)}"
    separator = "comma" if sep == "," else "space"
    problems: list[_Check] = [
        (wrong_count, lambda r, e=expected: f"expected {e} {separator}-separated fields, got {r['_n_fields']}")
    ]
    data = {}
    for i, c in enumerate(columns):
        present = n_fields > i
        strings = [r[i] if len(r) > i else "" for r in rows]
        if c.kind in ("str", "skip"):
            values = np.array(strings, dtype=object)
            if c.default is not None:
                values[(~present) | (values == "")] = c.default
            data[c.name] = values
            if c.kind == "str":
                problems.append((present & (values == ""), lambda r, n=c.name: f"empty {n}"))
            continue
        values, ok = _parse_numbers(strings, c.kind)
        missing = ~present
        if c.optional:
            values[missing] = c.default
            ok |= missing
        data[c.name] = values
        data[f"_raw_{c.name}"] = np.array(strings, dtype=object)
        word = "an integer" if c.kind == "int" else "a number"
        problems.append(
            (~ok & ~wrong_count, lambda r, n=c.name, w=word: f"{n} {r['_raw_' + n]!r} is not {w}")
        )
    data["_n_fields"] = n_fields
    table = pd.DataFrame(data)
    for c in columns:
        if c.kind == "int":
            values = table[c.name].to_numpy()
            table[c.name] = np.where(np.isfinite(values), values, 0).astype(np.int64)
    # Reasons read the raw strings; the table handed back keeps only the typed columns.
    extra = [k for k in table.columns if k.startswith("_")]
    full = table
    problems = [(mask, _with_row(reason, full)) for mask, reason in problems]
    return table.drop(columns=extra), np.array(line_numbers, dtype=np.int64), n_fields, problems


def _with_row(reason: Callable[[pd.Series], str], full: pd.DataFrame) -> Callable[[pd.Series], str]:
    """Reasons of the slow path see the raw fields too: look the row up by its index in `full`."""
    return lambda row: reason(full.loc[row.name])


# ----------------------------------------------------------------------------------------------------
# Row checks shared by the readers


def _box_checks(table: pd.DataFrame) -> list[_Check]:
    boxes = table[BOX_COLUMNS].to_numpy(dtype=np.float64)
    describe = lambda r: ",".join(repr(float(r[c])) for c in BOX_COLUMNS)  # noqa: E731
    finite = np.isfinite(boxes).all(axis=1)
    inside = finite & (boxes >= -BOX_TOLERANCE).all(axis=1) & (boxes <= 1 + BOX_TOLERANCE).all(axis=1)
    return [
        (~finite, lambda r: f"box {describe(r)}: {_not_finite_names(r)} not a number (NaN or inf)"),
        (~inside, lambda r: f"box {describe(r)} is outside [0,1] (boxes must be normalised x1,y1,x2,y2)"),
        (boxes[:, 0] >= boxes[:, 2], lambda r: f"box {describe(r)} has x1 >= x2"),
        (boxes[:, 1] >= boxes[:, 3], lambda r: f"box {describe(r)} has y1 >= y2"),
    ]


def _not_finite_names(row: pd.Series) -> str:
    """`x1 is` / `x1 and y2 are`: the box coordinates of `row` that are NaN or infinite."""
    names = [c for c in BOX_COLUMNS if not np.isfinite(float(row[c]))]
    return (" and ".join(names)) + (" is" if len(names) == 1 else " are")


def _timestamp_checks(table: pd.DataFrame) -> list[_Check]:
    ts = table["timestamp"].to_numpy(dtype=np.float64)
    return [(~np.isfinite(ts), lambda r: f"timestamp {float(r['timestamp'])!r} is not finite")]


def _action_checks(table: pd.DataFrame, label_map: Mapping[int, str] | None) -> list[_Check]:
    if label_map is None:
        return []
    known = np.isin(table["action_id"].to_numpy(), np.fromiter(label_map, dtype=np.int64))
    return [(~known, lambda r: f"action id {int(r['action_id'])} is not in the label map")]


def _score_checks(table: pd.DataFrame, finite: bool) -> list[_Check]:
    scores = table["score"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(scores) if finite else np.isnan(scores)
    return [(bad, lambda r: f"score {float(r['score'])!r} is not a {'finite ' if finite else ''}number")]


_BOXED = [
    _Column("video_id", "str"),
    _Column("timestamp", "float"),
    *[_Column(c, "float") for c in BOX_COLUMNS],
]


# ----------------------------------------------------------------------------------------------------
# Readers


def read_label_map(path) -> dict[int, str]:
    """`{id: name}` ordered by id, from a `.pbtxt` in either AVA form.

    `item { name: "..." id: N }` (the ActivityNet 60-class list) and
    `label { name: "..." label_id: N label_type: ... }` (the 80-class v2.x list).
    """
    path = _check_path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    entries: dict[int, str] = {}
    block_start, name, block_id = None, None, None
    for line_number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.fullmatch(r"(item|label)\s*\{", stripped):
            if block_start is not None:
                raise DataError(f"{path}:{line_number}: a new block starts before line {block_start}'s is closed")
            block_start, name, block_id = line_number, None, None
        elif stripped == "}":
            if block_start is None:
                raise DataError(f"{path}:{line_number}: '}}' without an open item/label block")
            if name is None or block_id is None:
                raise DataError(f"{path}:{block_start}: block has no {'name' if name is None else 'id'}")
            if block_id in entries:
                raise DataError(f"{path}:{block_start}: duplicate id {block_id}")
            entries[block_id] = name
            block_start = None
        elif block_start is not None and (m := re.fullmatch(r'(?:display_)?name:\s*"(.*)"', stripped)):
            if name is None or not stripped.startswith("display_"):
                name = m.group(1)
        elif block_start is not None and (m := re.fullmatch(r"(?:id|label_id):\s*(\S+)", stripped)):
            try:
                block_id = int(m.group(1))
            except ValueError:
                raise DataError(f"{path}:{line_number}: id {m.group(1)!r} is not an integer") from None
        elif block_start is not None and re.fullmatch(r"label_type:\s*\S+", stripped):
            pass
        else:
            raise DataError(f"{path}:{line_number}: unexpected line {stripped[:60]!r} in a label map")
    if block_start is not None:
        raise DataError(f"{path}:{block_start}: block is never closed")
    if not entries:
        raise DataError(f"{path}: no `item {{ name: ... id: ... }}` entries: is this a label map .pbtxt?")
    return dict(sorted(entries.items()))


def read_gt_csv(path, label_map: Mapping[int, str] | None = None, skip_bad_rows: bool = False,
                check_boxes: bool = True, missing_person_id: int = -1, line_numbers: bool = False) -> pd.DataFrame:
    """AVA ground truth -> DataFrame[video_id, timestamp, x1, y1, x2, y2, action_id, person_id].

    `person_id` is `missing_person_id` (-1) on rows without the 8th column. `check_boxes=False` keeps
    boxes that are not finite, outside [0,1] or inverted (the evaluator handles them as the reference
    does); the other checks always apply. `line_numbers=True` adds the file line of each row as `line`.
    """
    columns = [*_BOXED, _Column("action_id", "int"),
               _Column("person_id", "int", optional=True, default=missing_person_id)]

    def checks(t):
        return _timestamp_checks(t) + (_box_checks(t) if check_boxes else []) + _action_checks(t, label_map)

    return _read_table(path, columns, checks, skip_bad_rows=skip_bad_rows, line_numbers=line_numbers)


def read_predictions_csv(path, label_map: Mapping[int, str] | None = None, skip_bad_rows: bool = False,
                         check_boxes: bool = True, line_numbers: bool = False) -> pd.DataFrame:
    """AVA detections -> DataFrame[video_id, timestamp, x1, y1, x2, y2, action_id, score].

    A row without the score column gets score 1.0, as the ActivityNet evaluator does;
    `df.attrs["missing_scores"]` counts them. Scores must not be NaN (their ranking is undefined);
    with `check_boxes=True` (strict) they must also be finite and boxes valid. The evaluator reads
    with `check_boxes=False` and handles odd boxes as the reference does.
    """
    columns = [*_BOXED, _Column("action_id", "int"), _Column("score", "float", optional=True, default=1.0)]

    def checks(t):
        box = _box_checks(t) if check_boxes else []
        return _timestamp_checks(t) + box + _action_checks(t, label_map) + _score_checks(t, finite=check_boxes)

    table = _read_table(path, columns, checks, skip_bad_rows=skip_bad_rows, line_numbers=line_numbers)
    table.attrs["missing_scores"] = table.attrs.pop("short_rows")
    return table


def read_exclusions(path, skip_bad_rows: bool = False) -> pd.DataFrame:
    """Excluded keyframes -> DataFrame[video_id, timestamp]."""
    columns = [_Column("video_id", "str"), _Column("timestamp", "float")]
    return _read_table(path, columns, _timestamp_checks, skip_bad_rows=skip_bad_rows)


def read_proposals(path, skip_bad_rows: bool = False, min_score: float | None = None) -> pd.DataFrame:
    """Person-box proposals -> DataFrame[video_id, timestamp, x1, y1, x2, y2, score].

    Reads the AVA predicted-boxes CSV layout (`video_id,timestamp,x1,y1,x2,y2,action_id,score`;
    the action id may be empty or -1; one box listed once per label is kept once, as PySlowFast
    does) or MMAction2's proposal pickle, told apart by content. `min_score` keeps score >= it.
    """
    path = _check_path(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic[:1] == b"\x80":
        table = _read_proposals_pickle(path, skip_bad_rows)
    else:
        columns = [*_BOXED, _Column("action_id", "skip", default=""), _Column("score", "float")]

        def checks(t):
            return _timestamp_checks(t) + _box_checks(t) + _score_checks(t, finite=True)

        table = _read_table(path, columns, checks, skip_bad_rows=skip_bad_rows)
        bad_rows = table.attrs["bad_rows"]
        table = table.drop_duplicates(subset=["video_id", "timestamp", *BOX_COLUMNS], keep="first")
        table = table[PROPOSAL_COLUMNS].reset_index(drop=True)
        table.attrs["bad_rows"] = bad_rows
    if min_score is not None:
        bad_rows = table.attrs["bad_rows"]
        table = table[table["score"] >= min_score].reset_index(drop=True)
        table.attrs["bad_rows"] = bad_rows
    return table


def _read_proposals_pickle(path: Path, skip_bad_rows: bool) -> pd.DataFrame:
    try:
        with open(path, "rb") as f:
            content = pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file to the user
        raise DataError(f"{path}: cannot unpickle proposals ({type(exc).__name__}: {exc})") from None
    if not isinstance(content, Mapping):
        raise DataError(f"{path}: expected a dict 'video_id,%04d' -> (N, 5) array, got {type(content).__name__}")
    frames, bad_rows, first_bad = [], 0, None
    for key, boxes in content.items():
        video_id, _, timestamp = str(key).rpartition(",")
        try:
            timestamp = float(timestamp)
            array = np.asarray(boxes, dtype=np.float64).reshape(-1, 5) if np.size(boxes) else np.zeros((0, 5))
        except ValueError:
            problem = f"key {key!r}: expected 'video_id,timestamp' -> (N, 5) [x1,y1,x2,y2,score], got shape {np.shape(boxes)}"
            if not video_id:
                problem = f"key {key!r} is not 'video_id,timestamp'"
            if not skip_bad_rows:
                raise DataError(f"{path}: {problem}") from None
            bad_rows += 1
            first_bad = first_bad or problem
            continue
        if not video_id:
            if not skip_bad_rows:
                raise DataError(f"{path}: key {key!r} is not 'video_id,timestamp'")
            bad_rows += len(array)
            first_bad = first_bad or f"key {key!r} is not 'video_id,timestamp'"
            continue
        frame = pd.DataFrame(array, columns=[*BOX_COLUMNS, "score"])
        frame.insert(0, "timestamp", timestamp)
        frame.insert(0, "video_id", video_id)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else _empty_table(
        [_Column("video_id", "str"), *[_Column(c, "float") for c in PROPOSAL_COLUMNS[1:]]])
    table = table[PROPOSAL_COLUMNS]
    bad = np.zeros(len(table), dtype=bool)
    for mask, reason in _box_checks(table) + _score_checks(table, finite=True):
        mask = np.asarray(mask) & ~bad
        if mask.any():
            row = table.iloc[int(np.flatnonzero(mask)[0])]
            problem = f"key {make_key(row['video_id'], row['timestamp'])!r}: {reason(row)}"
            if not skip_bad_rows:
                raise DataError(f"{path}: {problem}")
            first_bad = first_bad or problem
            bad |= mask
    bad_rows += int(bad.sum())
    if bad_rows:
        warnings.warn(f"{path}: skipped {bad_rows} malformed proposal(s); first: {first_bad}", DataWarning, stacklevel=3)
    table = table[~bad].reset_index(drop=True)
    table.attrs["bad_rows"] = bad_rows
    return table


def read_frame_lists(path, skip_bad_rows: bool = False) -> pd.DataFrame:
    """`frame_lists/{train,val}.csv` -> DataFrame[original_video_id, video_id, frame_id, path, labels]."""
    columns = [
        _Column("original_video_id", "str"),
        _Column("video_id", "int"),
        _Column("frame_id", "int"),
        _Column("path", "str"),
        _Column("labels", "skip", optional=True, default=""),
    ]

    def checks(t):
        negative = (t["video_id"].to_numpy() < 0) | (t["frame_id"].to_numpy() < 0)
        return [(negative, lambda r: f"video_id {r['video_id']} / frame_id {r['frame_id']} must be >= 0")]

    table = _read_table(path, columns, checks, skip_bad_rows=skip_bad_rows, sep=" ", header=FRAME_LIST_HEADER)
    table["labels"] = table["labels"].replace('""', "")
    return table


# ----------------------------------------------------------------------------------------------------
# Writers


def csv_field(text: str) -> str:
    """One CSV field as the readers here (and pandas, and Python's csv module) read it back.

    Quoted, with inner quotes doubled, when it holds a comma, a quote or a line break (csv.QUOTE_MINIMAL):
    a video named `clip, take 2` is written `"clip, take 2"`.
    """
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _require_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {missing}; it has {list(table.columns)}")


def _write_csv(path, table: pd.DataFrame, columns: list[str], sep: str = ",", header: str | None = None) -> None:
    """Write `columns` of `table`; timestamps `%04d`/shortest decimal, floats shortest-exact (pandas' repr)."""
    out = table[columns].copy()
    if "timestamp" in out.columns:
        out["timestamp"] = _format_timestamps(out["timestamp"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        if header is not None:
            f.write(header + "\n")
        out.to_csv(f, sep=sep, header=False, index=False, lineterminator="\n")


def write_gt_csv(path, gt: pd.DataFrame) -> None:
    """Write AVA GT rows; the person_id column is written when present and not all -1."""
    _require_columns(gt, GT_COLUMNS[:7], "GT")
    with_person = "person_id" in gt.columns and bool((gt["person_id"] >= 0).any())
    _write_csv(path, gt, GT_COLUMNS if with_person else GT_COLUMNS[:7])


def write_predictions_csv(path, predictions: pd.DataFrame) -> None:
    """Write detections at full precision (the evaluator then sees exactly the in-memory scores)."""
    _require_columns(predictions, PREDICTION_COLUMNS, "predictions")
    _write_csv(path, predictions, PREDICTION_COLUMNS)


def write_exclusions(path, exclusions: pd.DataFrame) -> None:
    _require_columns(exclusions, EXCLUSION_COLUMNS, "exclusions")
    _write_csv(path, exclusions, EXCLUSION_COLUMNS)


def write_proposals_csv(path, proposals: pd.DataFrame) -> None:
    """AVA predicted-boxes layout: `video_id,timestamp,x1,y1,x2,y2,action_id,score` (action_id -1 if absent)."""
    _require_columns(proposals, PROPOSAL_COLUMNS, "proposals")
    out = proposals if "action_id" in proposals.columns else proposals.assign(action_id=-1)
    _write_csv(path, out, PREDICTION_COLUMNS)


def write_proposals_pkl(path, proposals: pd.DataFrame) -> None:
    """MMAction2's layout: pickle of `{"video_id,%04d": (N, 5) float64 [x1, y1, x2, y2, score]}`."""
    _require_columns(proposals, PROPOSAL_COLUMNS, "proposals")
    keys = proposals["video_id"].astype(str) + "," + _format_timestamps(proposals["timestamp"])
    values = proposals[[*BOX_COLUMNS, "score"]].to_numpy(dtype=np.float64)
    content = {key: values[rows] for key, rows in keys.groupby(keys, sort=False).indices.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=pickle.HIGHEST_PROTOCOL)


def write_frame_lists(path, frame_lists: pd.DataFrame) -> None:
    """Space-separated with AVA's header; empty labels are written `""` as in the AVA files."""
    _require_columns(frame_lists, FRAME_LIST_COLUMNS[:4], "frame lists")
    labels = frame_lists["labels"].astype(str) if "labels" in frame_lists.columns else pd.Series("", index=frame_lists.index)
    fields = [frame_lists[c].astype(str) for c in FRAME_LIST_COLUMNS[:4]] + [labels.where(labels != "", '""')]
    lines = fields[0].str.cat(fields[1:], sep=" ")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(FRAME_LIST_HEADER + "\n")
        if len(lines):
            f.write("\n".join(lines.tolist()) + "\n")


def write_label_map(path, label_map: Mapping[int, str], form: str = "item",
                    label_types: Mapping[int, str] | None = None) -> None:
    """`form="item"`: `item { name id }` (ActivityNet list); `form="label"`: `label { name label_id label_type }`."""
    if form not in ("item", "label"):
        raise ValueError(f"form must be 'item' or 'label', got {form!r}")
    lines = []
    for class_id, name in sorted(label_map.items()):
        if '"' in name or "\n" in name:
            raise ValueError(f"label name {name!r} may not contain quotes or newlines")
        lines += [f"{form} {{", f'  name: "{name}"', f"  {'id' if form == 'item' else 'label_id'}: {int(class_id)}"]
        if form == "label" and label_types and class_id in label_types:
            lines.append(f"  label_type: {label_types[class_id]}")
        lines.append("}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = [
    "BOX_TOLERANCE", "DataWarning", "csv_field", "format_timestamp", "make_key",
    "read_label_map", "read_gt_csv", "read_predictions_csv", "read_exclusions", "read_proposals", "read_frame_lists",
    "write_label_map", "write_gt_csv", "write_predictions_csv", "write_exclusions", "write_proposals_csv",
    "write_proposals_pkl", "write_frame_lists",
]
