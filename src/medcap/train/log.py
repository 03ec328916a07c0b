"""A training run's log: `metrics.jsonl` (one JSON object per line) and `training_curve.png`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medcap.atomic import write_atomic, write_text_atomic

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"


class MetricsLog:
    """Append-only JSON lines; `kind` is "train" (per logged step) or "eval" (per epoch)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, kind: str, **values: Any) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, **values}, default=float) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash mid-write
                continue
        return rows

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (they belong to a run that died before its
        next checkpoint, and the resumed run logs those steps again)."""
        kept = [row for row in self.read() if int(row.get("step", 0)) <= step]
        text = "".join(json.dumps(row) + "\n" for row in kept)
        write_text_atomic(self.path, text)


def plot_training_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Train loss per step and validation recall per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    fig, (ax_loss, ax_recall) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    ax_loss.set(xlabel="step", ylabel="contrastive loss", title="training loss")
    for key in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@10"):
        points = [(r["step"], r[key]) for r in evals if key in r]
        if points:
            ax_recall.plot(*zip(*points, strict=True), marker="o", label=key)
    ax_recall.set(xlabel="step", ylabel="recall", title="validation retrieval", ylim=(0, 1))
    if evals:
        ax_recall.legend(loc="lower right")
    fig.tight_layout()

    def write(handle: Any) -> None:
        fig.savefig(handle, format="png", dpi=100)

    write_atomic(path, write)
    plt.close(fig)
