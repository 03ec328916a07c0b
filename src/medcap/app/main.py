"""Streamlit entry script of `medcap app`: page setup and navigation, nothing else.

Started by `medcap app --index DIR` as `streamlit run main.py -- --index DIR`.
"""

from __future__ import annotations

import streamlit as st

from medcap.app import resources

st.set_page_config(page_title="medcap: similar cases", page_icon="🩻", layout="wide")
resources.apply_settings()

_PAGES = "app_pages"
loaded, problem = resources.index_or_problem()
if loaded is not None:
    pages = [
        st.Page(f"{_PAGES}/search.py", title="Search", icon=":material/search:", default=True),
        st.Page(f"{_PAGES}/case.py", title="Case", icon=":material/radiology:"),
        st.Page(f"{_PAGES}/caption.py", title="Caption", icon=":material/edit_note:"),
        st.Page(f"{_PAGES}/benchmark.py", title="Benchmarks", icon=":material/monitoring:"),
        st.Page(f"{_PAGES}/dataset.py", title="Dataset", icon=":material/bar_chart:"),
    ]
else:
    # Without a usable index only the pages that need none are offered.
    pages = [
        st.Page(f"{_PAGES}/setup.py", title="Get started", icon=":material/build:", default=True),
        st.Page(f"{_PAGES}/benchmark.py", title="Benchmarks", icon=":material/monitoring:"),
    ]
page = st.navigation(pages)
resources.render_sidebar(loaded, problem)
page.run()
