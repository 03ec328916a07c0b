"""The browser's plain logic (no Streamlit): cases, search with filters, summaries, reports."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medcap.app import queries
from medcap.app.captioning import caption_query
from medcap.app.report_access import ReportAccess
from medcap.app.reports import find_reports, markdown_blocks, open_report_view
from medcap.app.session import AppIndex, AppLoadError, open_app_index
from medcap.app.summary import summarise_cases
from medcap.config import DEFAULTS
from medcap.errors import ImageDecodeError, InputError
from tests.app.conftest import png_bytes, write_caption_report


@pytest.fixture(scope="module")
def app_index(app_index_dir: Path) -> AppIndex:
    return open_app_index(app_index_dir, device="cpu")


def _text_column(app: AppIndex) -> str:
    text = [c for c, kind in app.cases.column_kinds.items() if kind == "text"]
    return "modality" if "modality" in text else text[0]


# ---- the case table -----------------------------------------------------------------


def test_case_table_mirrors_the_index(app_index: AppIndex) -> None:
    index, cases = app_index.retriever.index, app_index.cases
    assert len(cases) == len(index) and cases.ids == index.image_ids()
    for image_id in cases.ids[:: max(1, len(cases) // 7)]:
        hit, info = index.item(image_id), cases.info(image_id)
        assert (info.caption, info.cuis, info.split) == (hit.caption, hit.cuis, hit.split)
        assert set(info.metadata) <= set(hit.extra)
        card = cases.card_metadata(image_id)
        assert len(card) <= 5 and all(cases.column_kinds[k] == "text" for k in card)
        assert all(info.metadata[k] == v for k, v in card.items())
    column = _text_column(app_index)
    first = cases.ids[0]
    assert list(cases.card_metadata(first, (column, "no-such-field"))) == [column]
    assert "no-such-id" not in cases
    with pytest.raises(InputError, match="no-such-id"):
        cases.info("no-such-id")


def test_filters_offer_categories_not_numbers(app_index: AppIndex) -> None:
    cases = app_index.cases
    values = cases.filter_values(40)
    assert _text_column(app_index) in values
    for column, options in values.items():
        assert column == "split" or cases.column_kinds[column] != "number"
        assert 2 <= len(options) <= 40 and options == sorted(options)


def test_matching_ids_equals_brute_force(app_index: AppIndex) -> None:
    cases = app_index.cases
    column = _text_column(app_index)
    value = cases.filter_values(40)[column][0]
    expected = {i for i in cases.ids if cases.info(i).metadata.get(column) == value}
    assert cases.matching_ids({column: [value]}) == expected
    assert cases.matching_ids({column: []}) is None  # an empty choice means "any"


def test_images_thumbnails_and_vectors(app_index: AppIndex) -> None:
    cases, index = app_index.cases, app_index.retriever.index
    image_id = cases.ids[1]
    image = cases.image(image_id)
    assert image.mode == "RGB" and min(image.size) > 0
    thumb = cases.thumbnail(image_id, 48)
    assert max(thumb.size) <= 48
    assert cases.thumbnail(image_id, 48) is thumb  # cached
    row = cases.position(image_id)
    np.testing.assert_allclose(
        cases.vector(image_id, "images")[0], index.embeddings("images")[row], atol=1e-6
    )


# ---- search -------------------------------------------------------------------------


def test_filtered_search_equals_filtering_the_full_ranking(app_index: AppIndex) -> None:
    cases = app_index.cases
    column = _text_column(app_index)
    # The rarest value makes the search fetch deeper than k.
    value = min(cases.filter_values(40)[column], key=cases.column(column).count)
    image = cases.image(cases.ids[0])
    k = 3
    cards = queries.search_cases(
        app_index, image=image, k=k, mode="images", filters={column: [value]}
    )
    full = queries.search_cases(app_index, image=image, k=len(cases), mode="images")
    expected = [c.image_id for c in full if cases.info(c.image_id).metadata.get(column) == value]
    assert [c.image_id for c in cards] == expected[:k]
    assert [c.rank for c in cards] == list(range(1, len(cards) + 1))


def test_filter_keeping_every_case_matches_the_index_search(app_index: AppIndex) -> None:
    cases = app_index.cases
    everything = {"split": sorted(set(cases.column("split")))}
    for mode in ("images", "captions"):
        text = cases.info(cases.ids[9]).caption
        plain = queries.search_cases(app_index, text=text, k=7, mode=mode)
        filtered = queries.search_cases(app_index, text=text, k=7, mode=mode, filters=everything)
        assert [c.image_id for c in filtered] == [c.image_id for c in plain]
        assert [c.score for c in filtered] == pytest.approx([c.score for c in plain], abs=1e-5)


def test_search_by_own_image_ranks_itself_first(
    app_index: AppIndex, original_png: Callable[[str], bytes]
) -> None:
    cases = app_index.cases
    image_id = cases.ids[4]
    upload = queries.decode_upload("q.png", original_png(image_id))
    cards = queries.search_cases(app_index, image=upload, k=5, mode="images", thumbnail_px=64)
    assert cards[0].image_id == image_id and cards[0].score == pytest.approx(1.0, abs=1e-3)
    scores = [c.score for c in cards]
    assert scores == sorted(scores, reverse=True)
    assert all(c.thumbnail is not None and max(c.thumbnail.size) <= 64 for c in cards)


def test_empty_text_query_returns_nothing(app_index: AppIndex) -> None:
    assert queries.search_cases(app_index, text="   ", k=5, mode="images") == []


def test_case_neighbours_exclude_the_case_and_follow_the_index(app_index: AppIndex) -> None:
    cases, index = app_index.cases, app_index.retriever.index
    image_id = cases.ids[2]
    cards = queries.case_neighbours(app_index, image_id, k=6, mode="captions")
    assert image_id not in [c.image_id for c in cards] and len(cards) == 6
    vector = index.embeddings("images")[cases.position(image_id)][None, :]
    hits = index.search(vector, 6, target="captions", exclude_ids=[image_id])[0]
    assert [c.image_id for c in cards] == [h.image_id for h in hits]


def test_uploads_decode_png_and_dicom_and_refuse_other_files() -> None:
    from PIL import Image
    from pydicom.data import get_testdata_file

    gray = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    assert queries.decode_upload("scan.png", png_bytes(gray)).mode == "RGB"
    dicom = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    decoded = queries.decode_upload("ct", dicom)  # no suffix: recognised by content
    assert decoded.mode == "RGB" and decoded.size == (128, 128)
    with pytest.raises(ImageDecodeError, match=r"^notes\.txt is not an image .*PNG, JPEG or DICOM"):
        queries.decode_upload("notes.txt", b"hello")
    with pytest.raises(ImageDecodeError, match="empty"):
        queries.decode_upload("empty.png", b"")
    assert queries.upload_id("a.png", b"1") == queries.upload_id("a.png", b"1")
    assert queries.upload_id("a.png", b"1") != queries.upload_id("a.png", b"2")


def test_opening_a_missing_index_is_a_missing_problem(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError) as info:
        open_app_index(tmp_path / "nothing")
    assert info.value.kind == "missing" and "medcap index build" in str(info.value)


# ---- caption, dataset, reports --------------------------------------------------------


def test_consensus_caption_keeps_its_evidence(app_index: AppIndex) -> None:
    from medcap.config import DEFAULTS
    from medcap.generation.captioning import build_backend

    cases = app_index.cases
    image_id = cases.ids[6]
    result = caption_query(
        app_index, build_backend(DEFAULTS.generation), cases.image(image_id),
        image_id=image_id, cfg=DEFAULTS.generation,
    )  # fmt: skip
    ids = [c.image_id for c in result.neighbours]
    assert image_id not in ids and len(ids) == DEFAULTS.generation.k
    assert list(result.prompt.neighbour_ids) == ids
    assert result.caption.text in [c.caption for c in result.neighbours]
    assert result.reference == cases.info(image_id).caption


def test_dataset_summary_counts(app_index: AppIndex) -> None:
    cases = app_index.cases
    summary = summarise_cases(cases)
    assert summary.total == len(cases) == sum(summary.per_split.values())
    column = _text_column(app_index)
    assert summary.per_value[column] == dict(Counter(cases.column(column)))
    labels, counts = summary.caption_histogram()
    assert sum(counts) == len(cases) and len(labels) == len(counts)
    words = [len(c.split()) for c in cases.captions()]
    assert summary.caption_words.tolist() == words
    assert labels[0].strip().split("-")[0] == str(min(words))  # bins start at the shortest


def test_markdown_blocks_split_out_plots(tmp_path: Path) -> None:
    text = (
        "# Title\n\nsome text\n\n![Recall curves](recall.png)\n\n## Part\n| a |\n| --- |\n| 1 |\n"
    )
    blocks = markdown_blocks(text, tmp_path)
    assert [b.kind for b in blocks] == ["markdown", "image", "markdown"]
    assert blocks[0].text.startswith("## Title")  # headings move down one level
    assert (
        blocks[1].image == (tmp_path / "recall.png").resolve() and blocks[1].text == "Recall curves"
    )
    assert "### Part" in blocks[2].text


def test_report_view_reuses_or_renders_markdown(tmp_path: Path) -> None:
    path = write_caption_report(tmp_path / "run")
    access = ReportAccess.of([tmp_path], DEFAULTS.app.max_report_mb)
    view = open_report_view(path.parent, access)  # the folder works too
    assert view.kind == "captions" and view.path == path.resolve()
    assert "BLEU-1" in view.headline
    images = [b.image for b in view.blocks if b.kind == "image"]
    assert images and all(p is not None and p.exists() and p.parent == path.parent for p in images)
    # A report.md older than its report.json is not trusted: render into a scratch folder.
    md = path.with_name("report.md")
    old = time.time() - 60
    os.utime(md, (old, old))
    fresh = open_report_view(path, access, scratch=tmp_path / "scratch")
    assert all(b.image.parent == tmp_path / "scratch" for b in fresh.blocks if b.image)
    with pytest.raises(InputError, match="does not exist"):
        open_report_view(tmp_path / "missing" / "report.json", access)


def test_find_reports_lists_report_files_newest_first(tmp_path: Path) -> None:
    older = write_caption_report(tmp_path / "a")
    newer = write_caption_report(tmp_path / "b" / "deeper")
    os.utime(older, (time.time() - 100, time.time() - 100))
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "report.json").write_text("{}")  # skipped folder
    access = ReportAccess.of([tmp_path], DEFAULTS.app.max_report_mb)
    assert find_reports(access) == [newer.resolve(), older.resolve()]
