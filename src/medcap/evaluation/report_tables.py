"""Markdown table helpers for reports, including benchmark JSON files rendered as tables."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medcap.errors import CorruptArtifactError, InputError

_MAX_ROWS = 60
_MAX_COLUMNS = 14
_MAX_SKIPPED_LISTED = 20


def fmt(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; text as is; missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None) -> str:
    """A fraction in [0, 1] as a percentage with one decimal (the papers' convention)."""
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.1f}"
    )


def _cell(value: Any) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def retrieval_rows(entries: Sequence[dict[str, Any]], ks: Sequence[int]) -> list[list[Any]]:
    """One row per encoder and direction: R@k (%), median and mean rank, gallery size."""
    arrows = {"image_to_text": "image → text", "text_to_image": "text → image"}
    rows = []
    for e in entries:
        for direction, arrow in arrows.items():
            s = e[direction]
            rows.append(
                [
                    e["label"],
                    arrow,
                    *[pct(s.get(f"R@{k}")) for k in ks],
                    fmt(s["median_rank"], 0),
                    fmt(s["mean_rank"], 1),
                    e["gallery_size"],
                ]
            )
    return rows


def retrieval_table(
    entries: Sequence[dict[str, Any]], ks: Sequence[int], *, label: str = "encoder"
) -> str:
    """The markdown table of `retrieval_rows`, its first column headed `label`."""
    header = [label, "direction", *[f"R@{k}" for k in ks], "median rank", "mean rank", "gallery"]
    return md_table(header, retrieval_rows(entries, ks))


def skipped_section(skipped: Sequence[dict[str, Any]]) -> list[str]:
    """A 'Skipped items' section listing the first items and the total."""
    if not skipped:
        return ["No item was skipped.", ""]
    lines = [f"## Skipped items ({len(skipped)})", ""]
    rows = [
        [s.get("source"), s.get("row"), s.get("image_id"), s.get("reason")]
        for s in skipped[:_MAX_SKIPPED_LISTED]
    ]
    lines += [md_table(["source", "row", "image_id", "reason"], rows), ""]
    if len(skipped) > _MAX_SKIPPED_LISTED:
        lines += [
            f"... and {len(skipped) - _MAX_SKIPPED_LISTED} more (all listed in report.json).",
            "",
        ]
    return lines


def _tables(node: Any, path: str) -> Iterable[tuple[str, list[dict[str, Any]] | dict[str, Any]]]:
    """(where, rows) for every list of flat dicts and every flat dict of scalars in a JSON tree."""
    if isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        yield path, node
        return
    if isinstance(node, dict):
        scalars = {
            k: v for k, v in node.items() if isinstance(v, (str, int, float, bool, type(None)))
        }
        if scalars:
            yield path, scalars
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                yield from _tables(value, f"{path}.{key}" if path else str(key))


def bench_sections(files: Sequence[str | Path]) -> list[str]:
    """Markdown sections for benchmark result JSON files (benchmarks/results/*.json)."""
    lines: list[str] = []
    for file in files:
        path = Path(file)
        if not path.exists():
            raise InputError(f"benchmark file {path} does not exist; run the benchmark first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CorruptArtifactError(f"{path}: not valid JSON ({exc})") from None
        lines += [f"## Benchmark: {path.stem}", "", f"From `{path}`.", ""]
        for where, rows in _tables(data, ""):
            title = where or path.stem
            if isinstance(rows, dict):
                lines += [
                    f"**{title}**",
                    "",
                    md_table(["field", "value"], list(rows.items())[:_MAX_ROWS]),
                    "",
                ]
                continue
            columns = list(
                dict.fromkeys(
                    k for row in rows for k, v in row.items() if not isinstance(v, (dict, list))
                )
            )
            columns = columns[:_MAX_COLUMNS]
            body = [[row.get(c) for c in columns] for row in rows[:_MAX_ROWS]]
            lines += [f"**{title}**", "", md_table(columns, body), ""]
            if len(rows) > _MAX_ROWS:
                lines += [f"... {len(rows) - _MAX_ROWS} more rows in the JSON file.", ""]
    return lines
