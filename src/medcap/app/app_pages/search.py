"""Search page: upload an image or type a description; see the most similar indexed cases."""

from __future__ import annotations

import streamlit as st

from medcap.app import queries, resources, views
from medcap.config import current
from medcap.errors import MedcapError

cfg = current().app
app = resources.require_index()

st.title("Similar-case search")
query_col, preview_col = st.columns([3, 1], gap="large")
with query_col:
    kind = st.radio("Query by", ["Image", "Text"], horizontal=True, key="search-kind")
    image, text = None, None
    if kind == "Image":
        upload = st.file_uploader("Upload a case image (PNG, JPEG or DICOM)", key="search-upload")
        if upload is not None:
            data = upload.getvalue()
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

try:
    cards = queries.search_cases(
        app, image=image, text=text, k=k, mode=mode, filters=filters, thumbnail_px=cfg.thumbnail_px
    )
except Exception as exc:  # noqa: BLE001 - shown in the page; the app keeps working
    views.show_error(exc)
    st.stop()

if not cards:
    st.warning("No indexed case matches the filters.", icon=":material/filter_alt_off:")
else:
    st.subheader(f"Top {len(cards)} of {len(app.cases):,} cases")
    views.render_cards(cards, columns=cfg.columns, key="search")
