"""`medcap serve`: the HTTP similar-case and caption service over an index directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medcap.cli.dicom_options import (
    DicomwebTokenOption,
    PseudonymKeyOption,
    ViewerUrlOption,
    check_viewer_links,
)
from medcap.cli.options import (
    AdapterOption,
    BackendOption,
    EncoderDeviceOption,
    VerifyOption,
)
from medcap.client import TOKEN_ENV
from medcap.config import DEFAULTS, current, replace_set

S = DEFAULTS.serve


def command(
    index: Annotated[Path, typer.Option("--index", help="Index directory to serve.")],
    port: Annotated[int | None, typer.Option(help=f"Port. (default: {S.port})")] = None,
    host: Annotated[
        str | None,
        typer.Option(help=f"Address to bind; beyond loopback needs --token. (default: {S.host})"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=f"Server processes; only 1 (see `medcap.serve`). (default: {S.workers})"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="Bearer token every request but /healthz and /readyz must send.",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback --host without a token.")
    ] = False,
    backend: BackendOption = None,
    model: Annotated[
        str | None,
        typer.Option(help="Caption generator model id or directory. (default: the backend's)"),
    ] = None,
    adapter: AdapterOption = None,
    device: EncoderDeviceOption = None,
    encoder_model: Annotated[
        str | None,
        typer.Option(help="The index's encoder checkpoint, if it moved since the build."),
    ] = None,
    verify: VerifyOption = None,
    pseudonym_key: PseudonymKeyOption = None,
    viewer_url: ViewerUrlOption = None,
    dicomweb_token: DicomwebTokenOption = None,
) -> None:
    """Serve similar-case search and captions over HTTP (FastAPI; docs at /docs)."""
    from medcap.app.launch import check_index_dir, check_port_free
    from medcap.errors import MissingExtraError

    try:
        from medcap.serve.server import run_server
        from medcap.serve.settings import ServeOptions, check_binding, check_workers
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "serve") from None

    active = current()
    cfg = replace_set(active.serve, port=port, host=host, workers=workers)
    check_workers(cfg.workers)
    check_binding(cfg.host, token, insecure, cfg)
    options = ServeOptions(
        index_dir=check_index_dir(index),
        cfg=cfg,
        retrieval=active.retrieval,
        generation=replace_set(active.generation, backend=backend),
        encoder=replace_set(active.encoder, device=device),
        generator_model=model,
        adapter=adapter,
        encoder_model=encoder_model,
        verify=verify,
        token=token,
        pseudonym_key=pseudonym_key,
        viewer_url=viewer_url,
        dicomweb_token=dicomweb_token,
    )
    check_viewer_links(options.index_dir, pseudonym_key, viewer_url)
    check_port_free(cfg.host, cfg.port)
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    typer.echo(
        f"medcap serve: {options.index_dir} at http://{shown}:{cfg.port} "
        f"(API docs at /docs; loading the index; Ctrl-C or SIGTERM stops)"
    )
    run_server(options, cfg.host, cfg.port)
