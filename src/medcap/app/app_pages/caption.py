"""Caption page: generate a caption for an image, showing the neighbours and prompt used."""

from __future__ import annotations

import dataclasses

import streamlit as st

from medcap.app import captioning, queries, resources, views
from medcap.config import SearchMode, current
from medcap.errors import MedcapError
from medcap.generation.backends.base import backend_class, backend_names
from medcap.generation.prompt import list_templates

gen = current().generation
cfg = current().app
app = resources.local_index()
st.title("Retrieval-augmented caption")

with st.sidebar:
    st.subheader("Generation settings")
    names = backend_names()
    backend_name = st.selectbox(
        "Backend", names, index=names.index(gen.backend), key="caption-backend"
    )
    chosen = backend_class(backend_name)
    model_id, adapter = "", ""
    if chosen.default_model:  # a backend that runs a model
        model_id = st.text_input(
            "Model id or local path", value=chosen.default_model, key="caption-model"
        )
        adapter = st.text_input("LoRA adapter directory (optional)", key="caption-adapter")
    k = st.slider("Neighbours in the prompt", 1, 20, gen.k, key="caption-k")
    templates = list_templates()
    default_template = gen.template or chosen.default_template
    template = st.selectbox(
        "Prompt template",
        templates,
        index=templates.index(default_template) if default_template in templates else 0,
        key="caption-template",
    )
    modes: list[SearchMode] = ["captions", "images"]
    mode = st.selectbox(
        "Find neighbours among the indexed",
        modes,
        index=modes.index(gen.search_mode),
        format_func=views.MODE_LABELS.__getitem__,
        key="caption-mode",
    )

linked_id = st.query_params.get("id")  # from the case page's "Caption this case"
source = st.radio(
    "Image to caption",
    ["Upload", "Indexed case"],
    index=1 if linked_id else 0,
    horizontal=True,
    key="caption-source",
)
image, image_id, query_key = None, None, ""
if source == "Upload":
    upload = st.file_uploader("Upload an image (PNG, JPEG or DICOM)", key="caption-upload")
    if upload is not None:
        query_key = queries.upload_id(upload.name, upload.getvalue())
        try:
            image = queries.decode_upload(upload.name, upload.getvalue())
        except MedcapError as exc:
            views.show_error(exc)
else:
    default_id = linked_id or app.cases.ids[0]
    typed = st.text_input("Case id", value=default_id, key="caption-case").strip()
    if typed not in app.cases:
        views.show_error(KeyError(f"no case {typed!r} in this index"))
    else:
        image_id = query_key = typed
        try:
            image = app.cases.image(image_id)
        except MedcapError as exc:
            views.show_error(exc)

if image is None:
    st.info("Upload an image or pick an indexed case to caption.", icon=":material/info:")
    st.stop()

image_col, result_col = st.columns([1, 2], gap="large")
with image_col:
    st.image(image, caption=image_id or "uploaded image", width="stretch")
with result_col:
    go = st.button("Generate caption", type="primary", icon=":material/auto_awesome:")
    request = (backend_name, model_id, adapter, k, template, mode, query_key)
    if go:
        run_cfg = dataclasses.replace(
            gen, backend=backend_name, k=k, template=template, search_mode=mode
        )
        try:
            backend = resources.load_backend(backend_name, model_id or None, adapter or None)
            with st.spinner("Retrieving neighbours and generating..."):
                made = captioning.caption_query(
                    app, backend, image, image_id=image_id, cfg=run_cfg,
                    thumbnail_px=cfg.thumbnail_px,
                )  # fmt: skip
            st.session_state["caption-result"] = (request, made)
        except Exception as exc:  # noqa: BLE001 - any backend failure is shown, the app lives on
            views.show_error(exc)
    stored = st.session_state.get("caption-result")
    result: captioning.CaptionResult | None = stored[1] if stored and stored[0] == request else None
    if result is not None:
        st.subheader("Generated caption")
        st.success(result.caption.text or "(empty caption)", icon=":material/description:")
        st.caption(
            f"backend `{result.caption.backend}` · model `{result.caption.model or '-'}` · "
            f"{result.caption.latency_s * 1000:.0f} ms"
        )
        if result.reference is not None:
            st.markdown(f"**Original caption:** {result.reference}")
        with st.expander("Prompt used", expanded=True):
            st.code(result.prompt.text, language=None, wrap_lines=True)
            st.caption(f"template `{result.prompt.template}`")

if result is not None:
    st.subheader(f"Neighbours in the prompt ({len(result.neighbours)})")
    views.render_cards(result.neighbours, columns=cfg.columns, key="caption")
