"""The `medcap` command line: a root Typer app with one sub-app per noun.

Command modules keep heavy imports (torch, open_clip, faiss) inside their functions so
that `medcap --help` stays fast. User errors are turned into one line in `main`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from medcap import __version__
from medcap.errors import MedcapError, first_line

app = typer.Typer(
    name="medcap",
    help="Retrieval-based captioning for radiology images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module under medcap.cli, how it is mounted): "group" adds a sub-app `<name>`,
# "command" registers the module's `command` function as a top-level verb.
_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("data", "data", "group"),
    ("train", "train", "group"),
    ("index", "index", "group"),
    ("search", "search", "command"),
    ("rank", "rank", "command"),
    ("caption", "caption", "command"),
    ("browser", "app", "command"),  # not cli/app.py: that name would shadow the root `app`
    ("serve", "serve", "command"),
    ("eval", "eval", "group"),
    ("report", "report", "command"),
    ("demo", "demo", "command"),
    ("fetch", "fetch", "command"),
)

_state = {"verbose": False}
_undo: list[Callable[[], None]] = []  # what the root options changed, undone after the call


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medcap {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML file of settings, one [section] per stage (see README)."
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="section.field=value, repeatable; e.g. --set index.hnsw_ef_search=512. "
            "Applied after --config; command flags still win.",
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="A `medcap fetch` bundle: hub models, hf-hub: specs and hub datasets load "
            "from it, offline (as MEDCAP_BUNDLE=DIR does).",
        ),
    ] = None,
) -> None:
    """Retrieval-based captioning for radiology images."""
    from medcap.config import use_config
    from medcap.config_files import load_config

    _state["verbose"] = verbose
    use_config(load_config(config, settings or ()))
    if bundle is not None:
        from medcap.snapshots.bundle import restore_bundle, use_bundle

        before = use_bundle(bundle)
        _undo.append(lambda: restore_bundle(before))
    # medcap's own progress notes at INFO; other libraries (open_clip is chatty) only warn.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("medcap").setLevel(logging.DEBUG if verbose else logging.INFO)


def _register() -> None:
    for module_name, name, kind in _COMMANDS:
        module = importlib.import_module(f"medcap.cli.{module_name}")
        if kind == "group":
            app.add_typer(module.app, name=name)
        else:
            app.command(name=name)(module.command)


_register()


def _is_usage_error(exc: Exception) -> bool:
    """Click's (or Typer's vendored Click's) usage errors know how to show themselves."""
    return hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map user errors to `error: ...` on stderr and exit code 1.

    The settings of `--config/--set` (and `--bundle`) hold for this call only: a caller in
    the same process (a test, a notebook) finds its own config again afterwards.
    """
    from medcap.config import current, use_config

    previous = current()
    try:
        return _run(argv)
    finally:
        use_config(previous)
        while _undo:  # --bundle holds for this call only
            _undo.pop()()


def _run(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, standalone_mode=False)
    except MedcapError as exc:
        if _state["verbose"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # the one place that catches everything
        if _is_usage_error(exc):  # a bad option or a missing argument
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            return 130
        if _state["verbose"]:
            raise
        typer.echo(  # one line, even for a library's multi-line message
            f"error: {type(exc).__name__}: {first_line(exc, 300)} "
            "(rerun with --verbose for the traceback)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point.

    Exits with `os._exit` once output is flushed: interpreter shutdown with torch loaded
    costs about a second and has nothing left to do (every artifact is closed by then).
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
