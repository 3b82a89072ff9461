"""Export a transformers semantic-segmentation model to one self-contained ONNX file.

The file holds the graph, the weights and our metadata (labels, preprocessing, model id),
so the runtime needs nothing else. Export uses the ``torch.export``-based exporter
(``dynamo=True``): with dynamic batch, height and width its SegFormer graph matches
PyTorch at every size, where the TorchScript exporter's graph did not.
Every export is checked against PyTorch on two inputs of different sizes before the file
is written; a mismatch fails the export instead of shipping a wrong segmenter.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from core.errors import error_line, first_line
from core.segmentation.errors import ExportFailed, ModelSourceUnavailable
from core.segmentation.metadata import (
    INPUT_NAME,
    OUTPUT_NAME,
    RESAMPLE_NAMES,
    Preprocessing,
    SegmenterMetadata,
    model_id_for,
    write_metadata,
)
from core.segmentation.processing import preprocess

log = logging.getLogger(__name__)

#: ONNX opset of exported files: onnxruntime ≥ 1.15 (CPU and GPU builds) runs it.
OPSET = 18
#: Largest |ONNX - PyTorch| logit difference an export may have.
DEFAULT_TOLERANCE = 1e-3
HUB_UNREACHABLE = ("the Hugging Face Hub cannot be reached from here and the model is not in the local cache; "
                   "download it where there is a network and pass its directory")


@dataclass(frozen=True)
class ExportReport:
    path: Path
    metadata: SegmenterMetadata
    max_abs_diff: float
    checked_shapes: tuple[tuple[int, ...], ...]
    seconds: float
    bytes: int


def export_segmenter(source: str, output: Path | str, *, tolerance: float = DEFAULT_TOLERANCE) -> ExportReport:
    """Load ``source`` (a Hugging Face id or a local directory), export it to ``output`` and check it."""
    started = time.perf_counter()
    output = Path(output)
    # 1. Load the model and what its image processor does.
    where = _locate(source)
    # Without a network the hub client retries for most of a minute; find out in seconds instead,
    # and then use the local Hugging Face cache only.
    offline = where == source and not _hub_reachable()
    model = _load_model(source, where, offline=offline)
    preprocessing = _load_preprocessing(source, where, model.config, offline=offline)
    label_names = _label_names(source, model.config)
    metadata = SegmenterMetadata(model_id=model_id_for(source, weights_sha256(model)), source=source,
                                 label_names=label_names, preprocessing=preprocessing)
    # 2. Export with dynamic batch, height and width.
    onnx_bytes = _export_graph(model, metadata, source)
    # 3. Check ONNX against PyTorch, then write the file with its metadata.
    diff, shapes = _check_against_pytorch(model, onnx_bytes, metadata, source, tolerance)
    size = _write_with_metadata(onnx_bytes, metadata, output, source)
    log.info("exported %s to %s (%d labels, max |ONNX-PyTorch| %.2e)", metadata.model_id, output,
             len(label_names), diff)
    return ExportReport(path=output, metadata=metadata, max_abs_diff=diff, checked_shapes=shapes,
                        seconds=time.perf_counter() - started, bytes=size)


def weights_sha256(model: Any) -> str:
    """A digest of every parameter and buffer, by name: the identity of the weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _locate(source: str) -> str:
    """A local model directory's path, or the source itself as a Hugging Face id."""
    local = Path(source).expanduser()
    if local.is_dir():
        return str(local)
    if local.exists():
        raise ModelSourceUnavailable(source, "it is a file; pass a model directory or a Hugging Face id")
    if source.startswith((".", "/", "~")):
        raise ModelSourceUnavailable(source, "there is no such directory")
    return source


def _load_model(source: str, where: str, *, offline: bool) -> Any:
    from transformers import AutoModelForSemanticSegmentation

    cache_only: dict[str, Any] = {"local_files_only": True, "adapter_kwargs": {"local_files_only": True}}
    try:
        model = AutoModelForSemanticSegmentation.from_pretrained(where, **(cache_only if offline else {}))
    except OSError as exc:
        raise ModelSourceUnavailable(source, HUB_UNREACHABLE if offline else _why_unavailable(exc)) from None
    except ValueError as exc:  # a config transformers knows but not as semantic segmentation
        raise ModelSourceUnavailable(source, f"it is not a semantic-segmentation model ({_reason(exc)})") from None
    return model.eval()


