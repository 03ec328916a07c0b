"""Dataset page: what the index holds (splits, metadata distributions, caption lengths)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from medcap.app import resources
from medcap.app.summary import summarise_cases
from medcap.config import current


def _bars(counts: dict[str, int], label: str) -> None:
    st.bar_chart(
        {label: list(counts), "cases": list(counts.values())},
        x=label, y="cases", horizontal=True, sort=False,
    )  # fmt: skip


app = resources.local_index()
summary = summarise_cases(app.cases, max_values=current().app.filter_max_values)

st.title("Dataset")
st.caption(f"Index `{app.path}`")

cols = st.columns(4)
cols[0].metric("Cases", f"{summary.total:,}")
cols[1].metric("Splits", len(summary.per_split))
cols[2].metric("Distinct CUIs", f"{summary.distinct_cuis:,}")
cols[3].metric("Cases without CUIs", f"{summary.cases_without_cuis:,}")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Cases per split")
    _bars(summary.per_split, "split")
with right:
    st.subheader("Caption length")
    labels, counts = summary.caption_histogram()
    if counts:
        st.bar_chart({"words": labels, "cases": counts}, x="words", y="cases", sort=False)
        words = summary.caption_words
        st.caption(f"median {float(np.median(words)):g} words, range {words.min()}-{words.max()}")

if summary.per_value:
    st.subheader("Metadata")
    names = list(summary.per_value)
    default = names.index("modality") if "modality" in names else 0
    column = st.selectbox("Distribution of", names, index=default, key="dataset-column")
    _bars(summary.per_value[column], column)
