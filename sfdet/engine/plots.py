"""Training curves of a run (`sfdet plot RUN_DIR`, the demo's figure): loss, learning rate and val mAP
against the iteration, read from the run's metrics log (`metrics_log.py`)."""

from __future__ import annotations

from pathlib import Path

from sfdet.engine.metrics_log import METRICS_NAME, read_metrics
from sfdet.errors import SfdetError


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Three panels against the iteration: training loss, LR, val frame-mAP -> PNG (default RUN_DIR/curves.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / METRICS_NAME)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val" and r.get("map") is not None]
    if not train and not val:
        raise SfdetError(f"{run_dir / METRICS_NAME} has no training records yet")
    out = Path(out) if out else run_dir / "curves.png"

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [
        (axes[0], train, "loss", "training loss (BCE)"),
        (axes[1], train, "lr", "learning rate"),
        (axes[2], val, "map", "val frame-mAP@0.5"),
    ]
    for ax, rows, key, title in panels:
        xs = [r["iteration"] for r in rows if r.get(key) is not None]
        ys = [r[key] for r in rows if r.get(key) is not None]
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
    losses = [r["loss"] for r in train if r.get("loss") is not None]
    if losses and min(losses) > 0:
        axes[0].set_yscale("log")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
