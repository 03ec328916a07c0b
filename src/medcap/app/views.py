"""Small Streamlit view helpers shared by the pages (rendering only, no logic)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from medcap.app.cards import CaseCard
from medcap.app.remote import AnyIndex
from medcap.config import SearchMode, current
from medcap.errors import MedcapError

CASE_PAGE = "app_pages/case.py"  # relative to main.py, as st.navigation registers it
CAPTION_PAGE = "app_pages/caption.py"
MODE_LABELS = {"images": "images (look alike)", "captions": "captions (described alike)"}


def render_cards(
    cards: Sequence[CaseCard], *, columns: int, key: str, feedback: bool = False
) -> None:
    """A grid of result cards, `columns` per row; each links to its case page. With
    `feedback`, each card has more-like / less-like buttons (see `feedback_marks`)."""
    for start in range(0, len(cards), columns):
        row = st.columns(columns, gap="medium")
        for col, card in zip(row, cards[start : start + columns], strict=False):
            with col, st.container(border=True, key=f"{key}-card-{start}-{card.image_id}"):
                _render_card(card)
                if feedback:
                    _feedback_buttons(card.image_id, key)


def feedback_marks(key: str) -> tuple[list[str], list[str]]:
    """The image_ids marked more-like and less-like on the cards of `key` (session state)."""
    more = st.session_state.setdefault(f"{key}-more-like", [])
    less = st.session_state.setdefault(f"{key}-less-like", [])
    return more, less


def clear_feedback(key: str) -> None:
    """Forget the more-like / less-like marks of `key`."""
    st.session_state[f"{key}-more-like"] = []
    st.session_state[f"{key}-less-like"] = []


def _mark(key: str, image_id: str, more: bool) -> None:
    marked, other = feedback_marks(key) if more else feedback_marks(key)[::-1]
    if image_id in other:
        other.remove(image_id)
    if image_id not in marked:
        marked.append(image_id)


def _feedback_buttons(image_id: str, key: str) -> None:
    more, less = feedback_marks(key)
    left, right = st.columns(2)
    left.button(
        "More like this" + (" ✓" if image_id in more else ""),
        key=f"{key}-more-{image_id}",
        icon=":material/thumb_up:",
        on_click=_mark,
        args=(key, image_id, True),
    )
    right.button(
        "Less like this" + (" ✓" if image_id in less else ""),
        key=f"{key}-less-{image_id}",
        icon=":material/thumb_down:",
        on_click=_mark,
        args=(key, image_id, False),
    )


def _render_card(card: CaseCard) -> None:
    if card.thumbnail is not None:
        st.image(card.thumbnail, width="stretch")
    else:
        st.warning(card.thumbnail_error or "no image", icon=":material/broken_image:")
    headline = card.headline()
    st.markdown(f"**{headline}**" if headline else f"**{card.image_id}**")
    st.markdown(card.caption or "_(no caption)_")
    meta = card.metadata_line()
    if meta:
        st.caption(meta)
    if card.cuis:
        st.caption("CUIs: " + " ".join(f"`{c}`" for c in card.cuis))
    st.page_link(
        CASE_PAGE,
        label=f"Open {card.image_id}",
        icon=":material/open_in_new:",
        query_params={"id": card.image_id},
    )
    if card.viewer_url:
        st.link_button("Open in viewer", card.viewer_url, icon=":material/visibility:")


def search_settings(
    app: AnyIndex, *, default_mode: SearchMode, key: str, mode_key: str | None = None
) -> tuple[int, SearchMode, dict[str, list[str]]]:
    """Sidebar controls: k, what to match against, metadata filters (widget keys `key-*`)."""
    cfg = current().app
    with st.sidebar:
        st.subheader("Search settings")
        k = st.slider("Cases to show", 1, cfg.max_k, cfg.k, key=f"{key}-k")
        modes: list[SearchMode] = ["images", "captions"]
        mode = st.selectbox(
            "Match against the indexed",
            modes,
            index=modes.index(default_mode),
            format_func=MODE_LABELS.__getitem__,
            key=mode_key or f"{key}-mode",
        )
        filters: dict[str, list[str]] = {}
        options = app.cases.filter_values(cfg.filter_max_values)
        if options:
            st.subheader("Filters")
            columns = st.multiselect(
                "Filter on",
                list(options),
                format_func=_label,
                key=f"{key}-filter-on",
                placeholder="choose metadata columns",
            )
            for column in columns:
                chosen = st.multiselect(
                    _label(column), options[column], key=f"{key}-filter-{column}", placeholder="any"
                )
                if chosen:
                    filters[column] = chosen
            numbers = [n for n, kind in app.cases.column_kinds.items() if kind == "number"]
            if numbers:
                ranged = st.multiselect(
                    "Number ranges on",
                    numbers,
                    format_func=_label,
                    key=f"{key}-range-on",
                    placeholder="choose number columns",
                )
                for column in ranged:
                    text = st.text_input(
                        f"{_label(column)} range",
                        placeholder="lo..hi, ..hi or lo..",
                        key=f"{key}-range-{column}",
                    )
                    if text.strip():
                        filters[column] = [text.strip()]
    return k, mode, filters


def _label(column: str) -> str:
    return column.replace("_", " ").capitalize()


def show_error(exc: BaseException) -> None:
    """An error box for a failed interaction; the rest of the page keeps working."""
    text = str(exc) if isinstance(exc, MedcapError) else f"{type(exc).__name__}: {exc}"
    st.error(text, icon=":material/error:")
