"""PNG plots for evaluation reports (matplotlib, Agg backend; nothing is shown on screen).

Every function reads plain report data (see `report.py`) and writes one PNG.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DIRECTION_TITLES = {"image_to_text": "image → text", "text_to_image": "text → image"}
_DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_k_axis(ax: Any) -> None:
    """Log-scaled x axis with plain tick labels (1, 2, 5, 10, 20, 50, ...)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [m * 10**e for e in range(0, 7) for m in (1, 2, 5) if m * 10**e <= max(high, 1)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_below(fig: Any, axes: Any) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(
        handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False
    )
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(labels) - 1) // 4), 1, 1))


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_recall_curves(entries: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Recall@K against K (log scale), one line per encoder, one panel per direction."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, direction in zip(axes, DIRECTION_TITLES, strict=True):
        longest = 1
        for entry in entries:
            curve = entry[direction]["recall_curve"]
            ks = np.arange(1, len(curve) + 1)
            longest = max(longest, len(curve))
            ax.plot(ks, 100 * np.asarray(curve), marker="o", markersize=3, label=entry["label"])
        # a random ranking puts the pair in the top K with probability K / gallery
        gallery = max(e["gallery_size"] for e in entries)
        ks = np.arange(1, longest + 1)
        ax.plot(
            ks,
            100 * np.minimum(ks / max(gallery, 1), 1),
            ":",
            color="gray",
            label="chance (K / gallery)",
        )
        _log_k_axis(ax)
        ax.set_xlabel("K (gallery items retrieved)")
        ax.set_title(f"{DIRECTION_TITLES[direction]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(0, 101)
    axes[0].set_ylabel("Recall@K (%)")
    if title:
        fig.suptitle(title)
    _legend_below(fig, axes)
    return _save(fig, path)


def plot_rank_histograms(entries: Sequence[dict[str, Any]], path: Path) -> Path:
    """Histogram of each query's 1-based rank (log-spaced bins), per direction."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    largest = max(max(max(e["ranks"][d], default=0) for d in DIRECTION_TITLES) for e in entries) + 1
    bins = np.unique(np.geomspace(1, max(largest, 2) + 1, num=min(30, largest + 1)).astype(int))
    for ax, direction in zip(axes, DIRECTION_TITLES, strict=True):
        for entry in entries:
            ranks = np.asarray(entry["ranks"][direction]) + 1
            ax.hist(ranks, bins=bins, histtype="step", linewidth=1.8, label=entry["label"])
        _log_k_axis(ax)
        ax.set_xlabel("rank of the paired item (1 = first; log-spaced bins)")
        ax.set_title(DIRECTION_TITLES[direction])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("queries")
    _legend_below(fig, axes)
    return _save(fig, path)


def _grouped_bars(ax: Any, groups: Sequence[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        color = "#9a9a9a" if name == "chance" else None
        bars = ax.bar(
            x + (i - (len(series) - 1) / 2) * width, values, width, label=name, color=color
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(
        x,
        groups,
        rotation=30 if len(groups) > 5 else 0,
        ha="right" if len(groups) > 5 else "center",
    )
    ax.grid(True, axis="y", alpha=0.3)


def plot_groups(entries: Sequence[dict[str, Any]], metric: str, path: Path) -> Path:
    """`metric` (e.g. R@10) per group value, bars per encoder, one panel per direction."""
    plt = _pyplot()
    by = entries[0]["groups"]["by"]
    values = sorted({v for e in entries for v in e["groups"]["values"]})
    fig, axes = plt.subplots(
        1, 2, figsize=(max(9, 1.3 * len(values) * len(entries)), 4.2), sharey=True
    )
    for ax, direction in zip(axes, DIRECTION_TITLES, strict=True):
        series = {
            e["label"]: [
                100 * e["groups"]["values"].get(v, {}).get(direction, {}).get(metric, float("nan"))
                for v in values
            ]
            for e in entries
        }
        _grouped_bars(ax, values, series)
        ax.set_title(f"{DIRECTION_TITLES[direction]}: {metric} by {by}")
        ax.set_ylim(0, 110)
    axes[0].set_ylabel(f"{metric} (%)")
    _legend_below(fig, axes)
    return _save(fig, path)


def plot_attributes(entries: Sequence[dict[str, Any]], path: Path) -> Path:
    """Share of queries whose top-1 image→text neighbour shares each attribute, vs chance."""
    plt = _pyplot()
    attrs = [a for a in entries[0]["attributes"]["image_to_text"]]
    fig, ax = plt.subplots(figsize=(min(12, max(7, 1.2 * len(attrs) * (len(entries) + 1))), 4.2))
    series = {
        e["label"]: [100 * e["attributes"]["image_to_text"][a] for a in attrs] for e in entries
    }
    series["chance"] = [100 * entries[0]["attributes"]["chance"][a] for a in attrs]
    _grouped_bars(ax, attrs, series)
    ax.set_ylim(0, 110)
    ax.set_ylabel("top-1 neighbour matches (%)")
    ax.set_title("image → text: does the top-1 caption's case share the attribute?")
    _legend_below(fig, [ax])
    return _save(fig, path)


def _thumb(ax: Any, path: Path | None, border: str | None) -> None:
    plt = _pyplot()
    if path is not None and path.is_file():
        ax.imshow(plt.imread(str(path)), cmap="gray")
    else:
        ax.imshow(np.full((8, 8), 0.85), cmap="gray", vmin=0, vmax=1)
        ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if border:
        for spine in ax.spines.values():
            spine.set_edgecolor(border)
            spine.set_linewidth(4)


def _thumb_path(folder: Path, name: str | None) -> Path | None:
    """A thumbnail named in a report, only if it lies inside the report's folder (a report
    naming `../../secret.png` must not put another file's pixels into a plot)."""
    if not name:
        return None
    path = (folder / name).resolve()
    return path if path.is_relative_to(folder.resolve()) else None


def plot_examples(
    examples: Sequence[dict[str, Any]],
    label: str,
    thumbnails: dict[str, str],
    out_dir: Path,
    path: Path,
) -> Path:
    """Grid: each row a query image and its top image→text neighbours (thumbnail + caption)."""
    plt = _pyplot()
    n_cols = 1 + max(len(ex["neighbours"].get(label, [])) for ex in examples)
    fig, axes = plt.subplots(
        len(examples), n_cols, figsize=(2.6 * n_cols, 3.4 * len(examples)), squeeze=False
    )
    for row, ex in enumerate(examples):
        _thumb(axes[row][0], _thumb_path(out_dir, thumbnails.get(ex["image_id"])), "#1f4e9c")
        axes[row][0].set_title(f"query {ex['image_id']}", fontsize=8, color="#1f4e9c")
        axes[row][0].set_xlabel(_wrap(ex["caption"]), fontsize=7)
        hits = ex["neighbours"].get(label, [])
        for col in range(1, n_cols):
            ax = axes[row][col]
            if col > len(hits):
                ax.axis("off")
                continue
            hit = hits[col - 1]
            thumb = _thumb_path(out_dir, thumbnails.get(hit["image_id"]))
            color = "#2e8b3e" if hit["hit"] else "#c0392b"
            _thumb(ax, thumb, color)
            mark = "pair" if hit["hit"] else "other"
            ax.set_title(f"#{col}  cos {hit['score']:.3f}  ({mark})", fontsize=8, color=color)
            ax.set_xlabel(_wrap(hit["caption"]), fontsize=7)
    fig.suptitle(
        f"{label}: example queries (blue) and their top captions, shown with their cases' images\n"
        "green = the paired caption, red = another case's caption",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / len(examples)))
    return _save(fig, path)


def _wrap(text: str, width: int = 32, lines: int = 3) -> str:
    """At most `lines` lines of `width` characters, cut with an ellipsis."""
    wrapped = textwrap.wrap(text, width)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1].rstrip() + "…"
    return "\n".join(wrapped)


