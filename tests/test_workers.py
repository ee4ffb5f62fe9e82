"""Worker processes forked beside PyAV decoders must not hang (the CI hang of the toy-data pool)."""

from __future__ import annotations

import gc
import multiprocessing

import av
import numpy as np
import pytest

from sfdet.data.video import write_video
from sfdet.data.workers import fork_safe

HANG_TIMEOUT_S = 60


class _Cycle:
    """A decoder reachable only through a reference cycle: freed by the cyclic GC, not by refcount."""

    def __init__(self, container):
        self.container = container
        self.me = self


def _leave_threaded_decoder_garbage(path) -> None:
    container = av.open(str(path))
    container.streams.video[0].thread_type = "AUTO"  # libavcodec worker threads, as PyAV's default
    for _ in zip(range(5), container.decode(video=0)):
        pass
    _Cycle(container)  # dropped at once: garbage that only gc.collect frees


def _collect_in_child() -> int:
    return gc.collect()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_child_forked_with_decoder_garbage_around_does_not_hang(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, [np.full((64, 96, 3), 8 * k, np.uint8) for k in range(30)], fps=15)
    gc.disable()  # keep the garbage until the fork, as a busy parent would
    try:
        _leave_threaded_decoder_garbage(path)
        with fork_safe():
            pool = multiprocessing.get_context("fork").Pool(1)
    finally:
        gc.enable()
    with pool:
        # Without fork_safe the child blocks in avcodec_free_context and this times out.
        assert pool.apply_async(_collect_in_child).get(timeout=HANG_TIMEOUT_S) >= 0
