"""Benchmarks page: render an evaluation report.json (tables, recall curves, example grids)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from medcap.app import resources, views
from medcap.app.reports import find_reports
from medcap.app.session import AppIndex
from medcap.errors import MedcapError

_OTHER = "Another path..."

st.title("Benchmarks")
loaded, _ = resources.index_or_problem()
root = loaded.path.parent if isinstance(loaded, AppIndex) else Path.cwd()

requested = st.query_params.get("report")
found = [str(p) for p in find_reports(root)]
if requested:
    choice = requested
else:
    options = [*found, _OTHER]
    choice = st.selectbox(
        f"Reports found under `{root}`" if found else f"No report.json found under `{root}`",
        options,
        key="benchmark-choice",
    )
    if choice == _OTHER:
        choice = st.text_input(
            "Path to a report.json (or the folder holding it)",
            placeholder="runs/demo/eval/report.json",
            key="benchmark-path",
        ).strip()
if not choice:
    st.info(
        "Write a report with `medcap eval retrieval ...` (or `medcap demo`), then choose it here.",
        icon=":material/info:",
    )
    st.stop()

try:
    path = Path(choice).expanduser()
    json_path = path / "report.json" if path.is_dir() else path
    view = resources.load_report_view(
        str(json_path), json_path.stat().st_mtime_ns if json_path.exists() else 0
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
    if block.kind == "image" and block.image is not None:
        if block.image.exists():
            st.image(str(block.image), caption=block.text or None)
        else:
            st.warning(f"plot {block.image.name} is missing", icon=":material/broken_image:")
    else:
        st.markdown(block.text)
