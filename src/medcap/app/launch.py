"""Start the Streamlit server for `medcap app` (a subprocess running `streamlit run`)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
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


def check_report_dir(folder: str | Path) -> Path:
    """A `--reports` folder, resolved; InputError when it is not a directory."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputError(f"report folder {path} is not a directory; pass --reports DIR")
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
    *,
    reports: Sequence[str | Path] = (),
    api: str | None = None,
    links: Sequence[str] = (),
) -> list[str]:
    """The `streamlit run` command line that serves the browser over `index_dir` (or the
    `medcap serve` service at `api`).

    `settings` (`section.field=value`) reach the app's active config; `reports` are the
    folders whose report.json files the Benchmarks page may open (none given: the index
    directory). `links` are the `--pseudonym-key`/`--viewer-url` arguments of viewer links.
    """
    source = ["--api", api] if api is not None else ["--index", str(index_dir)]
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
        "--server.address", cfg.host,
        "--server.port", str(cfg.port),
        "--server.headless", "true",
        "--server.maxUploadSize", str(cfg.max_upload_mb),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--",
        *source,
        *(arg for setting in settings for arg in ("--set", setting)),
        *(arg for folder in reports for arg in ("--reports", str(folder))),
        *links,
    ]  # fmt: skip


@dataclass(frozen=True)
class AppArgs:
    """What the entry script receives after `--` on the `streamlit run` line."""

    index: Path | None = None
    settings: tuple[str, ...] = ()  # `section.field=value` for the app's config
    reports: tuple[Path, ...] = ()  # folders the Benchmarks page may read reports from
    api: str | None = None  # URL of a `medcap serve` service to browse instead of an index
    pseudonym_key: str | None = None  # DICOM indexes: the key that links cases to studies
    viewer_url: str | None = None  # with {StudyInstanceUID}


def parse_app_args(argv: Sequence[str]) -> AppArgs:
    """Read `--index DIR` (or `--api URL`), `--set section.field=value` and `--reports DIR`
    (both repeatable) from the script's arguments; anything else is ignored."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--api", default=None)
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--reports", type=Path, action="append", default=[])
    parser.add_argument("--pseudonym-key", default=None)
    parser.add_argument("--viewer-url", default=None)
    known, _ = parser.parse_known_args(list(argv))
    return AppArgs(
        index=known.index,
        settings=tuple(known.settings),
        reports=tuple(known.reports),
        api=known.api,
        pseudonym_key=known.pseudonym_key,
        viewer_url=known.viewer_url,
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class _StopRequested(KeyboardInterrupt):
    """Raised by the signal handler of `run_server` (out of the blocking wait); a
    KeyboardInterrupt, so one that arrives after the server is gone ends medcap as Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: object) -> None:
    raise _StopRequested(signum)


def run_server(command: list[str], stop_timeout_s: float = 10.0) -> int:
    """Run the server until it exits or this process gets SIGINT, SIGTERM or SIGHUP.

    The server runs in its own process group; a stop signal ends the whole group (SIGTERM,
    then SIGKILL after `stop_timeout_s`), so no child keeps the port. Handlers are set
    whatever this process inherited: a shell starts a background job with SIGINT ignored,
    and an ignored signal would stay ignored in the server too (handled ones reset to
    default on exec). On Linux the server also gets SIGTERM when medcap dies of a signal
    no handler sees (SIGKILL). Returns the server's exit code, or 128 + the signal number.
    """
    if importlib.util.find_spec("streamlit") is None:
        raise MissingExtraError("streamlit", "app")
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            command, start_new_session=True, preexec_fn=_end_with_parent(os.getpid())
        )
        return proc.wait()
    except _StopRequested as stop:
        for sig in STOP_SIGNALS:  # a second Ctrl-C must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_process_group(proc, stop_timeout_s)
        return 128 + stop.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _end_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the server when medcap dies, even by SIGKILL
    (which no handler sees); elsewhere None."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # medcap died before prctl took effect
            os._exit(1)

    return arm


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group `proc` leads, then SIGKILL it if `proc` outlives `timeout_s`."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the group is gone
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            log.warning("server did not stop within %.0f s; killing it", timeout_s)
            continue
        if sig == signal.SIGTERM:  # also end whatever the server left in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        break
