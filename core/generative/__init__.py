"""Generative editing with diffusers: the model registry, the executors of the generative commands, LoRA,
face swap and the OpenAI image-edit fallback.

Nothing heavy is imported here: torch and diffusers load inside the functions that
need them, so importing the package (the app does, for the LoRA list) stays cheap.
"""

from core.generative.errors import (
    GenerationFailed,
    GenerationInterrupted,
    ModelNotConfigured,
    ModelUnavailable,
    NoFaceFound,
)

__all__ = ["GenerationFailed", "GenerationInterrupted", "ModelNotConfigured", "ModelUnavailable", "NoFaceFound"]
