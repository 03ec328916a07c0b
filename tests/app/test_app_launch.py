"""`medcap app`: the streamlit command line, index and port checks, CLI errors."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from medcap.app import launch
from medcap.cli import main
from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from tests.app.served_app import free_port, served, wait_healthy


def test_default_host_is_loopback() -> None:
    assert DEFAULTS.app.host == "127.0.0.1"


def test_streamlit_command_serves_main_script_headless_on_given_address(tmp_path: Path) -> None:
    cfg = replace_set(DEFAULTS.app, host="127.0.0.1", port=9123)
    cmd = launch.streamlit_command(tmp_path, cfg)
    assert cmd[1:5] == ["-m", "streamlit", "run", str(launch.MAIN_SCRIPT)]
    assert launch.MAIN_SCRIPT.is_file()
    pairs = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert pairs["--server.address"] == "127.0.0.1"
    assert pairs["--server.port"] == "9123"
    assert pairs["--server.headless"] == "true"
    assert pairs["--browser.gatherUsageStats"] == "false"
    script_args = cmd[cmd.index("--") + 1 :]
    assert launch.parse_app_args(script_args).index == tmp_path


def test_settings_reach_the_app_process(tmp_path: Path) -> None:
    from medcap.config_files import load_config, overrides_of

    active = load_config(None, ["app.k=4", "retrieval.text_mode=captions"])
    cmd = launch.streamlit_command(tmp_path, active.app, overrides_of(active))
    args = launch.parse_app_args(cmd[cmd.index("--") + 1 :])
    assert args.index == tmp_path
    assert load_config(None, args.settings) == active  # what the app's entry script applies


def test_parse_app_args_ignores_foreign_arguments() -> None:
    assert launch.parse_app_args(["-q", "tests/app", "--maxfail=1"]).index is None
    assert launch.parse_app_args(["--index", "x", "--other"]).index == Path("x")


def test_app_url_brackets_ipv6() -> None:
    assert launch.app_url(replace_set(DEFAULTS.app, host="::1", port=1)) == "http://[::1]:1"
    assert launch.app_url(replace_set(DEFAULTS.app, port=8600)) == "http://127.0.0.1:8600"


def test_missing_or_incomplete_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist.*medcap index build"):
        launch.check_index_dir(tmp_path / "nope")
    with pytest.raises(InputError, match="no manifest.json.*medcap index build"):
        launch.check_index_dir(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    assert launch.check_index_dir(tmp_path) == tmp_path.resolve()


def test_busy_port_is_a_user_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"127.0.0.1:{port}.*--port"):
            launch.check_port_free("127.0.0.1", port)


def test_cli_without_index_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["app", "--index", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: index directory") and "medcap index build" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_help_lists_options_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--index", "--port", "--host"):
        assert flag in out
    assert str(DEFAULTS.app.port) in out and DEFAULTS.app.host in out


def test_cli_serves_the_app_until_ctrl_c(app_index_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with served(app_index_dir, port, log) as proc:
        wait_healthy(url, proc)
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200 and b"<html" in reply.read().lower()
    assert proc.returncode == 130, log.read_text()  # Ctrl-C is a clean stop
    assert f"browsing {app_index_dir.resolve()} at {url}" in log.read_text()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
