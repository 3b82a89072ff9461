"""The generative commands run with diffusers: change, remove, face, instruct, style, and txt2img.

Every run follows the same stages: 1. check inputs, 2. get the pipeline from the
registry, 3. scheduler, LoRAs and seed, 4. prepare images at a working size,
5. denoise with a step callback (progress, a cheap preview of the latents every few
steps, and cooperative cancel through the pipeline's interrupt flag), 6. bring the
result back to the input's size and composite it so nothing outside the edited
region changes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import first_line
from core.generative.compositing import (
    canny,
    composite,
    feathered_alpha,
    mask_box,
    mask_fraction,
    resize,
    working_size,
)
from core.generative.errors import GenerationFailed, GenerationInterrupted
from core.generative.loras import LoraChoice, apply_loras, parse_choices
from core.generative.registry import LoadedPipeline, PipelineRegistry
from core.generative.schedulers import use_scheduler
from core.rules import load_rules

# Prompt text comes from core/rules.json (defaults and the inpaint template), like every other
# parameter; these are what a caller gets when it passes parameters resolved without them.
DEFAULT_PROMPT_SUFFIX: str = load_rules().defaults["prompt_suffix"]
DEFAULT_NEGATIVE_PROMPT: str = load_rules().defaults["negative_prompt"]
DEFAULT_REMOVE_PROMPT: str = load_rules().templates["inpaint"]["remove_prompt"]
DEFAULT_REMOVE_NEGATIVE: str = load_rules().templates["inpaint"]["remove_negative_prompt"]
#: A region whose bounding box covers less than this share of the image is inpainted at full resolution.
SMALL_REGION_FRACTION = 0.25
MAX_SEED = 2 ** 31 - 1
#: Longest side of a live preview, in pixels.
PREVIEW_SIDE = 256
#: At most this many steps between two previews (fewer on short runs, so they get one too).
PREVIEW_EVERY = 5
#: The standard linear approximation of Stable Diffusion's VAE decoder: RGB = latent channels @ this (+ bias).
#: It turns the 4 latent channels into a rough picture at latent resolution without running the VAE.
SD15_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
                   (-0.2120, -0.2616, -0.7177))
SDXL_LATENT_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                   (-0.3165, -0.2492, -0.2188))
SDXL_LATENT_RGB_BIAS = (0.1084, -0.0175, -0.0011)
#: The VAE scaling factor that tells an SDXL latent space from SD 1.x/2.x's (0.18215).
SDXL_SCALING_FACTOR = 0.13025


@dataclass
class StepHooks:
    """How a run talks to its job: a progress fraction per step, and whether it must stop."""

    on_progress: Callable[[float], None] = lambda fraction: None
    should_stop: Callable[[], bool] = lambda: False
    #: Gets a rough RGB picture of the image being denoised (at most PREVIEW_SIDE px) every few steps.
    on_preview: Callable[[np.ndarray], None] | None = None


@dataclass
class GenerativeRun:
    """One diffusion run's image and everything needed to reproduce it (it goes into the recipe)."""

    image: np.ndarray
    task: str
    model: str
    seed: int | None
    scheduler: str
    steps: int
    steps_run: int
    controlnet: str | None = None
    loras: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backend: str = "diffusers"
    load_s: float = 0.0
    op_s: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "task": self.task, "model": self.model, "controlnet": self.controlnet,
            "seed": self.seed, "scheduler": self.scheduler, "steps": self.steps, "steps_run": self.steps_run,
            "loras": self.loras, "timings": {"load_s": round(self.load_s, 4), "op_s": round(self.op_s, 4)},
        }


