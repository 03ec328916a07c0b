"""Exercise every program on a DICOM index and collect what it wrote and served.

`exercise_programs` runs `medcap search` (table and --json, with a DICOM file query and a
text query), `medcap caption --json`, `medcap serve` (index, search, caption, case,
thumbnail answers and its log) and the app's pages (search, case, caption, dataset), and
returns every text they produced, for `find_markers`.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from medcap.cli import main
from tests.serve.served import serving


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out + err


def _tree_text(node: object) -> str:
    """Everything an AppTest element tree holds (protos print every field)."""
    parts = [str(getattr(node, "proto", ""))]
    children = getattr(node, "children", {})
    for child in children.values() if isinstance(children, dict) else children:
        parts.append(_tree_text(child))
    return "\n".join(parts)


def _app_pages(index_dir: Path, case_id: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from streamlit.testing.v1 import AppTest

    import medcap.app

    main_py = Path(medcap.app.__file__).with_name("main.py")
    monkeypatch.setattr(sys, "argv", ["main.py", "--index", str(index_dir)])
    pages: dict[str, str] = {}
    at = AppTest.from_file(str(main_py), default_timeout=120).run()
    at.radio(key="search-kind").set_value("Text")
    at.run()
    at.text_input(key="search-text").input("chest CT nodule")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    pages["app search"] = _tree_text(at._tree)
    for page in ("case", "caption", "dataset"):
        at = AppTest.from_file(str(main_py), default_timeout=120).run()
        at.switch_page(f"app_pages/{page}.py")
        at.query_params["id"] = case_id
        at.run()
        if page == "caption":
            at.button[0].click()
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        pages[f"app {page}"] = _tree_text(at._tree)
    return pages


def exercise_programs(
    index_dir: Path,
    query_file: Path,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str | bytes]:
    """Run search, caption, serve and the app on `index_dir`; return what they produced."""

    texts: dict[str, str | bytes] = {}
    base = ("--index", str(index_dir))
    texts["search"] = _cli(capsys, "search", str(query_file), *base)
    texts["search --json"] = _cli(capsys, "search", str(query_file), *base, "--json")
    texts["search text --json"] = _cli(capsys, "search", "--text", "chest CT", *base, "--json")
    texts["caption --json"] = _cli(capsys, "caption", str(query_file), *base, "--json")
    from medcap.index import open_index

    case_id = open_index(index_dir).image_ids()[0]
    log = work / "serve.log"
    with serving(index_dir, log) as server:
        from tests.serve.served import multipart, request

        data = query_file.read_bytes()
        texts["serve index"] = server.get("/v1/index").body
        reply = server.search_image(data, "?k=5")
        assert reply.status == 200, reply.body
        texts["serve search"] = reply.body
        body, headers = multipart(data, "query.dcm")
        reply = request(f"{server.url}/v1/caption", "POST", body=body, headers=headers)
        assert reply.status == 200, reply.body
        texts["serve caption"] = reply.body
        texts["serve case"] = server.get(f"/v1/cases/{quote(case_id, safe='')}").body
        texts["serve thumbnail"] = server.get(f"/v1/cases/{quote(case_id, safe='')}/thumbnail").body
    texts["serve log"] = log.read_bytes()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        texts.update(_app_pages(index_dir, case_id, monkeypatch))
    texts["app stdout"] = out.getvalue()
    return texts
