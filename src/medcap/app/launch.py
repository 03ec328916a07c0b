"""Start the Streamlit server for `medcap app` (a subprocess running `streamlit run`)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medcap.config import AppConfig
from medcap.errors import InputError, MissingExtraError

log = logging.getLogger(__name__)

MAIN_SCRIPT = Path(__file__).with_name("main.py")
BUILD_HINT = "build one with: medcap index build --data DATASET --out DIR (or run medcap demo)"


def check_index_dir(index_dir: str | Path) -> Path:
    """Cheap check that `index_dir` looks like an index directory (has manifest.json)."""
    path = Path(index_dir).expanduser()
    if not path.is_dir():
        raise InputError(f"index directory {path} does not exist; {BUILD_HINT}")
    if not (path / "manifest.json").is_file():
        raise InputError(f"{path} is not a medcap index (no manifest.json); {BUILD_HINT}")
    return path.resolve()


def check_port_free(host: str, port: int) -> None:
    """Raise InputError when `host:port` cannot be bound (in use, or not a local address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot serve on {host}:{port} ({exc.strerror}); pass another --port or --host"
            ) from None


def app_url(cfg: AppConfig) -> str:
    """The URL a browser opens for a server started with `cfg`."""
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    return f"http://{host}:{cfg.port}"


def streamlit_command(
    index_dir: str | Path | None,
    cfg: AppConfig,
    settings: Sequence[str] = (),
    api: str | None = None,
) -> list[str]:
    """The `streamlit run` command line that serves the browser over `index_dir` (or the
    `medcap serve` service at `api`); `settings` (`section.field=value`) reach the app's
    active config."""
    source = ["--api", api] if api is not None else ["--index", str(index_dir)]
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
        "--server.address", cfg.host,
        "--server.port", str(cfg.port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--",
        *source,
        *(arg for setting in settings for arg in ("--set", setting)),
    ]  # fmt: skip


@dataclass(frozen=True)
class AppArgs:
    """What the entry script receives after `--` on the `streamlit run` line."""

    index: Path | None = None
    settings: tuple[str, ...] = ()  # `section.field=value` for the app's config
    api: str | None = None  # URL of a `medcap serve` service to browse instead of an index


def parse_app_args(argv: Sequence[str]) -> AppArgs:
    """Read `--index DIR` (or `--api URL`) and `--set section.field=value` from the script's
    arguments; anything else is ignored."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--api", default=None)
    parser.add_argument("--set", action="append", default=[], dest="settings")
    known, _ = parser.parse_known_args(list(argv))
    return AppArgs(index=known.index, settings=tuple(known.settings), api=known.api)


def run_server(command: list[str]) -> int:
    """Run the server until it exits; Ctrl-C stops it cleanly. Returns its exit code."""
    if importlib.util.find_spec("streamlit") is None:
        raise MissingExtraError("streamlit", "app")
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # A terminal sends SIGINT to the whole foreground group; forward it anyway in
        # case only this process was signalled, then escalate if the server hangs.
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("server did not stop after Ctrl-C; terminating it")
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return 130