def _hub_reachable(timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to the hub (HF_ENDPOINT) opens; assumed yes behind a proxy or in offline mode."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return True
    url = urlsplit(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def _why_unavailable(exc: OSError) -> str:
    text = str(exc).lower()
    if any(word in text for word in ("connect", "offline", "resolve", "network", "timed out")):
        return HUB_UNREACHABLE
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    """The error's first line as a clause inside a sentence (no full stop of its own)."""
    return first_line(exc).rstrip(".")


def _load_preprocessing(source: str, where: str, config: Any, *, offline: bool) -> Preprocessing:
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(where, local_files_only=offline)
    except (OSError, ValueError) as exc:
        if getattr(config, "model_type", None) != "segformer":
            raise ExportFailed(source, f"it has no image processor configuration ({_reason(exc)})") from None
        log.warning("%s has no preprocessor_config.json; using SegFormer's default preprocessing", source)
        return Preprocessing()
    size = getattr(processor, "size", None) or {}
    size = dict(size) if not isinstance(size, dict) else size
    do_resize = bool(getattr(processor, "do_resize", True))
    if do_resize and not (size.get("height") and size.get("width")):
        raise ExportFailed(source, f"its image processor resizes to {size}; only a fixed height and width is supported")
    resample = getattr(processor, "resample", 2)
    resample_name = RESAMPLE_NAMES.get(int(resample)) if resample is not None else "bilinear"
    if resample_name is None:
        raise ExportFailed(source, f"its image processor uses the resample filter {resample!r}, which we do not know")
    return Preprocessing(
        do_resize=do_resize,
        height=int(size.get("height") or 512),
        width=int(size.get("width") or 512),
        resample=resample_name,
        do_rescale=bool(getattr(processor, "do_rescale", True)),
        rescale_factor=float(getattr(processor, "rescale_factor", 1 / 255)),
        do_normalize=bool(getattr(processor, "do_normalize", True)),
        image_mean=tuple(float(v) for v in processor.image_mean or Preprocessing.image_mean),  # type: ignore[arg-type]
        image_std=tuple(float(v) for v in processor.image_std or Preprocessing.image_std),  # type: ignore[arg-type]
    )


def _label_names(source: str, config: Any) -> tuple[str, ...]:
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ExportFailed(source, f"its id2label ids {sorted(id2label)} are not 0..{len(id2label) - 1}")
    return tuple(id2label[i] for i in range(len(id2label)))


def _logits_module(model: Any) -> Any:
    import torch

    class LogitsOnly(torch.nn.Module):
        """The exported signature: pixel_values in, logits out (no loss, no hidden states)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=pixel_values).logits

    return LogitsOnly(model).eval()


def _export_graph(model: Any, metadata: SegmenterMetadata, source: str) -> bytes:
    import torch

    prep = metadata.preprocessing
    height, width = (prep.height, prep.width) if prep.do_resize else (512, 512)
    # Batch 2: an example batch of 1 would let torch.export specialise the batch dimension to 1.
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("height", min=32, max=16384),
            3: torch.export.Dim("width", min=32, max=16384)}
    try:
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), _quiet_exporter_logs():
            target = Path(tmp) / "model.onnx"
            torch.onnx.export(_logits_module(model), (example,), str(target), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_shapes={"pixel_values": dims},
                              opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
            return target.read_bytes()
    except Exception as exc:  # the exporter raises many kinds; to a person each means the export failed
        raise ExportFailed(source, f"torch.onnx.export raised {error_line(exc).rstrip('.')}") from exc


@contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """The exporter logs every graph pass at INFO and warns about torchvision ops no segmenter uses."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations, not ours to fix
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_inputs(prep: Preprocessing) -> list[np.ndarray]:
    """A preprocessed synthetic photo at the model's size, and a batch of two at another size."""
    rng = np.random.default_rng(0)
    height, width = (prep.height, prep.width) if prep.do_resize else (512, 512)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                      rng.integers(0, 256, (height, width))], axis=2).astype(np.uint8)
    first = preprocess(image, prep)
    other_h, other_w = max(32, height * 3 // 4 // 32 * 32), max(32, (width * 5 // 4) // 32 * 32)
    second = rng.standard_normal((2, 3, other_h, other_w)).astype(np.float32)
    return [first, second]


def _check_against_pytorch(model: Any, onnx_bytes: bytes, metadata: SegmenterMetadata, source: str,
                           tolerance: float) -> tuple[float, tuple[tuple[int, ...], ...]]:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    module = _logits_module(model)
    worst = 0.0
    shapes = []
    for pixel_values in _check_inputs(metadata.preprocessing):
        with torch.no_grad():
            expected = module(torch.from_numpy(pixel_values)).numpy()
        (got,) = session.run(None, {INPUT_NAME: pixel_values})
        if got.shape != expected.shape:
            raise ExportFailed(source, f"ONNX gives logits of shape {got.shape} where PyTorch gives {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
        shapes.append(tuple(pixel_values.shape))
    if not worst <= tolerance:
        raise ExportFailed(source, f"ONNX and PyTorch logits differ by up to {worst:.3g}, more than {tolerance:g}")
    return worst, tuple(shapes)


def _write_with_metadata(onnx_bytes: bytes, metadata: SegmenterMetadata, output: Path, source: str) -> int:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    write_metadata(model, metadata)
    data = model.SerializeToString()
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=output.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, output)  # a reader never sees half a model
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)