def plot_threshold_sweep(
    thresholds: Sequence[float], f1: Sequence[float], chosen: float, path: Path
) -> Path:
    """Sample-averaged concept F1 against the vote threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(thresholds, f1, marker="o")
    ax.axvline(chosen, color="gray", linestyle="--", label=f"threshold used ({chosen:g})")
    ax.set_xlabel("vote threshold (share of the similarity-weighted vote)")
    ax.set_ylabel("sample-averaged F1")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


_UNBOUNDED = ("CIDEr", "CLIPScore", "RefCLIPScore")  # not on a 0-1 scale


def plot_metric_bars(runs: dict[str, dict[str, float]], path: Path, *, title: str) -> Path:
    """Grouped bars, one bar per run: 0-1 metrics on the left, CIDEr/CLIPScore on the right."""
    plt = _pyplot()
    metrics = list(dict.fromkeys(m for values in runs.values() for m in values))
    panels = [[m for m in metrics if m not in _UNBOUNDED], [m for m in metrics if m in _UNBOUNDED]]
    panels = [p for p in panels if p]
    width = max(7.0, 0.8 * len(metrics) * max(1, len(runs)))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(min(width, 16), 4.2),
        squeeze=False,
        gridspec_kw={"width_ratios": [len(p) for p in panels]},
    )
    for ax, names in zip(axes[0], panels, strict=True):
        series = {run: [values.get(m, float("nan")) for m in names] for run, values in runs.items()}
        bar_width = 0.8 / max(1, len(series))
        x = np.arange(len(names))
        for i, (run, values) in enumerate(series.items()):
            bars = ax.bar(x + (i - (len(series) - 1) / 2) * bar_width, values, bar_width, label=run)
            ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=1)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.grid(True, axis="y", alpha=0.3)
        if names[0] not in _UNBOUNDED:
            ax.set_ylim(0, 1.05)
            ax.set_title("0-1 scale")
        else:
            ax.set_title("CIDEr (0-10), CLIPScore (0-2.5)")
    fig.suptitle(title)
    _legend_below(fig, list(axes[0]))
    return _save(fig, path)
