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
        help="report videos, keyframes, classes, exclusions and proposal recall; warn about what makes training "
             "fail silently; fail when nothing lines up",
        description="Pre-flight report of an AVA-format dataset (the classes of data.classes when set), then "
                    "warnings with what to do: classes with fewer than 10 training instances, classes with no val "
                    "GT, train class imbalance above 50:1, more than 5% of keyframes with a GT box no proposal "
                    "covers at IoU 0.5. Exits 2 with one line when nothing lines up.",
    )
    check.add_argument("--config", help="YAML config with a `data:` section (e.g. configs/toy/data.yaml)")
    check.add_argument("items", nargs="*", metavar="ROOT | key=value",
                       help="the dataset root (sets data.root) and/or dotted overrides such as data.source=frames")

    from sfdet.annotations.exporter import EXPORT_FORMATS
    from sfdet.annotations.act_pickle import BENCHMARKS
    from sfdet.annotations.importer import FORMATS

    imp = sub.add_parser(
        "import",
        help="labelling-tool exports (CVAT, Label Studio, tracks CSV) or a tube benchmark's GT pickle "
             "(MultiSports, UCF101-24, JHMDB-21) -> an AVA-format dataset",
        description="Read annotation exports and write a complete AVA-format dataset (GT CSVs per split, label "
                    "map, empty exclusions, video links, data.yaml). Nothing is written when an export is "
                    "malformed: the error names the file and the element or line. multisports / ucf101-24 / "
                    "jhmdb read the benchmark's GT pickle (multisports_GT.pkl, UCF101v2-GT.pkl, JHMDB-GT.pkl) "
                    "with its videos (--videos) or extracted frames (--frames), keep its train/test split "
                    "(--split) and also write annotations/tubes_gt.pkl for `sfdet eval --video-map`.",
    )
    imp.add_argument("format", choices=FORMATS + tuple(BENCHMARKS), metavar="FORMAT",
                     help=f"one of {', '.join(FORMATS + tuple(BENCHMARKS))}")
    imp.add_argument("sources", nargs="+", metavar="SRC",
                     help="export file(s): several tasks/jobs/projects; for a benchmark its GT pickle")
    media = imp.add_mutually_exclusive_group(required=True)
    media.add_argument("--videos", metavar="DIR", help="folder holding the annotated videos")
    media.add_argument("--frames", metavar="DIR",
                       help="benchmarks: folder of extracted frames, DIR/<video>/00001.jpg (rgb-images, Frames)")
    imp.add_argument("--out", required=True, metavar="DATA", help="dataset folder to write (must be new or empty)")
    imp.add_argument("--actions-from", default="labels", metavar="labels|attribute:NAME",
                     help="how actions are encoded: one label per action (default), or the attribute / "
                          "choices control NAME holding action names")
    keyframes = imp.add_mutually_exclusive_group()
    keyframes.add_argument("--keyframe-rate", type=float, default=None,
                           help="keyframes per second (default 1, as AVA; benchmarks: --dense)")
    keyframes.add_argument("--dense", action="store_true",
                           help="benchmarks: a keyframe on every annotated frame (their default)")
    imp.add_argument("--split", type=int, default=1,
                     help="benchmarks: the train/test split, 1-based (JHMDB-21: 1-3; default 1)")
    imp.add_argument("--fps", type=float, default=None,
                     help="benchmarks with --frames: the frames' rate (default MultiSports / UCF101-24 25, JHMDB 30)")
    imp.add_argument("--val-fraction", type=float, default=0.2, help="fraction of videos for val (default 0.2)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the train/val split by video (default 0)")
    imp.add_argument("--label-map", metavar="PBTXT",
                     help="fix action ids with this label map (e.g. a checkpoint's); default: 1..N in order seen")
    imp.add_argument("--copy-videos", action="store_true",
                     help="copy the videos (benchmarks: or frames) instead of linking them")
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
        from sfdet.annotations.act_pickle import BENCHMARKS, import_benchmark

        if args.format in BENCHMARKS:
            if len(args.sources) != 1:
                raise ConfigError(f"{args.format}: give one GT pickle, got {len(args.sources)} files")
            import_benchmark(args.format, args.sources[0], args.out, videos_dir=args.videos, frames_dir=args.frames,
                             split=args.split, keyframe_rate=args.keyframe_rate, fps=args.fps,
                             overwrite=args.overwrite, copy_media=args.copy_videos)
            return 0
        for flag, given in (("--frames", args.frames), ("--dense", args.dense), ("--fps", args.fps)):
            if given:
                raise ConfigError(f"{flag} is for the benchmark formats ({', '.join(BENCHMARKS)})")
        import_annotations(args.format, args.sources, args.videos, args.out, actions_from=args.actions_from,
                           keyframe_rate=1.0 if args.keyframe_rate is None else args.keyframe_rate,
                           val_fraction=args.val_fraction, seed=args.seed,
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
