"""Benchmarks page: render an evaluation report.json (tables, recall curves, example grids).

Reports are read only from the folders the server was started with (`--reports`, default:
the index directory); see medcap.app.report_access.
"""

from __future__ import annotations

import streamlit as st

from medcap.app import resources, views
from medcap.app.reports import find_reports
from medcap.errors import MedcapError

_OTHER = "Another path..."

st.title("Benchmarks")
access = resources.report_access()
folders = ", ".join(f"`{root}`" for root in access.roots) or "no report folders"

requested = st.query_params.get("report")
found = [str(p) for p in find_reports(access)]
if requested:
    choice = requested
else:
    options = [*found, _OTHER]
    choice = st.selectbox(
        f"Reports found under {folders}" if found else f"No report.json found under {folders}",
        options,
        key="benchmark-choice",
    )
    if choice == _OTHER:
        choice = st.text_input(
            "Path to a report.json (or the folder holding it) under the report folders",
            placeholder="eval/report.json",
            key="benchmark-path",
        ).strip()
if not choice:
    st.info(
        "Write a report with `medcap eval retrieval ...` (or `medcap demo`) into a folder "
        "given with `medcap app --reports DIR`, then choose it here.",
        icon=":material/info:",
    )
    st.stop()

try:
    json_path = access.locate(choice)
    view = resources.load_report_view(
        str(json_path),
        tuple(str(root) for root in access.roots),
        access.max_bytes / (1024 * 1024),
        json_path.stat().st_mtime_ns,
    )
except MedcapError as exc:
    views.show_error(exc)
    st.stop()

st.caption(" · ".join(filter(None, [f"`{view.path}`", f"{view.kind} report", view.headline_note])))
if view.headline:
    for col, (label, value) in zip(
        st.columns(len(view.headline)), view.headline.items(), strict=True
    ):
        col.metric(label, value)
for block in view.blocks:
    if block.kind == "image":
        if block.image is not None and block.image.exists():
            st.image(str(block.image), caption=block.text or None)
        else:
            name = block.image.name if block.image is not None else block.text
            st.warning(f"plot {name} is missing or outside the report folders",
                       icon=":material/broken_image:")  # fmt: skip
    else:
        st.markdown(block.text)
