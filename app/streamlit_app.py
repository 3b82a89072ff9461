"""The web app: ``streamlit run app/streamlit_app.py`` (``chatedit serve`` starts it with the workers).

Every run passes the sign-in gate first: it decides who acts (the local admin while
``CHATEDIT_AUTH=off``) or shows the sign-in page and stops; then the menu is that person's.
"""

from __future__ import annotations

import streamlit as st

from app.ui.common import get_services
from app.ui.navigation import pages
from app.ui.signin import gate

st.set_page_config(page_title="ChatEdit", page_icon="🎨", layout="wide")
actor = gate(get_services())
st.navigation(pages(actor)).run()
