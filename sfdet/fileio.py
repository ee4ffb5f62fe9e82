"""Writing files so that a crash never leaves a half-written one, and reading torch files safely.

`atomic_write` is the one write-to-temp-then-rename rule (same folder, fsync, `os.replace`):
a crash or SIGKILL at any moment leaves either the previous file or the new one. Every writer
of checkpoints, configs and finished result files goes through it. `load_torch_file` is the one
guarded `torch.load` (tensors and plain containers only, `weights_only=True`): an unreadable
file is one `CheckpointError` naming it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from sfdet.errors import CheckpointError, DataError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside `path`; on a clean exit flush, fsync and rename it onto `path`.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    binary = "b" in mode
    try:
        with open(tmp, mode, **({} if binary else {"encoding": encoding, "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` through `atomic_write`."""
    import torch  # here, not at the top: result writers use this module without paying torch's import

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load_torch_file(path: str | Path, what: str = "checkpoint", hint: str = "") -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`, with one-line errors.

    `what` names the file's role ("checkpoint", "detector weights"); `hint` is appended to the
    unreadable-file error (e.g. "delete it and download it again").
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, foreign pickle
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        more = f"; {hint}" if hint else ""
        raise CheckpointError(f"{path}: not a readable {what} ({reason}){more}") from None


def read_pickle(path: str | Path, what: str = "pickle", error: type = DataError) -> Any:
    """A pickle file (Python 2 pickles, as UCF101-24's and JHMDB's, are read with latin-1 strings).

    Only for data files the user names (annotation pickles): unpickling runs code, as everywhere.
    An unreadable or foreign file is one `error` (default DataError) naming it and `what` it should be.
    """
    import pickle

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            try:
                return pickle.load(handle)
            except UnicodeDecodeError:
                handle.seek(0)
                return pickle.load(handle, encoding="latin1")
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise error(f"{path}: not a {what} ({type(exc).__name__}: {exc})") from None
