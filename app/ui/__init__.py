"""The Streamlit app's pages and widgets (``app/streamlit_app.py`` is the entry point)."""
