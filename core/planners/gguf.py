"""Loading a local planner from one ``.gguf`` file, as people keep models for llama.cpp and Ollama.

transformers reads the file's metadata (architecture, tokenizer, chat template) and
de-quantizes its weights into an ordinary PyTorch model, so the planner decodes it with
the same loop and grammar as any other model (``core.planners.decoding``). The file is
checked here first, so a wrong path or a file of another kind gives a sentence that names
it instead of a parser's traceback. Reading a GGUF needs the ``gguf`` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import first_line
from core.planners.base import PlannerUnavailable

GGUF_MAGIC = b"GGUF"


def is_gguf(model_id: str) -> bool:
    """Whether ``CHATEDIT_LOCAL_LLM`` names a GGUF file (by its suffix: an HF id or a directory never ends so)."""
    return model_id.lower().endswith(".gguf")


def check_gguf_file(path: Path) -> Path:
    """``path`` resolved, or :class:`PlannerUnavailable` when it is missing or is not a GGUF file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PlannerUnavailable(f"The local planner's model file {path} does not exist; set CHATEDIT_LOCAL_LLM to an "
                                 "existing .gguf file, or run `chatedit models install-planner smollm2`.")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise PlannerUnavailable(f"The local planner's model file {path} is not a GGUF file (it does not start with "
                                 "the GGUF signature); give CHATEDIT_LOCAL_LLM a .gguf model, a model directory or "
                                 "a Hugging Face id.")
    return path.resolve()


def load_gguf(path: Path, dtype: Any) -> tuple[Any, Any]:
    """Tokenizer and model from one GGUF file, weights de-quantized to ``dtype``."""
    path = check_gguf_file(path)
    try:
        import gguf  # noqa: F401 - transformers needs it; say which package is missing before it does
    except ModuleNotFoundError:
        raise PlannerUnavailable("Reading a .gguf model needs the gguf package; install it with pip install gguf.") \
            from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise PlannerUnavailable(f"The local planner could not load the GGUF file {path}: {first_line(exc)}") from None
    # transformers marks the model as GGUF-quantized although its weights are now plain floats; unmarked, the
    # Trainer and peft treat it as the model it is, so a .gguf base can be fine-tuned (finetune.training).
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return tokenizer, model


__all__ = ["GGUF_MAGIC", "check_gguf_file", "is_gguf", "load_gguf"]
