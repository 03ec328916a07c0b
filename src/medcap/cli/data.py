"""`medcap data ...`: phantoms and dataset summaries (filled in by the data module)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Datasets: generate phantoms, summarise a dataset.", no_args_is_help=True)
