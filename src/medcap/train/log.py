"""A training run's log: `metrics.jsonl` (one JSON object per line), its TensorBoard mirror in
`tensorboard/`, and `training_curve.png`.

metrics.jsonl is the record; every numeric value of a line (but its epoch) is also written as
the TensorBoard scalar `<kind>/<name>` at the line's step (`train/loss`, `eval/i2t_R@1`, ...),
so both always hold the same numbers. TensorBoard is optional (`pip install 'medcap[tb]'`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from medcap.atomic import write_atomic, write_text_atomic

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CURVE_FILE = "training_curve.png"


class MetricsLog:
    """Append-only JSON lines in `out_dir/metrics.jsonl`, mirrored to TensorBoard when on.

    `kind` names the line: "train" (per logged step) or "eval" (per validation).
    """

    def __init__(self, out_dir: Path, *, tensorboard: bool = True) -> None:
        self.path = out_dir / METRICS_FILE
        self.tensorboard_dir = out_dir / TENSORBOARD_DIR
        self.tensorboard = tensorboard
        self._writer: Any = None  # a SummaryWriter while the log is open

    def start(self, resume_step: int | None = None) -> None:
        """Open for a fresh run (earlier lines and events removed), or for a run resumed after
        `resume_step`: lines after it are dropped and TensorBoard hides the events after it
        (they belong to a run that died before its next checkpoint and are logged again)."""
        if resume_step is None:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
        else:
            self._truncate_after(resume_step)
        if self.tensorboard:
            purge_step = None if resume_step is None else resume_step + 1
            self._writer = _summary_writer(self.tensorboard_dir, purge_step)

    def append(self, kind: str, *, step: int, **values: Any) -> None:
        """Log one line of `values` at optimizer step `step`."""
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, "step": step, **values}, default=float) + "\n")
        if self._writer is None:
            return
        for name, value in values.items():
            if name != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(f"{kind}/{name}", value, step)

    def flush(self) -> None:
        """Put pending TensorBoard events on disk (metrics.jsonl lines already are)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer; safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def read(self) -> list[dict[str, Any]]:
        """Every complete line, in order."""
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash mid-write
                continue
        return rows

    def _truncate_after(self, step: int) -> None:
        kept = [row for row in self.read() if int(row.get("step", 0)) <= step]
        text = "".join(json.dumps(row) + "\n" for row in kept)
        write_text_atomic(self.path, text)


def _summary_writer(log_dir: Path, purge_step: int | None) -> Any:
    """A TensorBoard SummaryWriter on `log_dir`, or None (and one info line) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info(
            "TensorBoard logs are off: tensorboard is not installed "
            "(pip install 'medcap[tb]'); metrics.jsonl holds every value"
        )
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


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
