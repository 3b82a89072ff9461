"""The people-facing room: the ``chatedit`` command line and (with the app issue) the Streamlit pages.

It never imports torch, diffusers, transformers or onnxruntime: the UI process stays light.
"""
