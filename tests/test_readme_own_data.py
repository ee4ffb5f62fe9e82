"""The README's "Train on your own videos" section runs, command by command, on generated data.

The section's ```bash blocks are parsed out of README.md (as tests/test_readme.py does for the Quick start)
and run in order through `sfdet.cli.main` in a temporary folder holding what a user would have:
`my_videos/` (the quick toy set's three videos, named clip / hall / yard), the exports the import lines read
(`annotations.xml` as CVAT for video 1.1, `project.json` as Label Studio, `tracks.csv` and
`my_labels.pbtxt`, written from the toy GT by tests/test_annotations.py's writers) and the section's
`mine.yaml`. The import lines are alternatives into one `my_data`: each replaces the previous one's.

What changes, and only that: the offline stand-ins for downloads (the COCO person detector of `proposals`
becomes the toy's proposal boxes, `predict` reads them with `--boxes`; `train.init`'s published model
becomes a local 10-class checkpoint; `mine.yaml`'s base is the tiny toy model instead of the R50), and the
tiny-run options (8-frame clips at 64 px, 2 iterations, fp32).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pandas as pd

from sfdet import cli
from sfdet.config import load_config
from sfdet.data import ava
from test_annotations import write_cvat_video, write_labelstudio, write_tracks_csv
from test_class_subset import ten_class_checkpoint
from test_readme import (README, REPO, TINY_PREDICT, TINY_TRAIN, _check_outputs, _sfdet_argv, _with_tiny_options,
                         shell_blocks)

SECTION = "Train on your own videos"
NAMES = {"toy_train_000": "clip", "toy_train_001": "hall", "toy_val_000": "yard"}
AVA_BASE = "configs/ava/slowfast_r50_8x8.yaml"
TINY_BASE = "configs/toy/slowfast_tiny.yaml"


def section_text(text: str) -> tuple[str, int]:
    """The section's text (up to the next `## ` heading) and its first line's number."""
    start = re.search(rf"^##\s+{re.escape(SECTION)}\s*$", text, re.M)
    assert start, f"README.md has no '## {SECTION}' section"
    end = re.search(r"^##\s", text[start.end():], re.M)
    body = text[start.start(): start.end() + end.start() if end else len(text)]
    return body, text[: start.start()].count("\n") + 1


def mine_yaml(section: str) -> str:
    """The section's ```yaml block that starts with `# mine.yaml`."""
    match = re.search(r"```yaml\n(# mine\.yaml\n.*?)```", section, re.S)
    assert match, f"README.md's '{SECTION}' has no ```yaml block starting with '# mine.yaml'"
    return match.group(1)


def _generate(where: Path, toy: Path) -> None:
    """my_videos/ and the exports the import lines read, from the quick toy set's videos and GT."""
    (where / "my_videos").mkdir()
    for toy_id, name in NAMES.items():
        (where / "my_videos" / f"{name}.mp4").symlink_to(toy / "videos" / f"{toy_id}.mp4")
    label_map = ava.read_label_map(toy / "annotations" / "label_map.pbtxt")
    gt = pd.concat([ava.read_gt_csv(toy / "annotations" / f"{s}.csv") for s in ("train", "val")])
    gt["video_id"] = gt["video_id"].map(NAMES)
    write_cvat_video(where / "annotations.xml", gt, label_map)
    write_labelstudio(where / "project.json", gt, label_map)
    write_tracks_csv(where / "tracks.csv", gt, label_map)
    ava.write_label_map(where / "my_labels.pbtxt", label_map)
    boxes = pd.concat([ava.read_proposals(toy / "annotations" / f"{s}_predicted_boxes.csv") for s in ("train", "val")])
    ava.write_proposals_csv(where / "person_boxes.csv", boxes.assign(video_id=boxes["video_id"].map(NAMES)))
    ten_class_checkpoint(toy, where / "published.pt")


