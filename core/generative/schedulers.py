"""Schedulers by the names people know from the webui ("DPM++ 2M" was the thesis' choice)."""

from __future__ import annotations

from typing import Any

#: name → (diffusers scheduler class, extra config). Names follow stable-diffusion-webui.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
}


class UnknownScheduler(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no scheduler called {name!r}; choose one of {', '.join(SCHEDULERS)}.")
        self.name = name


def scheduler_class_name(name: str) -> str:
    """The diffusers class behind a scheduler name (raises :class:`UnknownScheduler`)."""
    if name not in SCHEDULERS:
        raise UnknownScheduler(name)
    return SCHEDULERS[name][0]


def use_scheduler(pipe: Any, name: str) -> None:
    """Give ``pipe`` the named scheduler, built from its current scheduler's config (so betas etc. stay the model's)."""
    import diffusers

    class_name, extra = SCHEDULERS[name] if name in SCHEDULERS else (scheduler_class_name(name), {})
    current = pipe.scheduler
    if type(current).__name__ == class_name and all(current.config.get(k) == v for k, v in extra.items()):
        return
    pipe.scheduler = getattr(diffusers, class_name).from_config(current.config, **extra)
