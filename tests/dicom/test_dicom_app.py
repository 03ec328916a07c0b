"""The app on a DICOM index: 'Open in viewer' links with the key, and withdrawn cases gone
from a running app."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from streamlit.testing.v1 import AppTest

import medcap.app
from medcap.cli import main
from medcap.data.dicom import load_pseudonym_key
from tests.dicom.conftest import MarkedSource

MAIN = Path(medcap.app.__file__).with_name("main.py")
VIEWER = "http://viewer.example/view?study={StudyInstanceUID}"


def _search(at: AppTest) -> AppTest:
    at.radio(key="search-kind").set_value("Text")
    at.run()
    at.text_input(key="search-text").input("chest CT")
    at.sidebar.slider(key="search-k").set_value(6)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _cards(at: AppTest) -> list[str]:
    return [
        parse_qs(link.proto.query_string)["id"][0]
        for link in at.get("page_link")
        if link.proto.page == "case"
    ]


def test_viewer_links_and_withdrawal_in_the_app(
    marked_source: MarkedSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_dir, key = tmp_path / "index", tmp_path / "medcap.key"
    assert main([
        "index", "build", "--data", str(marked_source.root), "--out", str(index_dir),
        "--model", "medcap-tiny", "--pseudonym-key", str(key), "--thumbnail-size", "16",
    ]) == 0  # fmt: skip
    argv = ["main.py", "--index", str(index_dir), "--pseudonym-key", str(key),
            "--viewer-url", VIEWER]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    at = _search(AppTest.from_file(str(MAIN), default_timeout=120).run())
    ids = _cards(at)
    assert len(ids) == 6
    buttons = at.get("link_button")
    assert len(buttons) == 6
    pseudonyms = load_pseudonym_key(key)
    studies = {str(s["study"]) for s in marked_source.studies}
    for button in buttons:
        uid = parse_qs(urlparse(button.proto.url).query)["study"][0]
        assert uid in studies
        assert pseudonyms.pseudonym("study", uid).startswith("st-")
    # without the key: no link, the same cards
    monkeypatch.setattr(sys, "argv", ["main.py", "--index", str(index_dir)])
    plain = _search(AppTest.from_file(str(MAIN), default_timeout=120).run())
    assert sorted(_cards(plain)) == sorted(ids) and len(plain.get("link_button")) == 0
    # a case withdrawn while the app runs is not shown again
    assert main(["index", "remove", str(index_dir), "--ids", ids[0]]) == 0
    plain.run()
    after = _cards(plain)
    assert len(after) == 5 and ids[0] not in after
    shutil.rmtree(index_dir)
