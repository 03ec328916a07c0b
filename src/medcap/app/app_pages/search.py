"""Search page: upload an image or type a description; see the most similar indexed cases.

Refine the search: a region of the image (x, y, w, h), words that steer the image, and
more-like / less-like marks on the result cards (one feedback round per search).
"""

from __future__ import annotations

import streamlit as st

from medcap.app import queries, resources, views
from medcap.config import current
from medcap.errors import MedcapError
from medcap.retrieval import Refinement

cfg = current().app
app = resources.require_index()

st.title("Similar-case search")
query_col, preview_col = st.columns([3, 1], gap="large")
with query_col:
    kind = st.radio("Query by", ["Image", "Text"], horizontal=True, key="search-kind")
    image, text, upload_key = None, None, None
    if kind == "Image":
        upload = st.file_uploader("Upload a case image (PNG, JPEG or DICOM)", key="search-upload")
        if upload is not None:
            data = upload.getvalue()
            upload_key = queries.upload_id(upload.name, data)
            try:
                image = queries.decode_upload(upload.name, data)
            except MedcapError as exc:
                views.show_error(exc)
    else:
        text = st.text_input(
            "Describe the case",
            placeholder="e.g. axial CT of the chest showing a nodule in the right upper lobe",
            key="search-text",
        )
# Images default to image -> caption search, texts to text -> image search (config).
default_mode = current().retrieval.mode if kind == "Image" else current().retrieval.text_mode
k, mode, filters = views.search_settings(
    app, default_mode=default_mode, key="search", mode_key=f"search-mode-{kind.lower()}"
)
if image is not None:
    with preview_col:
        st.image(image, caption="Query", width="stretch")

if image is None and not (text and text.strip()):
    st.info("Upload an image or type a description to search the index.", icon=":material/info:")
    st.stop()

# marks belong to one query: a new upload or text starts without them
query_key = repr((kind, image.size if image is not None else None, text, upload_key))
if st.session_state.get("search-query-key") != query_key:
    st.session_state["search-query-key"] = query_key
    views.clear_feedback("search")
more_like, less_like = views.feedback_marks("search")
roi, roi_weight, steer, text_weight = None, None, None, None
refine_cfg = current().refine
if image is not None:
    with query_col.expander("Refine: region and words", icon=":material/crop:"):
        if st.checkbox("Search a region of the image", key="search-roi-on"):
            x_col, y_col, w_col, h_col = st.columns(4)
            x = x_col.number_input("x", 0, image.width - 1, 0, key="search-roi-x")
            y = y_col.number_input("y", 0, image.height - 1, 0, key="search-roi-y")
            w = w_col.number_input("width", 1, image.width, image.width, key="search-roi-w")
            h = h_col.number_input("height", 1, image.height, image.height, key="search-roi-h")
            roi = (int(x), int(y), int(w), int(h))
            roi_weight = st.slider(
                "Region's share (1: the region alone)", 0.0, 1.0, refine_cfg.roi_weight,
                key="search-roi-weight",
            )  # fmt: skip
        steer = st.text_input(
            "Steer with words", placeholder="e.g. with contrast, with a fracture",
            key="search-steer",
        ).strip() or None  # fmt: skip
        if steer:
            text_weight = st.slider(
                "Words' share", 0.0, 1.0, refine_cfg.text_weight, key="search-text-weight"
            )
if more_like or less_like:
    with query_col:
        st.caption(
            f"Feedback: more like {', '.join(more_like) or '-'}; "
            f"less like {', '.join(less_like) or '-'}"
        )
        st.button(
            "Clear marks", key="search-clear-marks", on_click=views.clear_feedback, args=("search",)
        )

try:
    refine = Refinement(
        roi=roi, roi_weight=roi_weight, text=steer, text_weight=text_weight,
        more_like=tuple(more_like), less_like=tuple(less_like),
    )  # fmt: skip
    cards = queries.search_cases(
        app, image=image, text=text, k=k, mode=mode, filters=filters,
        thumbnail_px=cfg.thumbnail_px, refine=refine,
    )  # fmt: skip
except Exception as exc:  # noqa: BLE001 - shown in the page; the app keeps working
    views.show_error(exc)
    st.stop()

if not cards:
    st.warning("No indexed case matches the filters.", icon=":material/filter_alt_off:")
else:
    st.subheader(f"Top {len(cards)} of {len(app.cases):,} cases")
    views.render_cards(cards, columns=cfg.columns, key="search", feedback=True)
