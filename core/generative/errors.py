"""What can go wrong in generative editing, each as an exception whose ``str()`` is a plain sentence."""

from __future__ import annotations


class GenerationFailed(RuntimeError):
    """A generative run could not produce an image (bad model, bad input); retrying will not help."""


class ModelNotConfigured(GenerationFailed):
    """The setting that names the model this run needs is empty."""

    def __init__(self, setting: str, what: str) -> None:
        super().__init__(f"{what} needs a model and none is configured; set {setting}.")
        self.setting = setting


class ModelUnavailable(GenerationFailed):
    """The configured model could not be loaded (missing path, no hub access, wrong kind of model)."""

    def __init__(self, source: str, setting: str, reason: str) -> None:
        super().__init__(f"The model {source!r} ({setting}) could not be loaded: {reason}")
        self.source = source
        self.setting = setting


class SingleFileConfigMissing(ModelUnavailable):
    """A single-file checkpoint's diffusers configs are neither in the folder beside it nor reachable on the hub."""

    def __init__(self, source: str, setting: str, config_dir: str, repo: str | None, reason: str) -> None:
        fetch = (f'e.g. `hf download {repo} --include "*.json" "*.txt" --local-dir {config_dir}`' if repo
                 else "the same files as in the diffusers version of the model it was fine-tuned from")
        super().__init__(source, setting, f"{reason} A single file holds only weights: put its diffusers configs and "
                                          f"tokenizer (model_index.json or config.json, each component's config, the "
                                          f"tokenizer files; no weights needed) in the folder {config_dir} ({fetch}).")
        self.config_dir = config_dir
        self.repo = repo


class GenerationInterrupted(Exception):
    """The run stopped early because its job must stop; the handler turns this into the job's stop."""

    def __init__(self, steps_run: int, steps_total: int) -> None:
        super().__init__(f"The diffusion run stopped after {steps_run} of {steps_total} steps.")
        self.steps_run = steps_run
        self.steps_total = steps_total


class NoFaceFound(GenerationFailed):
    """Face swap needs a face in both images."""

    def __init__(self, which: str) -> None:
        super().__init__(f"No face was found in the {which}; use a photo where a face is clearly visible.")
        self.which = which
