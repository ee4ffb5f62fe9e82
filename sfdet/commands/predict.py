"""`sfdet predict VIDEO|DIR ...`: person boxes, tracks and actions of whole videos (AVA CSV, JSON Lines, mp4).

Outputs per video, in --out or next to the video: `<name>.csv` (AVA predictions,
ready for `sfdet eval`), `<name>.tracks.csv` (AVA GT layout with track ids as
person ids), `<name>.jsonl`, `<name>.segments.csv` (per-person action segments:
start, end, action, mean score), with --track-every `<name>.frames.csv` (tracked
boxes per detected frame) and, with --render, `<name>.pred.mp4`.
Exit code: 0 when every video was predicted, 1 when some failed (each named on
stderr in one line, whatever the cause; set SFDET_DEBUG=1 for its traceback),
2 for a problem that stops everything (weights, options, an empty --boxes file).

Live sources (`sfdet.predict.live`): a camera (`/dev/video0`), a network stream
(rtsp/rtmp/srt/udp/tcp/http(s)) or `-` (standard input) is predicted online, as
it arrives, with bounded latency; `--live` does the same with a file, paced at
its frame rate. Outputs go to --out (default: the current directory) named by
--name; the run ends (with its `end` record, exit 0) at the end of the stream,
on Ctrl-C or when a lost network source does not come back.
"""

from __future__ import annotations

import argparse
import sys

from sfdet.errors import SfdetError


