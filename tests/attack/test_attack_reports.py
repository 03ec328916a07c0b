"""Item 2: the Benchmarks page opens only reports under the folders given with --reports."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medcap.config import DEFAULTS
from tests.app.conftest import AppFactory, write_caption_report

SECRET = "TOPSECRET-7f3a"


@pytest.fixture(scope="module")
def a_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real captions report folder (report.json, report.md, plot) to copy around."""
    return write_caption_report(tmp_path_factory.mktemp("report") / "run").parent


@pytest.fixture
def layout(tmp_path: Path, a_report: Path) -> dict[str, Path]:
    """`reports/` (the one allowed folder) beside `outside/` holding a report and secrets."""
    reports, outside = tmp_path / "reports", tmp_path / "outside"
    shutil.copytree(a_report, reports / "good")
    shutil.copytree(a_report, outside / "run")
    (outside / "secret.md").write_text(f"# {SECRET}\n")
    (outside / "id_rsa").write_text(f"-----BEGIN KEY----- {SECRET}\n")
    return {"reports": reports, "outside": outside}


def _page(make_app: AppFactory, reports: Path, requested: str) -> AppTest:
    at = make_app(None, reports=(reports,)).run()
    at.switch_page("app_pages/benchmark.py")
    at.query_params["report"] = requested
    at.run()
    assert [e.value for e in at.exception] == []
    assert at.title[0].value == "Benchmarks"
    return at


def _shown(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error]
    return " ".join([*parts, *(c.value for c in at.caption)])


def _refusal(at: AppTest) -> str:
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert not at.metric and not at.image  # nothing of a report was rendered
    assert SECRET not in _shown(at)
    return errors[0]


def test_item02_a_report_under_the_folders_opens(
    make_app: AppFactory, layout: dict[str, Path]
) -> None:
    at = _page(make_app, layout["reports"], str(layout["reports"] / "good"))
    assert not at.error and at.metric and len(at.image) >= 1
    at = _page(make_app, layout["reports"], "good/report.json")  # relative to the folder
    assert not at.error and at.metric


def test_item02_outside_paths_get_one_message_whether_or_not_they_exist(
    make_app: AppFactory, layout: dict[str, Path]
) -> None:
    reports, outside = layout["reports"], layout["outside"]
    requests = [
        "/etc/passwd",
        str(outside / "id_rsa"),  # a private key that exists
        str(outside / "no_such_key"),  # and one that does not
        str(outside / "run"),  # a real report, outside
        str(reports / ".." / "outside" / "run" / "report.json"),  # a .. escape
        "../outside/run/report.json",  # a relative one
        "/dev/zero",
        "~/.ssh/id_rsa",
    ]
    messages = {_refusal(_page(make_app, reports, r)) for r in requests}
    assert len(messages) == 1, messages  # the same line: nothing learned about the disk
    assert "only report.json files under" in messages.pop()


def test_item02_symlinks_out_of_the_folders_are_refused_and_not_listed(
    make_app: AppFactory, layout: dict[str, Path]
) -> None:
    reports, outside = layout["reports"], layout["outside"]
    os.symlink(outside / "run" / "report.json", reports / "linked.json")
    os.symlink(outside / "run", reports / "linked-dir")
    os.symlink("/dev/zero", reports / "zero.json")
    for name in ("linked.json", "linked-dir", "linked-dir/report.json", "zero.json"):
        assert "only report.json files under" in _refusal(
            _page(make_app, reports, str(reports / name))
        )
    at = make_app(None, reports=(reports,)).run()
    at.switch_page("app_pages/benchmark.py")
    at.run()
    listed = at.selectbox(key="benchmark-choice").options
    assert listed[:-1] == [str((reports / "good" / "report.json").resolve())]


def test_item02_only_regular_files_within_the_size_cap_are_read(
    make_app: AppFactory, layout: dict[str, Path]
) -> None:
    reports = layout["reports"]
    fifo = reports / "fifo" / "report.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes

    def release() -> None:  # a page stuck opening it gets end-of-file, not a hung test run
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(20, release)
    timer.start()
    try:
        message = _refusal(_page(make_app, reports, str(fifo.parent)))
    finally:
        timer.cancel()
        release()
    assert "not a regular file" in message
    big = reports / "big" / "report.json"
    big.parent.mkdir()
    with open(big, "wb") as handle:  # sparse: large, yet nothing written
        handle.truncate(int((DEFAULTS.app.max_report_mb + 1) * 1024 * 1024))
    assert "larger than" in _refusal(_page(make_app, reports, str(big)))


def test_item02_markdown_and_plots_next_to_a_report_stay_inside_the_folders(
    make_app: AppFactory, layout: dict[str, Path]
) -> None:
    reports, outside = layout["reports"], layout["outside"]
    run = reports / "good"
    (run / "report.md").unlink()
    os.symlink(outside / "secret.md", run / "report.md")  # a markdown file from elsewhere
    at = _page(make_app, reports, str(run))
    assert not at.error and at.metric  # rendered afresh from report.json instead
    assert SECRET not in _shown(at)
    other = reports / "other"  # another report: views are cached per report.json
    shutil.copytree(outside / "run", other)
    (other / "report.md").write_text(f"# run\n\n![stolen]({outside}/run/caption_metrics.png)\n")
    at = _page(make_app, reports, str(other))
    assert not at.image
    assert any("outside the report folders" in w.value for w in at.warning)


def test_item02_without_report_folders_nothing_opens(make_app: AppFactory, tmp_path: Path) -> None:
    at = make_app(None).run()  # no --index and no --reports
    at.switch_page("app_pages/benchmark.py")
    at.query_params["report"] = "/etc/passwd"
    at.run()
    assert [e.value for e in at.error] == ["no report folders: start the app with --reports DIR"]


def test_item02_cli_takes_repeatable_report_folders(tmp_path: Path) -> None:
    from medcap.app import launch
    from medcap.errors import InputError

    cmd = launch.streamlit_command(tmp_path, DEFAULTS.app, reports=[tmp_path / "a", tmp_path / "b"])
    args = launch.parse_app_args(cmd[cmd.index("--") + 1 :])
    assert args.reports == (tmp_path / "a", tmp_path / "b") and args.index == tmp_path
    with pytest.raises(InputError, match="not a directory"):
        launch.check_report_dir(tmp_path / "missing")
