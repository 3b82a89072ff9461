"""The domain, pure: images, the command contract, planners, segmentation, editing backends, settings.

No SQL, no Streamlit. Heavy libraries (torch, diffusers, onnxruntime ...) are imported
inside the backend that needs them, never at module import.
"""