def test_readme_own_videos_section_runs_on_generated_data(quick_toy, tmp_path, monkeypatch, capsys):
    import sfdet.persons
    from sfdet.persons.precomputed import PrecomputedDetector

    section, first_line = section_text(README.read_text(encoding="utf-8"))
    blocks = [block for block in shell_blocks(section) if block]
    steps = [step for block in blocks for step in block]
    mine = mine_yaml(section)
    assert AVA_BASE in mine, f"mine.yaml no longer takes {AVA_BASE}: update this test's stand-in"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    _generate(tmp_path, quick_toy)

    def toy_person_boxes(spec, weights, threshold, device):
        """proposals' COCO detector -> the toy's person boxes (no download), through the command's own code."""
        return PrecomputedDetector(tmp_path / "person_boxes.csv", threshold)

    ran, timings = [], []
    for step in steps:
        where = f"README.md:{first_line + step.line - 1}: `{step.text}`"
        argv = _sfdet_argv(step.tokens)
        assert argv is not None, f"{where}: the section's blocks hold only sfdet commands"
        started = time.perf_counter()
        name = " ".join(argv[:2]) if argv[0] == "data" else argv[0]
        if name == "data import" and Path("my_data").exists():
            shutil.rmtree("my_data")  # the import lines are alternatives into one my_data
        if "--config" in argv and argv[argv.index("--config") + 1] == "mine.yaml" and not Path("mine.yaml").exists():
            # The README's own mine.yaml loads with the published model's config ...
            Path("mine.yaml").write_text(mine, encoding="utf-8")
            cfg = load_config("mine.yaml")
            assert (cfg.model.depth, cfg.data.root, cfg.data.val_boxes) == (50, str(tmp_path / "my_data"), "proposals")
            assert cfg.data.path(cfg.data.train_proposals).is_file() and cfg.data.path(cfg.data.label_map).is_file()
            # ... and runs with the tiny toy model in its place.
            Path("mine.yaml").write_text(mine.replace(AVA_BASE, TINY_BASE), encoding="utf-8")
        if name == "train":
            argv = [f"train.init={tmp_path / 'published.pt'}" if a.startswith("train.init=") else a for a in argv]
            argv = _with_tiny_options(argv, ["--no-progress", *TINY_TRAIN, "train.max_iters=2"])
        elif name == "predict":
            argv = _with_tiny_options(argv, [*TINY_PREDICT, "--boxes", "person_boxes.csv"])
        elif name == "proposals":
            argv = argv + ["--no-progress"]
        capsys.readouterr()
        with monkeypatch.context() as patch:
            if name == "proposals":
                patch.setattr(sfdet.persons, "build_person_detector", toy_person_boxes)
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code
        captured = capsys.readouterr()
        assert code == 0, f"{where}: exit {code}\nran: sfdet {' '.join(argv)}\n{captured.out[-3000:]}\n{captured.err[-3000:]}"
        # a folder of videos (`predict my_videos`) is checked video by video
        _check_outputs(argv[0], [x for a in argv for x in (sorted(map(str, Path(a).glob("*.mp4")))
                                                           if a == "my_videos" else [a])], captured.out, where)
        if name == "data import":
            assert (Path("my_data") / "annotations" / "train.csv").is_file() and "imported into" in captured.out, where
        elif name == "data check":
            assert captured.out.strip().splitlines()[-1].startswith("ok:"), where
        elif name in ("proposals", "data export"):
            out = Path(argv[argv.index("--out") + 1])
            assert out.is_file() and out.stat().st_size > 0, f"{where}: no {out}"
        ran.append(name)
        timings.append(f"{name} {time.perf_counter() - started:.1f} s")
    for needed in ("data import", "data check", "proposals", "train", "predict", "eval", "data export"):
        assert needed in ran, f"README.md's '{SECTION}' no longer runs `sfdet {needed}` (ran: {ran})"
    assert ran.count("data import") == 3 and ran.count("data export") == 2
    print("own videos:", ", ".join(timings))
