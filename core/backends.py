"""Which setting enables which editing backend: the one table, and the one check every door uses.

The edit job's pre-check, the Operation Board (a command no backend can run is greyed
before any job), the model registry and the Settings and Status pages' "why not" all
read :data:`GENERATIVE_BACKENDS` and :func:`backend_problem`, so they cannot disagree.
Nothing heavy is imported here: the app reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.rules import Rules, load_rules
from core.settings import Settings


@dataclass(frozen=True)
class GenerativeBackend:
    """A diffusers model named by one setting, and the commands (and pipeline tasks) it runs."""

    #: The environment variable a person sets.
    variable: str
    #: The same setting's attribute on :class:`~core.settings.Settings`.
    field: str
    #: What to put there, for the sentence that names the setting.
    needs: str
    #: The contract's commands this model runs.
    commands: tuple[str, ...]
    #: The registry's pipeline tasks that load this model, each with the name a person knows it by.
    tasks: tuple[tuple[str, str], ...]

    def configured(self, settings: Settings | None) -> bool:
        return settings is not None and bool(getattr(settings, self.field, None))


GENERATIVE_BACKENDS: tuple[GenerativeBackend, ...] = (
    GenerativeBackend("CHATEDIT_INPAINT_MODEL", "inpaint_model", "a Stable Diffusion inpainting model",
                      ("change", "remove"), (("inpaint", "Inpainting"),)),
    GenerativeBackend("CHATEDIT_BASE_MODEL", "base_model", "a Stable Diffusion model",
                      ("face", "style"), (("img2img", "Image-to-image"), ("txt2img", "Text-to-image"))),
    GenerativeBackend("CHATEDIT_IP2P_MODEL", "ip2p_model", "an InstructPix2Pix model",
                      ("instruct",), (("instruct", "InstructPix2Pix"),)),
)
#: The OpenAI image-edit fallback runs any generative command when its model is named.
OPENAI_IMAGE_VARIABLE = "CHATEDIT_OPENAI_IMAGE_MODEL"

BACKEND_OF_COMMAND: dict[str, GenerativeBackend] = {c: b for b in GENERATIVE_BACKENDS for c in b.commands}
BACKEND_OF_TASK: dict[str, tuple[GenerativeBackend, str]] = {
    task: (b, what) for b in GENERATIVE_BACKENDS for task, what in b.tasks}


def openai_fallback_configured(settings: Settings | None) -> bool:
    """The OpenAI image-edit fallback is on when its model is named (the key may come from OPENAI_API_KEY)."""
    return settings is not None and bool(settings.openai_image_model)


def local_model_configured(command: str, settings: Settings | None) -> bool:
    """True when the diffusers model this generative command needs is configured."""
    backend = BACKEND_OF_COMMAND.get(command)
    return backend is not None and backend.configured(settings)


def runs_generatively(command: str, settings: Settings | None, rules: Rules | None = None) -> bool:
    """Whether this command goes to a generative backend (else the classical editor runs it)."""
    rule = (rules or load_rules()).commands[command]
    return rule.generative and (local_model_configured(command, settings) or openai_fallback_configured(settings))


def missing_backend_sentence(command: str) -> str:
    """Why ``command`` cannot run with no generative backend, naming the setting that enables one."""
    backend = BACKEND_OF_COMMAND.get(command)
    if backend is None:
        return (f"'{command}' needs a generative editor and none is configured; set {OPENAI_IMAGE_VARIABLE} "
                "to enable it.")
    return (f"'{command}' needs a generative editor and none is configured; set {backend.variable} to "
            f"{backend.needs} (an HF id or a local directory) to enable it.")


def classical_only_sentence(command: str) -> str:
    return (f"'{command}' needs a generative editor, and your Settings choose the classical editor only; "
            "set Editor backend to auto in Settings to run it.")


def backend_problem(command: str, settings: Settings | None, rules: Rules | None = None, *,
                    classical_only: bool = False) -> str | None:
    """Why no configured backend can run ``command`` (a sentence naming the setting to change), or None when one can.

    ``classical_only`` is the person's "Editor backend: classical": no generative model counts.
    Unknown commands are the validator's business, not this check's.
    """
    rule = (rules or load_rules()).commands.get(command)
    if rule is None or not rule.executable or not rule.generative or rule.classical_fallback:
        return None
    if classical_only:
        return classical_only_sentence(command)
    if local_model_configured(command, settings) or openai_fallback_configured(settings):
        return None
    return missing_backend_sentence(command)
