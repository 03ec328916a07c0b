"""`medcap app --api URL`: the browser over a running `medcap serve` (no model in the app)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import medcap
from medcap.cli import main
from medcap.config import DEFAULTS
from tests.app.conftest import MAIN
from tests.app.test_app_pages import _card_ids, _ok, _scores
from tests.serve.served import Server, serving

TOKEN = "app-token-0123456789abcdef"

pytestmark = pytest.mark.slow  # starts a service


@pytest.fixture(scope="module")
def service(app_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`medcap serve` over the app's phantom index, with a token."""
    log = tmp_path_factory.mktemp("app_api") / "serve.log"
    with serving(app_index_dir, log, env={"MEDCAP_TOKEN": TOKEN}) as server:
        yield server


@pytest.fixture
def api_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], AppTest]:
    """AppTest on main.py as `medcap app --api URL` starts it (token in the environment)."""

    def make(url: str) -> AppTest:
        monkeypatch.setattr(sys, "argv", ["main.py", "--api", url])
        monkeypatch.setenv("MEDCAP_TOKEN", TOKEN)
        return AppTest.from_file(str(MAIN), default_timeout=60)

    return make


def test_only_pages_the_service_can_feed_are_offered(
    api_app: Callable[[str], AppTest], service: Server
) -> None:
    at = _ok(api_app(service.url).run())
    assert at.title[0].value == "Similar-case search"
    assert service.url in " ".join(c.value for c in at.sidebar.caption)
    # the caption and dataset pages need the index in this process: not registered
    with pytest.raises(Exception, match="caption"):
        at.switch_page("app_pages/caption.py").run()


def test_image_search_through_the_service_equals_the_library(
    api_app: Callable[[str], AppTest],
    service: Server,
    app_index_dir: Path,
    original_png: Callable[[str], bytes],
    tmp_path: Path,
) -> None:
    index = medcap.open_index(app_index_dir, device="cpu")
    target = index.index.image_ids()[7]
    query = tmp_path / "query.png"
    query.write_bytes(original_png(target))
    at = _ok(api_app(service.url).run())
    at.sidebar.selectbox(key="search-mode-image").set_value("images")
    at.file_uploader(key="search-upload").set_value(("query.png", query.read_bytes(), "image/png"))
    _ok(at.run())
    expected = index.search(str(query), k=DEFAULTS.app.k, mode="images")[0]
    assert _card_ids(at) == [h.image_id for h in expected] and _card_ids(at)[0] == target
    assert _scores(at) == [round(h.score, 3) for h in expected]
    assert len(at.image) >= len(expected)  # thumbnails fetched from the service


def test_text_search_with_filter_through_the_service(
    api_app: Callable[[str], AppTest], service: Server, app_index_dir: Path
) -> None:
    index = medcap.open_index(app_index_dir, device="cpu")
    modality = index.item(index.index.image_ids()[0]).metadata["modality"]
    at = _ok(api_app(service.url).run())
    at.radio(key="search-kind").set_value("Text")
    _ok(at.run())
    at.text_input(key="search-text").input("an image showing a nodule")
    at.sidebar.slider(key="search-k").set_value(5)
    at.sidebar.multiselect(key="search-filter-on").set_value(["modality"])
    _ok(at.run())
    at.sidebar.multiselect(key="search-filter-modality").set_value([modality])
    _ok(at.run())
    expected = index.search(text="an image showing a nodule", k=5, where={"modality": modality})
    assert _card_ids(at) == [h.image_id for h in expected[0]]


def test_case_page_neighbours_and_thumbnail_through_the_service(
    api_app: Callable[[str], AppTest], service: Server, app_index_dir: Path
) -> None:
    index = medcap.open_index(app_index_dir, device="cpu")
    case_id = index.index.image_ids()[3]
    at = api_app(service.url).run()
    at.switch_page("app_pages/case.py")
    _ok(at.run())
    assert "Open a case from a search result" in at.info[0].value  # no list of cases to start
    at.query_params["id"] = case_id
    _ok(at.run())
    assert at.title[0].value == case_id
    assert index.item(case_id).caption in [m.value for m in at.markdown]
    assert len(at.image) >= 1 + DEFAULTS.app.k  # the case's thumbnail and its neighbours'
    # the case page matches against the default image mode (captions), as with --index
    neighbours = medcap.Client(service.url, TOKEN).search(
        case=case_id, k=DEFAULTS.app.k, mode=DEFAULTS.retrieval.mode
    )
    assert _card_ids(at) == [h.image_id for h in neighbours] and case_id not in _card_ids(at)
    at.query_params["id"] = "no-such-case"
    _ok(at.run())
    assert "no-such-case" in at.error[0].value


def test_unreachable_or_refusing_service_is_explained(
    api_app: Callable[[str], AppTest], service: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.app.served_app import free_port

    at = _ok(api_app(f"http://127.0.0.1:{free_port()}").run())
    assert "cannot reach the medcap service" in at.error[0].value
    assert any("medcap serve --index" in m.value for m in at.markdown)
    at = api_app(service.url)
    monkeypatch.setenv("MEDCAP_TOKEN", "wrong-token-0123456789")
    _ok(at.run())
    assert "bearer token" in at.error[0].value and "401" in at.error[0].value


def test_cli_takes_index_or_api(capsys: pytest.CaptureFixture[str], app_index_dir: Path) -> None:
    for args in ([], ["--index", str(app_index_dir), "--api", "http://127.0.0.1:1"]):
        assert main(["app", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: give --index DIR or --api URL") and err.count("\n") == 1


def test_streamlit_command_and_args_carry_the_api_url() -> None:
    from medcap.app import launch

    command = launch.streamlit_command(None, DEFAULTS.app, ["retrieval.k=3"], api="http://h:1")
    after = command[command.index("--") + 1 :]
    assert after[:2] == ["--api", "http://h:1"] and "--index" not in after
    args = launch.parse_app_args(after)
    assert args.api == "http://h:1" and args.index is None and args.settings == ("retrieval.k=3",)
