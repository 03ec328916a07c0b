"""The root CLI: version, help, and the one place that maps errors to one line."""

from __future__ import annotations

import pytest
import typer

from medcap import __version__
from medcap.cli import app, main
from medcap.errors import InputError


def test_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"medcap {__version__}"


def test_help_lists_registered_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "data" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def _add_failing_command(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    probe = typer.Typer()

    @probe.command()
    def boom() -> None:
        raise exc

    monkeypatch.setattr(app, "registered_groups", [*app.registered_groups])
    app.add_typer(probe, name="probe")


def test_user_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_failing_command(monkeypatch, InputError("cases.csv: row 3 has no caption; fill it in"))
    assert main(["probe", "boom"]) == 1
    err = capsys.readouterr().err
    assert err == "error: cases.csv: row 3 has no caption; fill it in\n"


def test_unexpected_error_suggests_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_failing_command(monkeypatch, ValueError("bad thing"))
    assert main(["probe", "boom"]) == 1
    err = capsys.readouterr().err
    assert "ValueError: bad thing" in err and "--verbose" in err and "Traceback" not in err


def test_verbose_reraises_for_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _add_failing_command(monkeypatch, InputError("boom"))
    with pytest.raises(InputError):
        main(["--verbose", "probe", "boom"])