def _timestamps(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds like 1,2,3.5; got '{text}'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="VIDEO|DIR|SOURCE",
                        help="video files and/or directories of videos; or one live SOURCE: a camera (/dev/video0), "
                             "a network stream (rtsp://, rtmp://, srt://, udp://, tcp://, http(s):// incl. HLS) or - "
                             "(a stream on standard input, e.g. ffmpeg ... -f mpegts -)")
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
                        help="precomputed person boxes instead of a detector: AVA-layout CSV or MMAction2 pickle "
                             "(keyed by video id = the video's file name without extension, and timestamp = video "
                             "time + --time-offset; a video the file has no boxes for is an error)")
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
    tracking.add_argument("--track-every", type=int, default=0, metavar="N",
                          help="also run the person detector on every Nth decoded frame and track with a "
                               "ByteTrack-style tracker (Kalman motion, high/low-score association); writes "
                               "<name>.frames.csv with the tracked boxes of every detected frame (default 0: "
                               "keyframes only, IoU tracker; --track-min-iou / --track-max-age are its settings)")
    live = parser.add_argument_group(
        "live sources (online mode)",
        "A live SOURCE (or --live) is predicted as it arrives: keyframes on the source's clock at --keyframe-rate, "
        "each scored as soon as the last frame of its clip window has arrived, so latency is at least the window "
        "after the centre frame (SlowFast R50 detection: 30 frames at 30 fps = 1.0 s; the toy model: 14 frames at "
        "15 fps = 0.93 s) plus detection and scoring. Scoring that falls behind drops whole keyframes (counted; "
        "a higher --keyframe-rate drops more); the reader never waits. Each JSONL keyframe record carries "
        "source_time, written_at and latency_s.")
    live.add_argument("--live", action="store_true",
                      help="online mode on a video file, read at its frame rate (a rehearsal of a live source)")
    live.add_argument("--name", default=None,
                      help="video id and output file name of a live source (default: stdin, video0, host_port_path)")
    live.add_argument("--stdout", choices=["jsonl"], default=None,
                      help="also write the JSON Lines records to standard output as they are made")
    live.add_argument("--preview", type=int, default=None, metavar="PORT",
                      help="serve a live view on http://127.0.0.1:PORT/ (annotated frames as MJPEG, latest actions "
                           "per track, /status.json)")
    live.add_argument("--open-timeout", type=float, default=10.0,
                      help="seconds a source may take to open and deliver its first frame (default 10)")
    live.add_argument("--reconnect", type=int, default=3,
                      help="reopen a network source that dropped up to N times, with growing waits (default 3)")
    live.add_argument("--input-format", default=None,
                      help="FFmpeg input format of a live source (default: probed; v4l2 for /dev/video*)")
    live.add_argument("--input-option", action="append", default=[], nargs=2, metavar=("KEY", "VALUE"),
                      help="FFmpeg input option, repeatable (e.g. video_size 640x480, framerate 30, "
                           "rtsp_transport tcp)")
    live.add_argument("--max-queued-keyframes", type=int, default=None,
                      help="keyframes waiting to be scored before the oldest is dropped (default: 2 on CPU, max(2, batch size) on CUDA)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _live_options(args: argparse.Namespace):
    """Online mode's options, or None for files; argument errors before any model is loaded."""
    from sfdet.predict.live import LiveOptions, is_live_source

    live_inputs = [s for s in args.inputs if is_live_source(s)]
    if not live_inputs and not args.live:
        for flag, value in (("--preview", args.preview), ("--name", args.name)):
            if value is not None:
                raise SfdetError(f"{flag} is for live sources (a camera, a network stream, -) or --live")
        return None
    if len(args.inputs) != 1:
        raise SfdetError(f"a live source (or --live) is predicted alone: got {len(args.inputs)} inputs")
    for flag, given in (("--render", args.render), ("--timestamps", args.timestamps is not None),
                        ("--resume", args.resume), ("--track-every", args.track_every != 0)):
        if given:
            raise SfdetError(f"{flag} is for video files, not live sources (--preview shows a live source)")
    options = {key: value for key, value in args.input_option}
    return LiveOptions(paced=not live_inputs, name=args.name, open_timeout=args.open_timeout,
                       reconnect=args.reconnect, input_format=args.input_format, input_options=options,
                       max_queued_keyframes=args.max_queued_keyframes, preview_port=args.preview)


def run(args: argparse.Namespace) -> int:
    from sfdet.devices import pick_device
    from sfdet.persons import build_person_detector
    from sfdet.predict.actions import default_batch_size, load_action_predictor
    from sfdet.predict.pipeline import PredictOptions, predict_videos

    live = _live_options(args)
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
        track_every=args.track_every,
        progress=not args.no_progress and live is None,
        stdout_jsonl=args.stdout == "jsonl",
    )
    say = (lambda line: print(line, file=sys.stderr)) if args.stdout == "jsonl" else print
    predictor = load_action_predictor(args.weights, device, args.precision, args.config, label_map_path=args.label_map,
                                      backend=args.backend, log=say)
    detector = build_person_detector(args.detector, args.detector_weights, args.detector_threshold, device, args.boxes)
    if live is not None:
        return _run_live(args.inputs[0], predictor, detector, options, live, args.out, say)
    results = predict_videos(args.inputs, predictor, detector, options, out_dir=args.out, resume=args.resume)
    done = [r for r in results if r.error is None and not r.skipped]
    skipped = [r for r in results if r.skipped]
    failed = [r for r in results if r.error is not None]
    keyframes = sum(r.keyframes for r in done)
    say(f"predicted {len(done)} video(s), {keyframes} keyframe(s)"
          + (f"; {len(skipped)} already complete" if skipped else "")
          + (f"; {len(failed)} failed" if failed else ""))
    if not results:
        raise SfdetError("no videos to predict")
    return 1 if failed else 0


def _run_live(source, predictor, detector, options, live, out_dir, say) -> int:
    from sfdet.predict.live import predict_live

    try:
        result = predict_live(source, predictor, detector, options, live, out_dir=out_dir)
    except SfdetError as exc:
        print(f"sfdet predict: error: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"sfdet predict: warning: {warning}", file=sys.stderr)
    say(f"predicted {source} online: {result.keyframes} keyframe(s), {result.frames} frame(s)")
    return 0
