"""The pipelines the worker has loaded: built on first use from settings, shared, kept in an LRU.

Each model setting holds an HF id, a local diffusers directory or one ``.safetensors``
file. A single file (an A1111/civitai checkpoint) holds only weights; its diffusers configs and
tokenizer are read from the folder beside it with its name (``models/dreamshaper-inpaint/`` for
``models/dreamshaper-inpaint.safetensors``: ``model_index.json``, each component's config, the
tokenizer; for a ControlNet, ``config.json``), so nothing is fetched from the hub. Without that
folder diffusers looks them up on the hub (or in the HF cache), and offline the error says
what to put there. A pipeline is loaded the first time a job needs it; a second task on the same
model (txt2img after img2img, ControlNet inpaint after inpaint) is made with
``from_pipe`` so the weights are held once. The LRU is bounded by free VRAM on CUDA
(least recently used models go until enough is free) and by the number of models on CPU.
"""

from __future__ import annotations

import gc
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.backends import BACKEND_OF_TASK
from core.errors import first_line
from core.generative.devices import Placement, best_placement, free_vram_bytes
from core.generative.errors import (
    ModelNotConfigured,
    ModelUnavailable,
    SingleFileConfigMissing,
)
from core.settings import Settings

Task = Literal["inpaint", "img2img", "txt2img", "instruct"]

#: Which setting names the model of each task, and what a person should put there (from ``core.backends``' table).
TASK_SETTINGS: dict[str, tuple[str, str, str]] = {
    task: (backend.field, backend.variable, what) for task, (backend, what) in BACKEND_OF_TASK.items()}

GIB = 1024 ** 3


@dataclass(frozen=True)
class ModelSource:
    """A model setting's value, and how to load it."""

    value: str
    setting: str

    @property
    def kind(self) -> Literal["file", "directory", "hub"]:
        path = Path(self.value).expanduser()
        if self.value.endswith((".safetensors", ".ckpt")):
            return "file"
        if path.is_dir():
            return "directory"
        return "hub"

    @property
    def is_url(self) -> bool:
        return self.value.startswith(("http://", "https://", "hf.co/", "huggingface.co/"))

    @property
    def config_dir(self) -> Path | None:
        """Where a local single file's diffusers configs are looked for: the folder beside it named like it."""
        if self.kind != "file" or self.is_url:
            return None
        return Path(self.value).expanduser().with_suffix("")

    @property
    def looks_sdxl(self) -> bool:
        """The configs beside a single file name its pipeline class; without them an ``xl`` in the name picks SDXL."""
        index = self.config_dir / "model_index.json" if self.config_dir else None
        if index is not None and index.is_file():
            try:
                return "XL" in str(json.loads(index.read_text()).get("_class_name", ""))
            except (OSError, ValueError):
                pass
        return "xl" in Path(self.value).name.lower()


@dataclass(frozen=True)
class PipelineKey:
    task: str
    model: str
    controlnet: str | None


@dataclass
class LoadedPipeline:
    key: PipelineKey
    pipe: Any
    placement: Placement

    @property
    def is_sdxl(self) -> bool:
        return "XL" in type(self.pipe).__name__

    @property
    def default_side(self) -> int:
        return 1024 if self.is_sdxl else 512


