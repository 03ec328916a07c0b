"""Streamlit entry script of `medcap app`: page setup and navigation, nothing else.

Started by `medcap app --index DIR` as `streamlit run main.py -- --index DIR`, or by
`medcap app --api URL` (a running `medcap serve`) as `... -- --api URL`.
"""

from __future__ import annotations

import streamlit as st

from medcap.app import resources
from medcap.app.remote import RemoteIndex

st.set_page_config(page_title="medcap: similar cases", page_icon="🩻", layout="wide")
resources.apply_settings()

_PAGES = "app_pages"
search = st.Page(f"{_PAGES}/search.py", title="Search", icon=":material/search:", default=True)
case = st.Page(f"{_PAGES}/case.py", title="Case", icon=":material/radiology:")
caption = st.Page(f"{_PAGES}/caption.py", title="Caption", icon=":material/edit_note:")
benchmark = st.Page(f"{_PAGES}/benchmark.py", title="Benchmarks", icon=":material/monitoring:")
dataset = st.Page(f"{_PAGES}/dataset.py", title="Dataset", icon=":material/bar_chart:")
setup = st.Page(f"{_PAGES}/setup.py", title="Get started", icon=":material/build:", default=True)
loaded, problem = resources.index_or_problem()
if isinstance(loaded, RemoteIndex):
    # through a service: searching and cases; the other pages need the index in this process
    pages = [search, case, benchmark]
elif loaded is not None:
    pages = [search, case, caption, benchmark, dataset]
else:
    # Without a usable index only the pages that need none are offered.
    pages = [setup, benchmark]
page = st.navigation(pages)
resources.render_sidebar(loaded, problem)
page.run()
