"""Segmentation benchmark: SegFormer-B2 (random weights) on ONNX Runtime against PyTorch eager, and the cache.

Usage (from the repository root)::

    .venv/bin/python bench/segmentation.py [--size 512] [--repeats 10] [--json PATH]

The model is the architecture of ``mattmdjaga/segformer_b2_clothes`` (MiT-B2 encoder,
768-wide decoder, 18 human-parsing labels) built from its config with random weights,
so nothing is downloaded; speed does not depend on the weights' values. It is saved
with ``save_pretrained`` and exported by ChatEdit's own export code, then timed on
one 512×512 image, batch 1, on the CPU:

* ``model``: the network alone: ``torch`` eager (``no_grad``, ``eval``) on the
  preprocessed tensor, against ``onnxruntime`` on the same tensor.
* ``pipeline``: image in, label map out: transformers' image processor + eager model +
  ``interpolate`` + ``argmax`` (the model card's recipe), against ChatEdit's
  ``OnnxSegmenter.segment``.
* ``cache``: ``jobs.segmentation.segment_image`` on a temporary SQLite database: the
  first call for an image (inference, storing the label map; the session is already
  loaded) against a repeat (read from the cache).

Each figure is the median of ``--repeats`` runs after warm-up runs; the two sides of a
comparison run in turn within each round, and every comparison is a ratio within this run. The benchmark only reports; it never fails on a target.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, bench/ is first on sys.path; the repository root goes there instead, so
# `core` imports and no script here can shadow a standard-library module.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

ATR_LABELS = ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
              "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf")


def segformer_b2(model_dir: Path) -> Any:
    """SegFormer-B2 for 18 labels with random weights, saved with its image processor (512×512)."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    config = SegformerConfig(
        num_encoder_blocks=4, depths=[3, 4, 6, 3], sr_ratios=[8, 4, 2, 1], hidden_sizes=[64, 128, 320, 512],
        patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], num_attention_heads=[1, 2, 5, 8], mlp_ratios=[4, 4, 4, 4],
        decoder_hidden_size=768, num_labels=len(ATR_LABELS), id2label=dict(enumerate(ATR_LABELS)),
        label2id={name: i for i, name in enumerate(ATR_LABELS)},
    )
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(model_dir)
    SegformerImageProcessor(size={"height": 512, "width": 512}).save_pretrained(model_dir)
    return model


def median_s(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    return paired_medians_s([fn], repeats, warmup)[0]


def paired_medians_s(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function, run in turn within every round, so a busy moment of a
    shared machine slows all of them alike instead of skewing one side of the ratio."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


def photo(size: int) -> np.ndarray:
    """A smooth synthetic photo (gradients and noise): what the input looks like does not change the speed."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([xx * 255 // (size - 1), yy * 255 // (size - 1), rng.integers(0, 256, (size, size))],
                    axis=2).astype(np.uint8)


def bench_model_and_pipeline(model: Any, model_dir: Path, onnx_path: Path, size: int,
                             repeats: int) -> dict[str, float]:
    import torch
    from transformers import SegformerImageProcessor

    from core.segmentation import load_segmenter, preprocess

    segmenter = load_segmenter(onnx_path)
    image = photo(size)
    pixels = preprocess(image, segmenter.metadata.preprocessing)
    tensor = torch.from_numpy(pixels)

    def torch_model() -> None:
        with torch.no_grad():
            model(pixel_values=tensor)

    processor = SegformerImageProcessor.from_pretrained(model_dir)

    def torch_pipeline() -> None:
        inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits
        torch.nn.functional.interpolate(logits, size=image.shape[:2], mode="bilinear",
                                        align_corners=False).argmax(1)

    torch_model_s, onnx_model_s = paired_medians_s([torch_model, lambda: segmenter.logits(pixels)], repeats)
    torch_pipeline_s, onnx_pipeline_s = paired_medians_s([torch_pipeline, lambda: segmenter.segment(image)], repeats)
    figures = {
        "torch_model_ms": torch_model_s * 1000, "onnx_model_ms": onnx_model_s * 1000,
        "torch_pipeline_ms": torch_pipeline_s * 1000, "onnx_pipeline_ms": onnx_pipeline_s * 1000,
    }
    figures["model_speedup"] = figures["torch_model_ms"] / figures["onnx_model_ms"]
    figures["pipeline_speedup"] = figures["torch_pipeline_ms"] / figures["onnx_pipeline_ms"]
    figures["provider"] = segmenter.provider  # type: ignore[assignment]
    return figures


def bench_cache(onnx_path: Path, size: int, repeats: int, workdir: Path) -> dict[str, float]:
    from core.settings import load_settings
    from db.migrate import upgrade
    from jobs.images import encode_png, store_upload
    from jobs.segmentation import segment_image
    from jobs.services import Services

    settings = load_settings(data_dir=workdir / "data", database_url=f"sqlite:///{workdir / 'bench.db'}")
    services = Services.from_settings(settings)
    upgrade(services.database)
    try:
        image = photo(size)
        warm = store_upload(services, encode_png(image[::-1].copy())).id
        segment_image(services, warm, onnx_path)  # loads the session: not part of "first call"
        firsts = []
        for i in range(3):
            variant = image.copy()
            variant[0, 0] = (i, i, i)  # other bytes: a new image, a cache miss
            image_id = store_upload(services, encode_png(variant)).id
            started = time.perf_counter()
            record = segment_image(services, image_id, onnx_path)
            firsts.append(time.perf_counter() - started)
            assert not record.cached
        repeat_s = median_s(lambda: segment_image(services, image_id, onnx_path), repeats * 5)
        assert segment_image(services, image_id, onnx_path).cached
    finally:
        services.close()
    first_s = statistics.median(firsts)
    return {"first_call_ms": first_s * 1000, "cached_repeat_ms": repeat_s * 1000, "cache_speedup": first_s / repeat_s}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_pressure() -> str | None:
    """Linux PSI: the share of time some task waited for a CPU (others' load on a shared machine)."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="Image side in pixels (default 512).")
    parser.add_argument("--repeats", type=int, default=10, help="Timed runs per figure; the median counts.")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep (or reuse) the model directory and ONNX file here instead of a temp dir.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import onnxruntime
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        model_dir, onnx_path = root / "segformer-b2-random", root / "segformer-b2-random.onnx"
        model = segformer_b2(model_dir)
        export_s = None
        if not onnx_path.exists():
            from core.segmentation.export import export_segmenter

            report = export_segmenter(str(model_dir), onnx_path)
            export_s, max_diff = report.seconds, report.max_abs_diff
        else:
            max_diff = None
        figures: dict[str, Any] = {
            "benchmark": "segmentation", "size": args.size, "batch": 1, "repeats": args.repeats,
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "onnx_mb": round(onnx_path.stat().st_size / 1e6, 1),
            "export_s": None if export_s is None else round(export_s, 1),
            "export_max_abs_diff": max_diff,
        }
        figures.update(bench_model_and_pipeline(model, model_dir, onnx_path, args.size, args.repeats))
        figures.update(bench_cache(onnx_path, args.size, args.repeats, Path(tmp)))
    figures.update({
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
        "transformers": transformers.__version__, "cpus": os.cpu_count(),
        "machine": f"{platform.machine()}, {cpu_name()}",
        "cpu_pressure": cpu_pressure(),
    })
    for key, value in figures.items():
        if isinstance(value, float):
            figures[key] = round(value, 2) if value >= 0.01 else float(f"{value:.3g}")
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
