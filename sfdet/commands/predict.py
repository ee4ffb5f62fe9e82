"""`sfdet predict VIDEO|DIR ...`: person boxes, tracks and actions of whole videos (AVA CSV, JSON Lines, mp4).

Outputs per video, in --out or next to the video: `<name>.csv` (AVA predictions,
ready for `sfdet eval`), `<name>.tracks.csv` (AVA GT layout with track ids as
person ids), `<name>.jsonl` and, with --render, `<name>.pred.mp4`.
Exit code: 0 when every video was predicted, 1 when some failed (each named on
stderr), 2 for a problem that stops everything (weights, options).
"""

from __future__ import annotations

import argparse

from sfdet.errors import SfdetError


def _timestamps(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds like 1,2,3.5; got '{text}'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="VIDEO|DIR", help="video files and/or directories of videos")
    parser.add_argument("--out", default=None, help="output directory (default: next to each video)")
    models = parser.add_argument_group("models")
    models.add_argument("--weights", default=None,
                        help="action model: checkpoint file or registry name (default: slowfast_r50_detection)")
    models.add_argument("--config", default=None,
                        help="training config YAML whose data: section says how clips are made "
                             "(default: from an sfdet checkpoint, or the registry)")
    models.add_argument("--label-map", default=None, help="label map .pbtxt (default: the checkpoint's)")
    models.add_argument("--detector", default=None,
                        help="person detector: a detector.pt from `sfdet train-detector`, a torchvision detection "
                             "model name (default fasterrcnn_resnet50_fpn_v2), torchvision:NAME or detectron2:CONFIG")
    models.add_argument("--detector-weights", default="DEFAULT",
                        help="weights of a named detector (default: the torchvision COCO weights from the torch hub "
                             "cache)")
    models.add_argument("--detector-threshold", type=float, default=None,
                        help="keep person boxes scoring >= this (default 0.8; a detector.pt: the threshold stored in it)")
    models.add_argument("--boxes", default=None,
                        help="precomputed person boxes instead of a detector: AVA-layout CSV or MMAction2 pickle")
    keyframes = parser.add_argument_group("keyframes")
    keyframes.add_argument("--keyframe-rate", type=float, default=1.0, help="keyframes per second (default 1)")
    keyframes.add_argument("--timestamps", type=_timestamps, default=None,
                           help="comma-separated keyframe timestamps instead of a rate (seconds, + time offset)")
    keyframes.add_argument("--time-offset", type=float, default=None,
                           help="timestamp of the video's first frame (AVA: 900; default: the model's data config)")
    run = parser.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=None,
                     help="keyframe clips per forward pass (default: 8 on CPU, 16 on CUDA)")
    run.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="action model precision (default auto: bf16 on CUDA GPUs with bf16 and on CPUs with "
                          "AMX / AVX512-BF16, fp32 elsewhere; fp32 gives exact scores)")
    run.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                     help="run the action model on torch (default) or ONNX Runtime (--weights: an `sfdet export` "
                          ".onnx file, or any weights, exported on the fly; CPU provider, or TensorRT / CUDA "
                          "providers with --device cuda; needs pip install 'sfdet[onnx]')")
    run.add_argument("--resume", action="store_true", help="skip videos whose outputs are complete")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--min-score", type=float, default=0.0,
                         help="write actions scoring >= this (default: every class)")
    outputs.add_argument("--render", action="store_true", help="also write an H.264 mp4 with boxes, ids and actions")
    outputs.add_argument("--render-threshold", type=float, default=0.5,
                         help="actions scoring >= this are drawn and listed in the tracks CSV")
    tracking = parser.add_argument_group("tracking")
    tracking.add_argument("--track-min-iou", type=float, default=0.3, help="IoU a box needs to continue a track")
    tracking.add_argument("--track-max-age", type=int, default=1, help="keyframes a track survives unmatched")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from sfdet.devices import pick_device
    from sfdet.persons import build_person_detector
    from sfdet.predict.actions import default_batch_size, load_action_predictor
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    device = pick_device(args.device)
    options = PredictOptions(
        keyframe_rate=args.keyframe_rate,
        timestamps=args.timestamps,
        time_offset=args.time_offset,
        batch_size=args.batch_size if args.batch_size is not None else default_batch_size(device),
        min_score=args.min_score,
        render=args.render,
        render_threshold=args.render_threshold,
        track_min_iou=args.track_min_iou,
        track_max_age=args.track_max_age,
        progress=not args.no_progress,
    )
    predictor = load_action_predictor(args.weights, device, args.precision, args.config, label_map_path=args.label_map,
                                      backend=args.backend)
    detector = build_person_detector(args.detector, args.detector_weights, args.detector_threshold, device, args.boxes)
    results = predict_videos(args.inputs, predictor, detector, options, out_dir=args.out, resume=args.resume)
    done = [r for r in results if r.error is None and not r.skipped]
    skipped = [r for r in results if r.skipped]
    failed = [r for r in results if r.error is not None]
    keyframes = sum(r.keyframes for r in done)
    print(f"predicted {len(done)} video(s), {keyframes} keyframe(s)"
          + (f"; {len(skipped)} already complete" if skipped else "")
          + (f"; {len(failed)} failed" if failed else ""))
    if not results:
        raise SfdetError("no videos to predict")
    return 1 if failed else 0
