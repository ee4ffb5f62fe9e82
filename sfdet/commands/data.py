"""`sfdet data check|import|export`: the dataset pre-flight report, annotation imports and pre-annotation exports."""

from __future__ import annotations

import argparse

from sfdet.config import Config, load_config
from sfdet.data.check import check_dataset
from sfdet.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="report videos, keyframes, classes, exclusions and proposal recall; fail when nothing lines up",
        description="Pre-flight report of an AVA-format dataset. Exits 2 with one line when nothing lines up.",
    )
    check.add_argument("--config", help="YAML config with a `data:` section (e.g. configs/toy/data.yaml)")
    check.add_argument("items", nargs="*", metavar="ROOT | key=value",
                       help="the dataset root (sets data.root) and/or dotted overrides such as data.source=frames")

    from sfdet.annotations.exporter import EXPORT_FORMATS
    from sfdet.annotations.importer import FORMATS

    imp = sub.add_parser(
        "import",
        help="labelling-tool exports (CVAT, Label Studio, tracks CSV) -> an AVA-format dataset",
        description="Read annotation exports and write a complete AVA-format dataset (GT CSVs per split, label "
                    "map, empty exclusions, video links, data.yaml). Nothing is written when an export is "
                    "malformed: the error names the file and the element or line.",
    )
    imp.add_argument("format", choices=FORMATS, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
    imp.add_argument("sources", nargs="+", metavar="SRC", help="export file(s): several tasks/jobs/projects")
    imp.add_argument("--videos", required=True, metavar="DIR", help="folder holding the annotated videos")
    imp.add_argument("--out", required=True, metavar="DATA", help="dataset folder to write (must be new or empty)")
    imp.add_argument("--actions-from", default="labels", metavar="labels|attribute:NAME",
                     help="how actions are encoded: one label per action (default), or the attribute / "
                          "choices control NAME holding action names")
    imp.add_argument("--keyframe-rate", type=float, default=1.0, help="keyframes per second (default 1, as AVA)")
    imp.add_argument("--val-fraction", type=float, default=0.2, help="fraction of videos for val (default 0.2)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the train/val split by video (default 0)")
    imp.add_argument("--label-map", metavar="PBTXT",
                     help="fix action ids with this label map (e.g. a checkpoint's); default: 1..N in order seen")
    imp.add_argument("--copy-videos", action="store_true", help="copy the videos instead of linking them")
    imp.add_argument("--overwrite", action="store_true", help="replace a dataset a previous import wrote")

    exp = sub.add_parser(
        "export",
        help="predict's <stem>.tracks.csv -> pre-annotations for CVAT or Label Studio",
        description="Turn predicted tracks into a CVAT for video 1.1 XML or a Label Studio JSON import file, "
                    "to correct in the tool and import back with `sfdet data import`.",
    )
    exp.add_argument("format", choices=EXPORT_FORMATS, metavar="FORMAT", help=f"one of {', '.join(EXPORT_FORMATS)}")
    exp.add_argument("tracks", nargs="+", metavar="TRACKS_CSV", help="predict's <stem>.tracks.csv file(s)")
    exp.add_argument("--videos", required=True, metavar="DIR", help="folder holding the predicted videos")
    exp.add_argument("--label-map", required=True, metavar="PBTXT", help="label map naming the action ids")
    exp.add_argument("--out", required=True, metavar="FILE", help="annotations.xml / tasks.json to write")
    exp.add_argument("--actions-as", default="labels", metavar="labels|attribute:NAME",
                     help="one label per action (default), or a text attribute / choices control NAME")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "import":
        from sfdet.annotations import import_annotations

        import_annotations(args.format, args.sources, args.videos, args.out, actions_from=args.actions_from,
                           keyframe_rate=args.keyframe_rate, val_fraction=args.val_fraction, seed=args.seed,
                           label_map_path=args.label_map, overwrite=args.overwrite, copy_videos=args.copy_videos)
        return 0
    if args.data_command == "export":
        from sfdet.annotations import export_tracks

        path = export_tracks(args.format, args.tracks, args.videos, args.out, args.label_map,
                             actions_as=args.actions_as)
        print(f"wrote {path}")
        return 0
    overrides = [item for item in args.items if "=" in item]
    roots = [item for item in args.items if "=" not in item]
    if len(roots) > 1:
        raise ConfigError(f"give one dataset ROOT, got {len(roots)}: {' '.join(roots)}")
    if roots:
        overrides.append(f"data.root={roots[0]}")
    cfg: Config = load_config(args.config, overrides)
    check_dataset(cfg.data)
    return 0