def choose_seed(seed: object) -> int:
    """The seed to use: the given one, or a fresh random one for -1/None (recorded either way)."""
    if seed is None or seed == -1:
        return secrets.randbelow(MAX_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be -1 (random) or an integer in [0, {MAX_SEED}], not {seed!r}.")
    return seed


def preview_size(height: int, width: int, side: int = PREVIEW_SIDE) -> tuple[int, int]:
    """The size of a preview of a ``height`` × ``width`` image: fitted in ``side`` pixels, never enlarged."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def latent_preview(latents: Any, size: tuple[int, int], *, sdxl: bool = False) -> np.ndarray:
    """A cheap RGB picture of (the first image of) a batch of 4-channel latents, resized to ``size`` (h, w).

    Noisy early on and sharper as denoising goes; good enough to see where a run is heading.
    """
    import torch

    if latents.ndim != 4 or latents.shape[1] != 4:
        raise ValueError(f"expected latents of shape (batch, 4, h, w), not {tuple(latents.shape)}")
    factors = torch.tensor(SDXL_LATENT_RGB if sdxl else SD15_LATENT_RGB, dtype=torch.float32)
    rgb = latents[0].detach().to("cpu", torch.float32).permute(1, 2, 0) @ factors
    if sdxl:
        rgb = rgb + torch.tensor(SDXL_LATENT_RGB_BIAS)
    image = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return resize(image, size)


class _StopDenoising(Exception):
    """Raised from the step callback of a pipeline that has no interrupt flag."""


class _Diffusion:
    """Stages 2–5 shared by every executor."""

    def __init__(self, registry: PipelineRegistry, task: str, params: dict[str, Any], hooks: StepHooks,
                 lora_dir: Path | None, *, controlnet: bool = False) -> None:
        started = time.perf_counter()
        self.registry = registry
        self.params = params
        self.hooks = hooks
        self.steps = _positive_int(params, "steps")
        self.scheduler = str(params.get("scheduler") or "DPM++ 2M")
        self.seed = choose_seed(params.get("seed", -1))
        self.choices: list[LoraChoice] = parse_choices(params.get("loras"))
        self.lora_dir = lora_dir
        self.loaded: LoadedPipeline = registry.get(task, controlnet=controlnet)  # type: ignore[arg-type]
        self.load_s = time.perf_counter() - started
        self.task = task
        self.steps_run = 0

    @property
    def max_side(self) -> int:
        return int(self.params.get("max_side") or self.loaded.default_side)

    def __call__(self, **kwargs: Any) -> tuple[np.ndarray, float]:
        import torch

        pipe = self.loaded.pipe
        started = time.perf_counter()
        with self.registry.run_lock:
            use_scheduler(pipe, self.scheduler)
            applied = apply_loras(pipe, self.choices, self.lora_dir)
            self.choices = applied
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
            self.steps_run = 0

            def on_step_end(pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
                self.steps_run = step + 1
                total = max(1, int(getattr(pipeline, "num_timesteps", 0) or self.steps))
                self.hooks.on_progress(min(1.0, self.steps_run / total))
                if self.hooks.on_preview is not None and self.steps_run < total \
                        and self.steps_run % max(1, min(PREVIEW_EVERY, total // 4)) == 0:
                    self._preview(pipeline, callback_kwargs.get("latents"))
                if self.hooks.should_stop():
                    if not hasattr(type(pipeline), "interrupt"):
                        raise _StopDenoising  # this pipeline class has no interrupt flag (InstructPix2Pix)
                    pipeline._interrupt = True
                return callback_kwargs

            if self.hooks.should_stop():
                raise GenerationInterrupted(0, self.steps)
            try:
                output = pipe(num_inference_steps=self.steps, generator=generator, output_type="pil",
                              callback_on_step_end=on_step_end, **kwargs)
            except _StopDenoising:
                raise GenerationInterrupted(self.steps_run, self.steps) from None
            except (ValueError, RuntimeError, TypeError) as exc:
                raise GenerationFailed(f"The {self.task} model could not run: {first_line(exc)}") from exc
            total = int(getattr(pipe, "num_timesteps", 0) or self.steps)
            if getattr(pipe, "interrupt", False) or self.hooks.should_stop():
                raise GenerationInterrupted(self.steps_run, total)
        image = np.asarray(output.images[0].convert("RGB"), dtype=np.uint8)
        return image, time.perf_counter() - started

    def _preview(self, pipeline: Any, latents: Any) -> None:
        """Hand a preview of the current latents to the hooks; a latent space it cannot read gets none."""
        if latents is None or latents.ndim != 4 or latents.shape[1] != 4 or self.hooks.on_preview is None:
            return
        vae = getattr(pipeline, "vae", None)
        factor = int(getattr(pipeline, "vae_scale_factor", 8) or 8)
        scaling = float(getattr(getattr(vae, "config", None), "scaling_factor", 0.18215) or 0.18215)
        size = preview_size(int(latents.shape[2]) * factor, int(latents.shape[3]) * factor)
        self.hooks.on_preview(latent_preview(latents, size, sdxl=abs(scaling - SDXL_SCALING_FACTOR) < 1e-3))

    def result(self, image: np.ndarray, op_s: float, notes: list[str] | None = None) -> GenerativeRun:
        key = self.loaded.key
        return GenerativeRun(
            image=image, task=self.task, model=key.model, controlnet=key.controlnet, seed=self.seed,
            scheduler=self.scheduler, steps=self.steps, steps_run=self.steps_run,
            loras=[c.to_dict() for c in self.choices], notes=notes or [], load_s=self.load_s, op_s=op_s,
        )


def inpaint(registry: PipelineRegistry, image: np.ndarray, mask: np.ndarray, prompt: str, params: dict[str, Any],
            hooks: StepHooks | None = None, *, lora_dir: Path | None = None, negative_prompt: str | None = None,
            keep_outlines: bool = True) -> GenerativeRun:
    """Repaint the masked region (``change``; ``remove`` with a fill prompt and no outline control)."""
    # 1. Check inputs.
    _check_image_and_mask(image, mask)
    if not mask.any():
        raise ValueError("The mask is empty: there is nothing to repaint.")
    use_controlnet = (keep_outlines and params.get("controlnet") == "canny"
                      and registry.controlnet_source() is not None)
    # 2-3. Pipeline, scheduler, LoRAs, seed.
    run = _Diffusion(registry, "inpaint", params, hooks or StepHooks(), lora_dir, controlnet=use_controlnet)
    # 4. Working size; small regions are cropped and inpainted at full resolution by the pipeline.
    h, w = working_size(*image.shape[:2], run.max_side)
    work_image, work_mask = resize(image, (h, w)), resize(mask.astype(np.uint8) * 255, (h, w), nearest=True)
    kwargs: dict[str, Any] = {
        "prompt": _with_suffix(prompt, params), "negative_prompt": negative_prompt or _negative(params),
        "image": _pil(work_image), "mask_image": _pil(work_mask), "height": h, "width": w,
        "strength": _fraction(params, "strength"), "guidance_scale": float(params.get("cfg_scale", 7.0)),
    }
    notes = []
    if mask_fraction(mask) < float(params.get("small_region_fraction", SMALL_REGION_FRACTION)):
        kwargs["padding_mask_crop"] = int(params.get("padding_mask_crop", 32))
        notes.append("small region: inpainted at full resolution around the mask")
    if use_controlnet:
        low, high = int(params.get("controlnet_low_threshold", 100)), int(params.get("controlnet_high_threshold", 200))
        kwargs["control_image"] = _pil(canny(work_image, low, high))
        kwargs["controlnet_conditioning_scale"] = float(params.get("controlnet_scale", 1.0))
    # 5. Denoise.
    generated, op_s = run(**kwargs)
    # 6. Back to the input's size, composited inside the feathered mask only.
    generated = resize(generated, image.shape[:2])
    alpha = feathered_alpha(mask, int(params.get("mask_blur", 4)))
    return run.result(composite(image, generated, alpha), op_s, notes)


def remove(registry: PipelineRegistry, image: np.ndarray, mask: np.ndarray, params: dict[str, Any],
           hooks: StepHooks | None = None, *, lora_dir: Path | None = None) -> GenerativeRun:
    """Erase the masked region by inpainting it with a fill-the-background prompt (no outline control:
    the outlines to keep are the very ones being removed)."""
    prompt = str(params.get("remove_prompt") or DEFAULT_REMOVE_PROMPT)
    negative = str(params.get("remove_negative_prompt") or DEFAULT_REMOVE_NEGATIVE)
    return inpaint(registry, image, mask, prompt, {**params, "prompt_suffix": ""}, hooks, lora_dir=lora_dir,
                   negative_prompt=negative, keep_outlines=False)


def retouch_face(registry: PipelineRegistry, image: np.ndarray, face_mask: np.ndarray, prompt: str,
                 params: dict[str, Any], hooks: StepHooks | None = None, *, lora_dir: Path | None = None) -> GenerativeRun:
    """Retouch only the face: crop around it, img2img at low strength, paste back feathered."""
    _check_image_and_mask(image, face_mask)
    box = mask_box(face_mask, margin=float(params.get("face_margin", 0.3)))
    if box is None:
        raise ValueError("There is no face region in this image to retouch.")
    run = _Diffusion(registry, "img2img", params, hooks or StepHooks(), lora_dir)
    crop = box.cut(image)
    side = min(run.max_side, int(params.get("face_size") or run.max_side))
    scale = side / max(crop.shape[:2])
    h, w = working_size(max(8, round(crop.shape[0] * scale)), max(8, round(crop.shape[1] * scale)), side)
    generated, op_s = run(
        prompt=_with_suffix(prompt, params), negative_prompt=_negative(params), image=_pil(resize(crop, (h, w))),
        strength=_fraction(params, "strength"), guidance_scale=float(params.get("cfg_scale", 7.0)),
    )
    generated = resize(generated, crop.shape[:2])
    full = image.copy()
    full[box.top:box.bottom, box.left:box.right] = generated
    alpha = feathered_alpha(face_mask, int(params.get("mask_blur", 4)))
    return run.result(composite(image, full, alpha), op_s)


def instruct(registry: PipelineRegistry, image: np.ndarray, instruction: str, params: dict[str, Any],
             hooks: StepHooks | None = None, *, lora_dir: Path | None = None) -> GenerativeRun:
    """A global edit from an instruction (InstructPix2Pix), with text and image guidance from the parameters."""
    _check_image(image)
    run = _Diffusion(registry, "instruct", params, hooks or StepHooks(), lora_dir)
    h, w = working_size(*image.shape[:2], run.max_side)
    generated, op_s = run(
        prompt=instruction, negative_prompt=_negative(params), image=_pil(resize(image, (h, w))),
        guidance_scale=_guidance(params, "text_guidance", 7.5), image_guidance_scale=_guidance(params, "image_guidance", 1.5),
    )
    return run.result(resize(generated, image.shape[:2]), op_s)


def restyle(registry: PipelineRegistry, image: np.ndarray, style: str, params: dict[str, Any],
            hooks: StepHooks | None = None, *, lora_dir: Path | None = None) -> GenerativeRun:
    """Restyle the whole image; ControlNet canny on it keeps the layout when a ControlNet is configured."""
    _check_image(image)
    use_controlnet = params.get("controlnet") == "canny" and registry.controlnet_source() is not None
    run = _Diffusion(registry, "img2img", params, hooks or StepHooks(), lora_dir, controlnet=use_controlnet)
    h, w = working_size(*image.shape[:2], run.max_side)
    work = resize(image, (h, w))
    kwargs: dict[str, Any] = {
        "prompt": _with_suffix(style, params), "negative_prompt": _negative(params), "image": _pil(work),
        "strength": _fraction(params, "strength"), "guidance_scale": float(params.get("cfg_scale", 7.0)),
    }
    notes = []
    if use_controlnet:
        low, high = int(params.get("controlnet_low_threshold", 100)), int(params.get("controlnet_high_threshold", 200))
        kwargs["control_image"] = _pil(canny(work, low, high))
        kwargs["controlnet_conditioning_scale"] = float(params.get("controlnet_scale", 1.0))
    elif params.get("controlnet") == "canny":
        notes.append("no ControlNet configured (CHATEDIT_CONTROLNET_MODEL): the layout may drift")
    generated, op_s = run(**kwargs)
    return run.result(resize(generated, image.shape[:2]), op_s, notes)


def text_to_image(registry: PipelineRegistry, prompt: str, params: dict[str, Any], hooks: StepHooks | None = None,
                  *, lora_dir: Path | None = None) -> GenerativeRun:
    """A new image from a prompt (the ``generate`` job: a history that starts from words)."""
    if not prompt.strip():
        raise ValueError("The prompt is empty; say what the image should show.")
    run = _Diffusion(registry, "txt2img", params, hooks or StepHooks(), lora_dir)
    side = run.loaded.default_side
    h, w = _positive_int(params, "height", side), _positive_int(params, "width", side)
    if h % 8 or w % 8:
        raise ValueError(f"width and height must be multiples of 8, not {w}×{h}.")
    generated, op_s = run(prompt=_with_suffix(prompt, params), negative_prompt=_negative(params), height=h, width=w,
                          guidance_scale=float(params.get("cfg_scale", 7.0)))
    return run.result(generated, op_s)


# -- helpers ---------------------------------------------------------------------------


def _pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array)


def _with_suffix(prompt: str, params: dict[str, Any]) -> str:
    suffix = params.get("prompt_suffix", DEFAULT_PROMPT_SUFFIX)
    return f"{prompt}, {suffix}" if suffix else prompt


def _negative(params: dict[str, Any]) -> str:
    return str(params.get("negative_prompt", DEFAULT_NEGATIVE_PROMPT) or "")


def _positive_int(params: dict[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}.")
    return int(value)


def _fraction(params: dict[str, Any], name: str) -> float:
    value = params.get(name)
    if not isinstance(value, int | float) or not 0 < float(value) <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], not {value!r}.")
    return float(value)


def _guidance(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if not isinstance(value, int | float) or not 0 <= float(value) <= 30:
        raise ValueError(f"{name} must be a number in [0, 30], not {value!r}.")
    return float(value)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {image.shape} and dtype {image.dtype}")


def _check_image_and_mask(image: np.ndarray, mask: np.ndarray) -> None:
    _check_image(image)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"the mask is {mask.shape[1]}×{mask.shape[0]} but the image is {image.shape[1]}×{image.shape[0]}")
