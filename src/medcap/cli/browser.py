"""`medcap app`: serve the Streamlit similar-case browser over an index directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medcap.config import DEFAULTS, replace_set


def command(
    index: Annotated[Path, typer.Option("--index", help="Index directory to browse.")],
    port: Annotated[
        int | None, typer.Option(help=f"Port to serve on. (default: {DEFAULTS.app.port})")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help=f"Address to bind (0.0.0.0 exposes it). (default: {DEFAULTS.app.host})"),
    ] = None,
    reports: Annotated[
        list[Path] | None,
        typer.Option(
            "--reports",
            help="Folder whose report.json files the Benchmarks page may open; repeat for "
            "several. (default: the index directory)",
        ),
    ] = None,
) -> None:
    """Browse similar cases in a web UI (Streamlit) over an index directory."""
    from medcap.app import launch

    cfg = replace_set(DEFAULTS.app, port=port, host=host)
    index_dir = launch.check_index_dir(index)
    report_dirs = [launch.check_report_dir(folder) for folder in reports or []]
    launch.check_port_free(cfg.host, cfg.port)
    typer.echo(f"medcap app: browsing {index_dir} at {launch.app_url(cfg)} (Ctrl-C to stop)")
    code = launch.run_server(launch.streamlit_command(index_dir, cfg, report_dirs))
    if code not in (0, 130):
        typer.echo(f"error: the Streamlit server exited with code {code}", err=True)
    raise typer.Exit(code)
