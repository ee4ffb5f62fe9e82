"""A toy-derived dataset in UCF101-24's layout, end to end: import, train, predict densely, video-mAP.

The quick toy set's GT (keyframes at whole seconds, 15 fps) becomes a `UCF101v2-GT.pkl`-style pickle (a Python
2 pickle; videos named `<class folder>/<video>`, one split): every run of consecutive keyframes where a
person does an action is a tube, its boxes interpolated linearly between the keyframes (frame n = 15 t + 1)
and held 7 frames beyond its ends. Then, through the command line, as a user would:

    sfdet data import ucf101-24 PKL --videos DIR --out DATA          (keyframes on every annotated frame)
    sfdet train (the tiny SlowFast, a few iterations)
    sfdet predict VAL_VIDEO --boxes VAL_GT_BOXES --keyframe-rate 15  (every frame, the dataset's boxes)
    sfdet eval --video-map --gt DATA/annotations/tubes_gt.pkl --fps 15 --frame-shift 1

The GT rows themselves, as predictions, must score video-mAP 1 (the time <-> frame mapping, the boxes and
the split line up); the tiny model's must run and give finite numbers in [0, 1].
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from act_pickles import py2_pickle
from sfdet import cli
from sfdet.data import ava

REPO = Path(__file__).resolve().parents[1]
FPS, N_FRAMES, W, H = 15, 120, 320, 180
HOLD = 7  # frames a tube extends beyond its first and last keyframe
TINY = ["data.num_frames=8", "data.train_jitter=[64,72]", "data.train_crop=64", "data.test_short_side=64",
        "train.batch_size=2", "train.val_batch_size=8", "train.num_workers=0", "train.epochs=1",
        "train.max_iters=3", "train.warmup_epochs=0.5", "train.log_every=1", "train.tensorboard=false",
        "train.precision=fp32", "train.device=cpu"]


def toy_tubes(gt: pd.DataFrame) -> dict:
    """{video: {label index: [(n, 5) tube]}} from keyframe GT rows (action ids 1..N -> label index id - 1)."""
    out: dict = {}
    for (video, person, action), rows in gt.groupby(["video_id", "person_id", "action_id"]):
        rows = rows.sort_values("timestamp")
        times = rows["timestamp"].to_numpy()
        boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy() * [W, H, W, H]
        runs = np.split(np.arange(len(times)), np.where(np.diff(times) > 1 + 1e-6)[0] + 1)
        for run in runs:
            key_frames = times[run] * FPS + 1
            frames = np.arange(max(1, key_frames[0] - HOLD), min(N_FRAMES, key_frames[-1] + HOLD) + 1)
            tube = np.column_stack([frames] + [np.interp(frames, key_frames, boxes[run, j]) for j in range(4)])
            out.setdefault(f"toy/{video}", {}).setdefault(int(action) - 1, []).append(tube)
    return out


def test_toy_in_ucf24_layout_end_to_end(quick_toy, tmp_path, capsys):
    label_map = ava.read_label_map(quick_toy / "annotations" / "label_map.pbtxt")
    assert list(label_map) == list(range(1, len(label_map) + 1))
    splits = {s: ava.read_gt_csv(quick_toy / "annotations" / f"{s}.csv") for s in ("train", "val")}
    videos = {s: sorted(g["video_id"].unique()) for s, g in splits.items()}
    every = videos["train"] + videos["val"]
    gt = {"labels": list(label_map.values()),
          "gttubes": toy_tubes(pd.concat(splits.values())),
          "nframes": {f"toy/{v}": N_FRAMES for v in every},
          "resolution": {f"toy/{v}": (H, W) for v in every},
          "train_videos": [[f"toy/{v}" for v in videos["train"]]],
          "test_videos": [[f"toy/{v}" for v in videos["val"]]]}
    pkl = tmp_path / "UCF101v2-GT.pkl"
    pkl.write_bytes(py2_pickle(gt))
    media = tmp_path / "videos" / "toy"
    media.mkdir(parents=True)
    for v in every:
        (media / f"{v}.mp4").symlink_to(quick_toy / "videos" / f"{v}.mp4")

    data = tmp_path / "data"
    assert cli.main(["data", "import", "ucf101-24", str(pkl), "--videos", str(tmp_path / "videos"),
                     "--out", str(data)]) == 0
    text = capsys.readouterr().out
    assert "--fps 15 --frame-shift 1" in text
    val = ava.read_gt_csv(data / "annotations" / "val.csv")
    assert val["video_id"].unique().tolist() == videos["val"]
    # every frame of a tube is a keyframe: 15 per second
    assert val["timestamp"].nunique() > 90
    tubes_gt = data / "annotations" / "tubes_gt.pkl"
    labelmap = data / "annotations" / "label_map.pbtxt"
    common = ["--gt", str(tubes_gt), "--labelmap", str(labelmap), "--fps", "15", "--frame-shift", "1",
              "--tube-min-frames", "5"]

    # the GT rows as predictions (score 1, every class of a box): every tube is found
    oracle = val.assign(score=1.0)[ava.PREDICTION_COLUMNS]
    ava.write_predictions_csv(tmp_path / "oracle.csv", oracle)
    assert cli.main(["eval", "--video-map", "--pred", str(tmp_path / "oracle.csv"), "--label-mode", "all",
                     "--out", str(tmp_path / "oracle_eval"), *common]) == 0
    capsys.readouterr()
    metrics = json.loads((tmp_path / "oracle_eval" / "oracle_video_map.json").read_text())["metrics"]
    assert metrics["v_map@0.5"] == 1.0 and metrics["v_map@0.2"] == 1.0 and metrics["frame_map@0.5"] == 1.0

    # train the tiny SlowFast for a few iterations on the imported dataset
    config = tmp_path / "ucf24_toy.yaml"
    config.write_text(f"_base_: [{REPO / 'configs' / 'toy' / 'slowfast_tiny.yaml'}, {data / 'data.yaml'}]\n")
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(config), "--no-progress", f"output_dir={run}", *TINY]) == 0
    checkpoint = run / "checkpoints" / "last.pt"
    assert checkpoint.is_file()

    # predict every frame of the val video with the dataset's boxes
    boxes = tmp_path / "val_boxes.csv"
    ava.write_proposals_csv(boxes, val.drop_duplicates(["video_id", "timestamp", *ava.BOX_COLUMNS])
                            .assign(score=1.0)[ava.PROPOSAL_COLUMNS])
    pred = tmp_path / "pred"
    video = data / "videos" / f"{videos['val'][0]}.mp4"
    assert cli.main(["predict", str(video), "--weights", str(checkpoint), "--boxes", str(boxes),
                     "--keyframe-rate", "15", "--out", str(pred), "--device", "cpu", "--precision", "fp32",
                     "--no-progress"]) == 0
    predictions = ava.read_predictions_csv(pred / f"{videos['val'][0]}.csv")
    assert predictions["timestamp"].nunique() == val["timestamp"].nunique()
    capsys.readouterr()

    assert cli.main(["eval", "--video-map", "--pred", str(pred / f"{videos['val'][0]}.csv"),
                     "--out", str(tmp_path / "eval"), *common]) == 0
    out = capsys.readouterr().out
    assert "v_map@0.5=" in out and "outside their video's frames" not in out
    result = json.loads((tmp_path / "eval" / f"{videos['val'][0]}_video_map.json").read_text())
    assert set(result["metrics"]) == {"v_map@0.2", "v_map@0.5", "frame_map@0.5"}
    for value in result["metrics"].values():
        assert math.isfinite(value) and 0 <= value <= 1
