"""`medcap app`: serve the Streamlit similar-case browser over an index directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from medcap.cli.options import VerifyOption
from medcap.config import DEFAULTS, current, replace_set


def server_settings(verify: bool | None) -> list[str]:
    """The active settings (`section.field=value`) to hand the app's own process, with
    `--verify/--no-verify` as its `index.verify`."""
    from medcap.config_files import overrides_of

    active = current()
    if verify is not None:
        active = dataclasses.replace(active, index=replace_set(active.index, verify=verify))
    return overrides_of(active)


def command(
    index: Annotated[Path, typer.Option("--index", help="Index directory to browse.")],
    port: Annotated[
        int | None, typer.Option(help=f"Port to serve on. (default: {DEFAULTS.app.port})")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help=f"Address to bind (0.0.0.0 exposes it). (default: {DEFAULTS.app.host})"),
    ] = None,
    verify: VerifyOption = None,
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

    cfg = replace_set(current().app, port=port, host=host)
    index_dir = launch.check_index_dir(index)
    report_dirs = [launch.check_report_dir(folder) for folder in reports or []]
    launch.check_port_free(cfg.host, cfg.port)
    typer.echo(f"medcap app: browsing {index_dir} at {launch.app_url(cfg)} (Ctrl-C to stop)")
    command = launch.streamlit_command(index_dir, cfg, server_settings(verify), reports=report_dirs)
    code = launch.run_server(command)
    if code not in (0, 130):
        typer.echo(f"error: the Streamlit server exited with code {code}", err=True)
    raise typer.Exit(code)
