"""What an exported segmenter carries inside its ONNX file, so the runtime needs nothing else.

Our export command writes the label names (the model's ``id2label``), the preprocessing
of its image processor and a model id into the ONNX ``metadata_props``. The model id
names the weights, not the file: ``<source>@<sha256 of the weights, 12 hex>``, so a
re-export of the same weights keeps cached label maps valid and new weights never reuse them.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.segmentation.errors import InvalidSegmenter, SegmenterNotFound

if TYPE_CHECKING:
    import onnx

    from core.segmentation.composite import CompositeManifest

FORMAT_VERSION = "1"
KEY_FORMAT = "chatedit.format"
KEY_MODEL_ID = "chatedit.model_id"
KEY_SOURCE = "chatedit.source"
KEY_LABELS = "chatedit.label_names"
KEY_PREPROCESSING = "chatedit.preprocessing"
#: The ONNX graph's input and output names, fixed by the export.
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
#: Pillow filters an image processor may name (by PIL enum value or name).
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
MODEL_ID_MAX_CHARS = 255


@dataclass(frozen=True)
class Preprocessing:
    """The image processor's steps, in its order: resize, rescale, normalise (then HWC → CHW)."""

    do_resize: bool = True
    height: int = 512
    width: int = 512
    resample: str = "bilinear"
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE_NAMES.values():
            raise ValueError(f"unknown resample filter {self.resample!r}; use one of {', '.join(RESAMPLE_NAMES.values())}")
        if self.do_resize and (self.height < 1 or self.width < 1):
            raise ValueError(f"the resize target must be at least 1×1, got {self.width}×{self.height}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or any(s == 0 for s in self.image_std):
            raise ValueError("image_mean and image_std need three values each, and no std may be 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        values = dict(data)
        for key in ("image_mean", "image_std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


@dataclass(frozen=True)
class SegmenterMetadata:
    model_id: str
    source: str
    label_names: tuple[str, ...]
    preprocessing: Preprocessing

    def __post_init__(self) -> None:
        if not self.model_id or len(self.model_id) > MODEL_ID_MAX_CHARS:
            raise ValueError(f"a model id needs 1 to {MODEL_ID_MAX_CHARS} characters, got {len(self.model_id)}")
        if not self.label_names:
            raise ValueError("a segmenter needs at least one label name")

    def to_props(self) -> dict[str, str]:
        return {
            KEY_FORMAT: FORMAT_VERSION,
            KEY_MODEL_ID: self.model_id,
            KEY_SOURCE: self.source,
            KEY_LABELS: json.dumps(list(self.label_names), ensure_ascii=False),
            KEY_PREPROCESSING: json.dumps(asdict(self.preprocessing)),
        }

    @classmethod
    def from_props(cls, props: dict[str, str]) -> SegmenterMetadata:
        """Raises ``ValueError`` (with what is wrong) for metadata our export did not write."""
        if props.get(KEY_FORMAT) != FORMAT_VERSION:
            found = props.get(KEY_FORMAT)
            raise ValueError("it has no ChatEdit metadata (export it with `chatedit models export-segmenter`)"
                             if found is None else f"its metadata format {found!r} is not {FORMAT_VERSION!r}")
        try:
            labels = json.loads(props[KEY_LABELS])
            preprocessing = Preprocessing.from_dict(json.loads(props[KEY_PREPROCESSING]))
            if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
                raise ValueError("the label names are not a list of strings")
            return cls(model_id=props[KEY_MODEL_ID], source=props.get(KEY_SOURCE, ""), label_names=tuple(labels),
                       preprocessing=preprocessing)
        except KeyError as exc:
            raise ValueError(f"its metadata lacks {exc.args[0]}") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"its metadata is damaged ({exc})") from None


def model_id_for(source: str, weights_sha256: str) -> str:
    """``<source>@<12 hex>``; a local directory is named by its last part, not the machine's path."""
    name = source.rstrip("/\\")
    if os.path.isdir(name):
        name = Path(name).name
    suffix = "@" + weights_sha256[:12]
    return name[: MODEL_ID_MAX_CHARS - len(suffix)] + suffix


def write_metadata(model: onnx.ModelProto, metadata: SegmenterMetadata) -> None:
    """Replace the model's ChatEdit metadata (other producers' entries stay)."""
    props = metadata.to_props()
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: Path | str) -> SegmenterMetadata | CompositeManifest:
    """The metadata of an exported segmenter, or a composite segmenter folder's manifest; read once per version."""
    path = Path(path)
    if path.is_dir():
        from core.segmentation.composite import read_manifest

        return read_manifest(path)
    try:
        stat = path.resolve().stat()
    except FileNotFoundError:
        raise SegmenterNotFound(path) from None
    if not path.is_file():
        raise InvalidSegmenter(path, "it is not a file")
    return _read_metadata(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _read_metadata(path: str, mtime_ns: int, size: int) -> SegmenterMetadata:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise InvalidSegmenter(Path(path), f"it is not an ONNX model ({type(exc).__name__})") from None
    try:
        return SegmenterMetadata.from_props({p.key: p.value for p in model.metadata_props})
    except ValueError as exc:
        raise InvalidSegmenter(Path(path), str(exc)) from None
