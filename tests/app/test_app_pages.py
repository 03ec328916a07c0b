"""Each page of the browser, driven through Streamlit's AppTest on a real phantom index."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from streamlit.testing.v1 import AppTest

from medcap.config import DEFAULTS
from medcap.index import open_index
from tests.app.conftest import AppFactory, write_caption_report


def _ok(at: AppTest) -> AppTest:
    assert [e.value for e in at.exception] == []
    return at


def _card_ids(at: AppTest) -> list[str]:
    """image_ids of the result cards, in order (each card links to its case page)."""
    ids = []
    for link in at.page_link:
        if link.proto.page == "case":
            ids.append(parse_qs(link.proto.query_string)["id"][0])
    return ids


def _scores(at: AppTest) -> list[float]:
    """Scores from the card headlines (`**#1 · 0.873 · train**`)."""
    return [float(m.value.split(" · ")[1]) for m in at.markdown if m.value.startswith("**#")]


# ---- starting without a usable index ------------------------------------------------


def test_no_index_shows_how_to_build_one(make_app: AppFactory) -> None:
    at = _ok(make_app(None).run())
    assert at.title[0].value.startswith("medcap")
    assert "without --index" in at.error[0].value
    assert any("medcap index build" in c.value for c in at.code)


def test_directory_without_manifest_is_explained(make_app: AppFactory, tmp_path: Path) -> None:
    at = _ok(make_app(tmp_path).run())
    assert "no manifest.json" in at.error[0].value and str(tmp_path) in at.error[0].value
    assert any("medcap index build" in c.value for c in at.code)


def test_unloadable_encoder_is_named_with_the_reason(
    make_app: AppFactory, app_index_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "index"
    shutil.copytree(app_index_dir, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["encoder"]["spec"] = manifest["encoder"]["checkpoint"] = str(tmp_path / "gone.pt")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    at = _ok(make_app(broken).run())
    message = at.error[0].value
    assert "encoder" in message and "gone.pt" in message and "could not be loaded" in message
    assert "no longer exists" in message  # the why, from the retriever


def test_damaged_index_names_the_file(
    make_app: AppFactory, app_index_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "index"
    shutil.copytree(app_index_dir, broken)
    faiss_file = broken / "image.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    at = _ok(make_app(broken).run())
    assert "image.faiss" in at.error[0].value
    assert any("medcap index build" in c.value for c in at.code)


# ---- search ------------------------------------------------------------------------


def test_image_upload_finds_the_case_itself_first(
    make_app: AppFactory, app_index_dir: Path, original_png: Callable[[str], bytes]
) -> None:
    index = open_index(app_index_dir)
    target = index.image_ids()[7]
    at = _ok(make_app(app_index_dir).run())
    at.sidebar.selectbox(key="search-mode-image").set_value("images")
    at.file_uploader(key="search-upload").set_value(
        ("query.png", original_png(target), "image/png")
    )
    _ok(at.run())
    ids = _card_ids(at)
    assert len(ids) == min(DEFAULTS.app.k, len(index))
    assert ids[0] == target
    scores = _scores(at)
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99
    assert index.item(target).caption in [m.value for m in at.markdown]
    assert len(at.image) >= len(ids)  # a thumbnail per card (+ the query preview)


def test_bad_upload_shows_error_and_app_keeps_working(
    make_app: AppFactory, app_index_dir: Path, original_png: Callable[[str], bytes]
) -> None:
    at = _ok(make_app(app_index_dir).run())
    at.file_uploader(key="search-upload").set_value(("notes.txt", b"not an image", "text/plain"))
    _ok(at.run())
    assert "notes.txt is not an image" in at.error[0].value
    assert _card_ids(at) == []
    target = open_index(app_index_dir).image_ids()[0]
    at.file_uploader(key="search-upload").set_value(("scan.png", original_png(target), "image/png"))
    _ok(at.run())
    assert len(at.error) == 0 and len(_card_ids(at)) > 0


def test_text_search_with_k_and_metadata_filter(make_app: AppFactory, app_index_dir: Path) -> None:
    index = open_index(app_index_dir)
    modality = index.hit(0).extra["modality"]
    at = _ok(make_app(app_index_dir).run())
    at.radio(key="search-kind").set_value("Text")
    _ok(at.run())
    assert at.sidebar.selectbox(key="search-mode-text").value == DEFAULTS.retrieval.text_mode
    at.text_input(key="search-text").input(f"{modality} image showing a nodule")
    at.sidebar.slider(key="search-k").set_value(5)
    at.sidebar.multiselect(key="search-filter-on").set_value(["modality"])
    _ok(at.run())
    at.sidebar.multiselect(key="search-filter-modality").set_value([modality])
    _ok(at.run())
    ids = _card_ids(at)
    expected = sum(1 for r in range(len(index)) if index.hit(r).extra["modality"] == modality)
    assert len(ids) == min(5, expected)
    assert all(index.item(i).extra["modality"] == modality for i in ids)


# ---- case ---------------------------------------------------------------------------


def test_case_page_shows_case_and_its_neighbours(make_app: AppFactory, app_index_dir: Path) -> None:
    index = open_index(app_index_dir)
    case_id = index.image_ids()[3]
    at = make_app(app_index_dir).run()
    at.switch_page("app_pages/case.py")
    at.query_params["id"] = case_id
    _ok(at.run())
    assert at.title[0].value == case_id
    assert index.item(case_id).caption in [m.value for m in at.markdown]
    neighbours = _card_ids(at)
    assert len(neighbours) == min(DEFAULTS.app.k, len(index) - 1)
    assert case_id not in neighbours  # a case is not its own neighbour
    # Next moves to the following case in index order.
    at.button[1].click()
    _ok(at.run())
    assert at.title[0].value == index.image_ids()[4]


def test_unknown_case_id_falls_back_with_a_message(
    make_app: AppFactory, app_index_dir: Path
) -> None:
    at = make_app(app_index_dir).run()
    at.switch_page("app_pages/case.py")
    at.query_params["id"] = "no-such-case"
    _ok(at.run())
    assert "no-such-case" in at.error[0].value
    assert at.title[0].value == open_index(app_index_dir).image_ids()[0]


# ---- caption ------------------------------------------------------------------------


def test_consensus_caption_of_indexed_case_shows_neighbours_and_prompt(
    make_app: AppFactory, app_index_dir: Path
) -> None:
    index = open_index(app_index_dir)
    case_id = index.image_ids()[5]
    at = make_app(app_index_dir).run()
    at.switch_page("app_pages/caption.py")
    at.query_params["id"] = case_id  # as linked from the case page
    _ok(at.run())
    assert at.radio(key="caption-source").value == "Indexed case"
    assert at.text_input(key="caption-case").value == case_id
    at.sidebar.slider(key="caption-k").set_value(4)
    _ok(at.run())
    at.button[0].click()
    _ok(at.run())
    neighbours = _card_ids(at)
    assert len(neighbours) == 4 and case_id not in neighbours
    generated = at.success[0].value
    neighbour_captions = {index.item(i).caption for i in neighbours}
    assert generated in neighbour_captions  # consensus copies one neighbour's caption
    prompt = at.code[0].value
    assert all(c in prompt for c in neighbour_captions)
    assert any(index.item(case_id).caption in m.value for m in at.markdown)  # the original


# ---- dataset ------------------------------------------------------------------------


def test_dataset_page_counts_cases(make_app: AppFactory, app_index_dir: Path) -> None:
    index = open_index(app_index_dir)
    at = make_app(app_index_dir).run()
    at.switch_page("app_pages/dataset.py")
    _ok(at.run())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cases"] == f"{len(index):,}"
    splits = {index.hit(r).split for r in range(len(index))}
    assert metrics["Splits"] == str(len(splits))
    assert at.selectbox(key="dataset-column").value == "modality"


# ---- benchmarks ---------------------------------------------------------------------


def test_benchmarks_page_renders_a_report(
    make_app: AppFactory, app_index_dir: Path, tmp_path: Path
) -> None:
    path = write_caption_report(tmp_path / "run")
    at = make_app(app_index_dir, reports=(tmp_path,)).run()
    at.switch_page("app_pages/benchmark.py")
    at.query_params["report"] = str(path)
    _ok(at.run())
    report = json.loads(path.read_text())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["BLEU-1"] == f"{report['metrics']['BLEU-1']:.4f}"
    assert len(at.image) >= 1  # the metric bar plot
    assert any("BLEU-1" in m.value and "|" in m.value for m in at.markdown)  # the table


def test_benchmarks_page_works_without_index_and_survives_a_bad_path(
    make_app: AppFactory, tmp_path: Path
) -> None:
    at = make_app(None, reports=(tmp_path,)).run()
    at.switch_page("app_pages/benchmark.py")
    at.query_params["report"] = str(tmp_path / "nope.json")
    _ok(at.run())
    assert at.title[0].value == "Benchmarks"
    assert "does not exist" in at.error[0].value
