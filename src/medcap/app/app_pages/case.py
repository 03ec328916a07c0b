"""Case page: one indexed case in full, and its own nearest neighbours (browse case to case)."""

from __future__ import annotations

import streamlit as st

from medcap.app import queries, resources, views
from medcap.app.remote import RemoteIndex
from medcap.config import current
from medcap.errors import MedcapError

cfg = current().app
app = resources.require_index()
cases = app.cases

requested = st.query_params.get("id")
first_id = cases.first_id()  # None through a service: it does not list its cases
if requested is not None and requested not in cases:
    fallback = "; showing the first case" if first_id is not None else ""
    views.show_error(KeyError(f"no case {requested!r} in this index{fallback}"))
    requested = None
image_id = requested or first_id
previous_id, next_id = cases.adjacent(image_id) if image_id is not None else (None, None)

nav = st.columns([1, 1, 4], vertical_alignment="bottom")
back = nav[0].button("Previous", icon=":material/arrow_back:", disabled=previous_id is None)
if back and previous_id is not None:
    st.query_params["id"] = previous_id
    st.rerun()
forward = nav[1].button("Next", icon=":material/arrow_forward:", disabled=next_id is None)
if forward and next_id is not None:
    st.query_params["id"] = next_id
    st.rerun()
with nav[2].form("case-go", border=False):
    go_cols = st.columns([4, 1], vertical_alignment="bottom")
    typed = go_cols[0].text_input("Go to case id", placeholder=image_id or "an image_id")
    if go_cols[1].form_submit_button("Open") and typed.strip():
        if typed.strip() in cases:
            st.query_params["id"] = typed.strip()
            st.rerun()
        views.show_error(KeyError(f"no case {typed.strip()!r} in this index"))
if image_id is None:
    st.info("Open a case from a search result, or type its id.", icon=":material/info:")
    st.stop()

info = cases.info(image_id)
st.title(image_id)
image_col, text_col = st.columns([3, 2], gap="large")
with image_col:
    try:
        note = (
            None
            if cases.has_original(image_id)
            else ("the index's thumbnail: the original image is inside the dataset, not a file")
        )
        st.image(cases.image(image_id), caption=note, width="stretch")
    except MedcapError as exc:
        views.show_error(exc)
with text_col:
    st.subheader("Caption")
    st.markdown(info.caption or "_(no caption)_")
    st.subheader("Details")
    rows = {"split": info.split, **info.metadata}
    if info.cuis:
        rows["CUIs"] = ", ".join(info.cuis)
    st.table(
        {"field": list(rows), "value": [str(v) for v in rows.values()]},
        hide_index=True,
        hide_header=True,
    )
    if not isinstance(app, RemoteIndex):  # the caption page needs the index here
        st.page_link(
            views.CAPTION_PAGE,
            label="Caption this case",
            icon=":material/edit_note:",
            query_params={"id": image_id},
        )

k, mode, filters = views.search_settings(app, default_mode=current().retrieval.mode, key="case")
st.subheader("Nearest neighbours")
try:
    cards = queries.case_neighbours(
        app, image_id, k=k, mode=mode, filters=filters, thumbnail_px=cfg.thumbnail_px
    )
except MedcapError as exc:
    views.show_error(exc)
else:
    views.render_cards(cards, columns=cfg.columns, key="case")
