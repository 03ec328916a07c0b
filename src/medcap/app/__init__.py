"""The Streamlit similar-case browser behind `medcap app`.

`main.py` is the Streamlit entry script; `app_pages/` hold the pages (UI only); the plain
modules here (`launch`, `cards`, `queries`, `summary`, `reports`) hold the logic and import
no Streamlit, so they are testable and reusable on their own.
"""

from __future__ import annotations
