"""Shown instead of the browser when no usable index is open: why, and how to build one."""

from __future__ import annotations

import streamlit as st

from medcap.app import resources

st.title("medcap: similar-case browser")
_, problem = resources.index_or_problem()
resources.show_problem(problem)
