"""Streaming prediction (`sfdet predict`): video -> person boxes -> tracks -> actions -> outputs.
(The person detectors live in `sfdet.persons`.)

    stream.py     background decoding, keyframe centres, the ring buffer of prepared frames
    tracking.py   person ids across keyframes (IoU + Hungarian)
    actions.py    the action model: clip settings, the evaluation path's preprocessing, batched scoring
    writers.py    AVA CSV, tracks CSV and JSON Lines, written keyframe by keyframe
    render.py     boxes, ids and labels drawn on frames, H.264 output, the rendering decode pass
    pipeline.py   one video (`predict_video`) and many (`predict_videos`, sharded over torchrun ranks)
"""
