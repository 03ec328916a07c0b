"""Case page: one indexed case in full, and its own nearest neighbours (browse case to case)."""

from __future__ import annotations

import streamlit as st

from medcap.app import queries, resources, views
from medcap.config import current
from medcap.errors import MedcapError

cfg = current().app
app = resources.require_index()
cases = app.cases

requested = st.query_params.get("id")
if requested is not None and requested not in cases:
    views.show_error(KeyError(f"no case {requested!r} in this index; showing the first case"))
    requested = None
image_id = requested or cases.ids[0]
position = cases.position(image_id)

nav = st.columns([1, 1, 4], vertical_alignment="bottom")
if nav[0].button("Previous", icon=":material/arrow_back:", disabled=position == 0):
    st.query_params["id"] = cases.ids[position - 1]
    st.rerun()
if nav[1].button("Next", icon=":material/arrow_forward:", disabled=position + 1 >= len(cases)):
    st.query_params["id"] = cases.ids[position + 1]
    st.rerun()
with nav[2].form("case-go", border=False):
    go_cols = st.columns([4, 1], vertical_alignment="bottom")
    typed = go_cols[0].text_input("Go to case id", placeholder=image_id)
    if go_cols[1].form_submit_button("Open") and typed.strip():
        if typed.strip() in cases:
            st.query_params["id"] = typed.strip()
            st.rerun()
        views.show_error(KeyError(f"no case {typed.strip()!r} in this index"))

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
