"""The run's metrics: a JSON-lines file (always) and TensorBoard events (when installed).

One record per line, e.g.
`{"kind": "train", "epoch": 0, "iteration": 10, "loss": 0.41, "lr": 0.01, "clips_per_s": 12.3}`
`{"kind": "val", "epoch": 0, "iteration": 40, "map": 0.62, "per_class_ap": {"walk": 0.9, ...}}`.
`iteration` counts optimizer steps done. A resumed run first drops the
records written after its checkpoint, so the log of an interrupted and
resumed run reads like that of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from sfdet.errors import SfdetError
from sfdet.fileio import atomic_write

METRICS_NAME = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a metrics log (a truncated last line, from a killed run, is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise SfdetError(f"{path} not found: is this the output directory of `sfdet train`?")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _json_value(value):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


class MetricsLog:
    """Append-only metrics writer of the main process (other processes pass `enabled=False`)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_iteration: int | None = None,
                 tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_NAME
        self._file = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_iteration is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("iteration", 0) <= resume_iteration]
            with atomic_write(self.path) as f:
                f.write("".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=resume_iteration)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(_json_value(record)) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = record.get("iteration", 0)
            for key, value in record.items():
                if key not in ("kind", "iteration") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{record.get('kind', 'misc')}/{key}", value, step)
            for name, ap in (record.get("per_class_ap") or {}).items():
                if ap is not None and math.isfinite(ap):
                    self._tb.add_scalar(f"{record['kind']}_ap/{name}", ap, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
