"""The ChatEdit web app: ``streamlit run app/streamlit_app.py`` (``chatedit serve`` starts it with the workers)."""

from __future__ import annotations

import streamlit as st

from app.ui.navigation import pages

st.set_page_config(page_title="ChatEdit", page_icon="🎨", layout="wide")
st.navigation(pages()).run()
