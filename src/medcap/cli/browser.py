"""`medcap app`: serve the Streamlit similar-case browser over an index directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from medcap.cli.dicom_options import PseudonymKeyOption, ViewerUrlOption, check_viewer_links
from medcap.cli.options import VerifyOption
from medcap.client import TOKEN_ENV
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
    index: Annotated[
        Path | None, typer.Option("--index", help="Index directory to browse.")
    ] = None,
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
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            help="URL of a running `medcap serve` to browse instead of --index "
            "(no model loads here), e.g. http://127.0.0.1:8600.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar=TOKEN_ENV, show_envvar=True, help="The --api service's bearer token."),
    ] = None,
    pseudonym_key: PseudonymKeyOption = None,
    viewer_url: ViewerUrlOption = None,
) -> None:
    """Browse similar cases in a web UI (Streamlit) over an index directory or a service."""
    import os

    from medcap.app import launch
    from medcap.errors import InputError

    if (index is None) == (api is None):
        raise InputError("give --index DIR or --api URL (a running medcap serve), not both")
    cfg = replace_set(current().app, port=port, host=host)
    index_dir = launch.check_index_dir(index) if index is not None else None
    report_dirs = [launch.check_report_dir(folder) for folder in reports or []]
    if index_dir is not None:
        check_viewer_links(index_dir, pseudonym_key, viewer_url)
    links = [*(["--pseudonym-key", pseudonym_key] if pseudonym_key else []),
             *(["--viewer-url", viewer_url] if viewer_url else [])]  # fmt: skip
    launch.check_port_free(cfg.host, cfg.port)
    if token is not None:
        os.environ[TOKEN_ENV] = token  # the app process reads it there: argv would show it
    source = index_dir if index_dir is not None else f"the medcap service at {api}"
    typer.echo(f"medcap app: browsing {source} at {launch.app_url(cfg)} (Ctrl-C to stop)")
    command = launch.streamlit_command(
        index_dir, cfg, server_settings(verify), reports=report_dirs, api=api, links=links
    )
    code = launch.run_server(command)
    if code not in (0, 130):
        typer.echo(f"error: the Streamlit server exited with code {code}", err=True)
    raise typer.Exit(code)
