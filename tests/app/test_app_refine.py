"""The search page's refinements through Streamlit's AppTest on the phantom index: a region,
more-like / less-like buttons on the cards, and number ranges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from medcap.index import open_index
from medcap.retrieval.retriever import open_retriever
from tests.app.conftest import AppFactory
from tests.app.test_app_pages import _card_ids, _ok


def _upload(at: AppTest, data: bytes) -> AppTest:
    at.sidebar.selectbox(key="search-mode-image").set_value("images")
    at.file_uploader(key="search-upload").set_value(("query.png", data, "image/png"))
    return _ok(at.run())


def test_region_and_feedback_buttons_refine_the_search(
    make_app: AppFactory, app_index_dir: Path, original_png: Callable[[str], bytes]
) -> None:
    index = open_index(app_index_dir)
    target = index.image_ids()[11]
    data = original_png(target)
    at = _upload(_ok(make_app(app_index_dir).run()), data)
    plain = _card_ids(at)
    assert plain[0] == target

    at.checkbox(key="search-roi-on").check()
    _ok(at.run())
    assert at.number_input(key="search-roi-w").value == at.number_input(key="search-roi-h").value
    at.number_input(key="search-roi-w").set_value(20)
    at.number_input(key="search-roi-h").set_value(20)
    _ok(at.run())
    retriever = open_retriever(app_index_dir, device="cpu")
    expected = retriever.search(data, len(plain), mode="images", roi=(0, 0, 20, 20))[0]
    assert _card_ids(at) == [h.image_id for h in expected]
    at.checkbox(key="search-roi-on").uncheck()
    _ok(at.run())

    last = plain[-1]
    at.button(key=f"search-more-{last}").click()
    _ok(at.run())
    at.button(key=f"search-less-{plain[1]}").click()
    _ok(at.run())
    fed = _card_ids(at)
    reference = retriever.search(
        data, len(plain), mode="images", more_like=[last], less_like=[plain[1]]
    )[0]
    assert fed == [h.image_id for h in reference] and fed.index(last) < len(plain) - 1
    at.button(key="search-clear-marks").click()
    _ok(at.run())
    assert _card_ids(at) == plain


def test_number_range_filter(make_app: AppFactory, app_index_dir: Path) -> None:
    at = _ok(make_app(app_index_dir).run())
    at.radio(key="search-kind").set_value("Text")
    _ok(at.run())
    at.text_input(key="search-text").input("CT of the chest showing a nodule")
    at.sidebar.multiselect(key="search-range-on").set_value(["size_cm"])
    _ok(at.run())
    at.sidebar.text_input(key="search-range-size_cm").input("1..2")
    _ok(at.run())
    index = open_index(app_index_dir)
    ids = _card_ids(at)
    assert ids and all(1 <= index.item(i).extra["size_cm"] <= 2 for i in ids)
