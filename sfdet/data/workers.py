"""Forking worker processes safely next to PyAV.

Why: a PyAV decoder owns libavcodec threads. When a process forks, the child inherits the
decoder's memory but not its threads; if the child then frees it (the cyclic garbage collector
reaching a container the parent had already dropped), `pthread_cond_destroy` waits forever for
threads that do not exist, and the child hangs with no error (seen in CI: a DataLoader/toy-data
worker stuck in `avcodec_free_context`). Collecting the garbage in the parent, where the threads
are alive, and freezing every surviving object while the children fork means a child never frees
a decoder it inherited.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterable, Iterator


@contextlib.contextmanager
def fork_safe() -> Iterator[None]:
    """Fork worker processes inside this block (a multiprocessing Pool, `iter(DataLoader)`)."""
    gc.collect()
    gc.freeze()  # children inherit the frozen (never collected) generation
    try:
        yield
    finally:
        gc.unfreeze()


def iterate(loader: Iterable) -> Iterator:
    """`iter(loader)` with its worker processes (if any) started by `fork_safe`."""
    with fork_safe() if getattr(loader, "num_workers", 0) > 0 else contextlib.nullcontext():
        return iter(loader)
