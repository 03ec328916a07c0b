"""`medcap report DIR1 DIR2 ... --out DIR`: several evaluation runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the combined report.")],
    runs: Annotated[
        list[Path] | None, typer.Argument(help="Report directories written by `medcap eval ...`.")
    ] = None,
    bench: Annotated[
        list[Path] | None,
        typer.Option("--bench", help="Benchmark JSON (benchmarks/results/*.json); repeatable."),
    ] = None,
    rerender: Annotated[
        bool, typer.Option(help="Also re-render each run's own report.md from its report.json.")
    ] = False,
) -> None:
    """Compare evaluation runs (and benchmark throughput tables) in one report.md."""
    from medcap.evaluation.report import compare_reports, load_report, render_report

    runs = runs or []
    if rerender:
        for run in runs:
            render_report(load_report(run), run)
    path = compare_reports(runs, out, bench=bench or [])
    typer.echo(f"report: {path}")