class PipelineRegistry:
    """Lazily loaded diffusers pipelines for one worker process.

    ``run_lock`` serialises runs: a pipeline object (its scheduler state, its LoRA
    adapters) must not be used by two jobs at once, and one GPU runs one at a time.
    """

    def __init__(self, settings: Settings, *, placement: Placement | None = None, max_cpu_models: int = 4,
                 vram_reserve_bytes: int = 6 * GIB) -> None:
        self.settings = settings
        self._placement = placement
        self.max_cpu_models = max_cpu_models
        self.vram_reserve_bytes = vram_reserve_bytes
        self._pipes: OrderedDict[PipelineKey, LoadedPipeline] = OrderedDict()
        self._controlnets: dict[str, Any] = {}
        self._lock = threading.RLock()
        self.run_lock = threading.RLock()

    @property
    def placement(self) -> Placement:
        if self._placement is None:
            self._placement = best_placement()
        return self._placement

    def source(self, task: str) -> ModelSource:
        field, variable, what = TASK_SETTINGS[task]
        value = getattr(self.settings, field)
        if not value:
            raise ModelNotConfigured(variable, what)
        return ModelSource(str(value), variable)

    def controlnet_source(self) -> ModelSource | None:
        value = self.settings.controlnet_model
        return ModelSource(value, "CHATEDIT_CONTROLNET_MODEL") if value else None

    def configured(self, task: str) -> bool:
        return bool(getattr(self.settings, TASK_SETTINGS[task][0]))

    @property
    def loaded(self) -> list[PipelineKey]:
        return list(self._pipes)

    def get(self, task: Task, *, controlnet: bool = False) -> LoadedPipeline:
        """The pipeline for ``task`` (with the configured ControlNet when asked), loading it if needed."""
        source = self.source(task)
        cn_source = self.controlnet_source() if controlnet else None
        key = PipelineKey(task, source.value, cn_source.value if cn_source else None)
        with self._lock:
            if key in self._pipes:
                self._pipes.move_to_end(key)
                return self._pipes[key]
            donor = next((p for k, p in reversed(self._pipes.items()) if k.model == source.value), None)
            if donor is None:
                self._make_room()
            pipe = self._build(task, source, cn_source, donor)
            loaded = LoadedPipeline(key, pipe, self.placement)
            self._pipes[key] = loaded
            return loaded

    # -- loading -------------------------------------------------------------------

    def _build(self, task: str, source: ModelSource, cn_source: ModelSource | None, donor: LoadedPipeline | None) -> Any:
        controlnet = self._controlnet(cn_source) if cn_source else None
        try:
            if donor is not None:
                pipe = _from_pipe(task, donor.pipe, controlnet)
            else:
                pipe = _from_source(task, source, controlnet, self.placement)
        except (OSError, ValueError, EnvironmentError, TypeError, KeyError) as exc:
            raise ModelUnavailable(source.value, source.setting, _reason(exc)) from exc
        if donor is None:
            self._optimise(pipe)
        elif controlnet is not None:
            controlnet.to(self.placement.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _controlnet(self, source: ModelSource) -> Any:
        if source.value in self._controlnets:
            return self._controlnets[source.value]
        from diffusers import ControlNetModel

        try:
            if source.kind == "file":
                model = _from_single_file(ControlNetModel, source, "config.json", dtype=self.placement.dtype)
            else:
                model = ControlNetModel.from_pretrained(source.value, dtype=self.placement.dtype)
        except (OSError, ValueError, EnvironmentError, TypeError, KeyError) as exc:
            raise ModelUnavailable(source.value, source.setting, _reason(exc)) from exc
        model.to(self.placement.device)
        self._controlnets[source.value] = model
        return model

    def _optimise(self, pipe: Any) -> None:
        """Device and precision, SDPA attention, channels_last and (optionally) torch.compile on CUDA."""
        import torch
        from diffusers.models.attention_processor import AttnProcessor2_0

        pipe.to(self.placement.device)
        for name in ("unet", "controlnet"):
            module = getattr(pipe, name, None)
            if module is None:
                continue
            if hasattr(module, "set_attn_processor"):
                module.set_attn_processor(AttnProcessor2_0())
            if self.placement.is_cuda:
                module.to(memory_format=torch.channels_last)
        if self.placement.is_cuda and self.settings.torch_compile and not hasattr(pipe.unet, "_orig_mod"):
            pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")

    def _make_room(self) -> None:
        """Drop least recently used pipelines: by free VRAM on CUDA, by count on CPU."""
        if self.placement.is_cuda:
            while self._pipes and (free_vram_bytes() or 0) < self.vram_reserve_bytes:
                self._evict_least_recent_model()
        else:
            while len({k.model for k in self._pipes}) >= self.max_cpu_models:
                self._evict_least_recent_model()

    def _evict_least_recent_model(self) -> None:
        """Pipelines made with ``from_pipe`` share weights, so a model goes with all its pipelines."""
        oldest = next(iter(self._pipes)).model
        for key in [k for k in self._pipes if k.model == oldest]:
            del self._pipes[key]
        self._release_memory()

    def _release_memory(self) -> None:
        gc.collect()
        if self.placement.is_cuda:
            import torch

            torch.cuda.empty_cache()


def _auto_class(task: str) -> Any:
    import diffusers

    return {
        "inpaint": diffusers.AutoPipelineForInpainting,
        "img2img": diffusers.AutoPipelineForImage2Image,
        "txt2img": diffusers.AutoPipelineForText2Image,
        "instruct": diffusers.StableDiffusionInstructPix2PixPipeline,
    }[task]


def _from_pipe(task: str, donor: Any, controlnet: Any) -> Any:
    """A pipeline for ``task`` that shares ``donor``'s components (no second copy of the weights)."""
    cls = _auto_class(task)
    if task == "instruct":
        return cls.from_pipe(donor)
    had_controlnet = getattr(donor, "controlnet", None) is not None
    if controlnet is not None or had_controlnet:
        return cls.from_pipe(donor, controlnet=controlnet)
    return cls.from_pipe(donor)


def _from_source(task: str, source: ModelSource, controlnet: Any, placement: Placement) -> Any:
    kwargs: dict[str, Any] = {"dtype": placement.dtype}
    if controlnet is not None:
        kwargs["controlnet"] = controlnet
    if source.kind == "file":
        cls = _single_file_class(task, source.looks_sdxl, controlnet is not None)
        return _from_single_file(cls, source, "model_index.json", **kwargs)
    if source.kind == "directory" and not (Path(source.value) / "model_index.json").is_file():
        raise ValueError(f"{source.value} is a folder without model_index.json (a diffusers pipeline saved with save_pretrained)")
    return _auto_class(task).from_pretrained(source.value, **kwargs)


def _from_single_file(cls: Any, source: ModelSource, index_name: str, **kwargs: Any) -> Any:
    """``cls.from_single_file`` with the configs from the folder beside the file, offline; else from the hub.

    ``index_name`` is the file that folder must hold: ``model_index.json`` for a pipeline,
    ``config.json`` for a single model (a ControlNet).
    """
    config_dir = source.config_dir
    if config_dir is None:  # a URL: diffusers fetches the file and its configs from the hub
        return cls.from_single_file(source.value, **kwargs)
    path = Path(source.value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"there is no file {path}")
    if config_dir.is_dir():
        if not (config_dir / index_name).is_file():
            raise ValueError(f"the folder {config_dir} beside it, where its diffusers configs are read from, "
                             f"has no {index_name}")
        return cls.from_single_file(str(path), config=str(config_dir), local_files_only=True, **kwargs)
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        return cls.from_single_file(str(path), **kwargs)
    except (EntryNotFoundError, HfHubHTTPError, ConnectionError, TimeoutError) as exc:
        raise SingleFileConfigMissing(source.value, source.setting, str(config_dir), _config_repo(path),
                                      _reason(exc)) from exc


def _config_repo(path: Path) -> str | None:
    """The hub repository diffusers takes this checkpoint's configs from (it tells by tensor names and shapes);
    only the few tensors it looks at are read. ``None`` when it cannot tell."""
    if path.suffix != ".safetensors":
        return None
    from diffusers.loaders.single_file_utils import fetch_diffusers_config
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return str(fetch_diffusers_config(_LazyTensors(handle))["pretrained_model_name_or_path"])
    except (OSError, KeyError, ValueError, SafetensorError):
        return None


class _LazyTensors(Mapping[str, Any]):
    """An open safetensors file as a read-only mapping that loads a tensor only when it is looked up."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.names = handle, set(handle.keys())

    def __getitem__(self, name: str) -> Any:
        if name not in self.names:
            raise KeyError(name)
        return self.handle.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _single_file_class(task: str, sdxl: bool, controlnet: bool) -> Any:
    import diffusers

    names = {
        ("inpaint", False): "StableDiffusionControlNetInpaintPipeline" if controlnet else "StableDiffusionInpaintPipeline",
        ("inpaint", True): "StableDiffusionXLControlNetInpaintPipeline" if controlnet else "StableDiffusionXLInpaintPipeline",
        ("img2img", False): "StableDiffusionControlNetImg2ImgPipeline" if controlnet else "StableDiffusionImg2ImgPipeline",
        ("img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline" if controlnet else "StableDiffusionXLImg2ImgPipeline",
        ("txt2img", False): "StableDiffusionPipeline",
        ("txt2img", True): "StableDiffusionXLPipeline",
        ("instruct", False): "StableDiffusionInstructPix2PixPipeline",
        ("instruct", True): "StableDiffusionXLInstructPix2PixPipeline",
    }
    return getattr(diffusers, names[(task, sdxl)])


def _reason(exc: BaseException) -> str:
    text = first_line(exc)
    return text if text.endswith(".") else text + "."


_SHARED: dict[tuple[Any, ...], PipelineRegistry] = {}
_SHARED_LOCK = threading.Lock()


def shared_registry(settings: Settings) -> PipelineRegistry:
    """The worker process's registry for these model settings (one per distinct configuration)."""
    key = (settings.inpaint_model, settings.controlnet_model, settings.ip2p_model, settings.base_model,
           settings.torch_compile)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = PipelineRegistry(settings)
        return _SHARED[key]
