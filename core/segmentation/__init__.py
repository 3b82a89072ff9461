"""Human parsing: an ONNX-exported segmenter turns a photo into a label map (Hair, Face, Upper-clothes …).

``export`` (needs torch and transformers, imported when called) makes the ONNX file;
``runtime`` (needs onnxruntime, imported when a session is created) runs it. ``composite`` is
the embedded default: MediaPipe's networks converted to ONNX plus parts derived from their
points, installed by ``default_segmenter``. Importing this package loads none of the heavy
libraries.
"""

from core.segmentation.errors import (
    ExportFailed,
    InvalidSegmenter,
    ModelSourceUnavailable,
    SegmenterError,
    SegmenterNotFound,
)
from core.segmentation.label_maps import decode_label_map, encode_label_map
from core.segmentation.metadata import (
    Preprocessing,
    SegmenterMetadata,
    read_metadata,
    write_metadata,
)
from core.segmentation.processing import (
    MIN_SHARE,
    LabelSummary,
    preprocess,
    summarise_labels,
    upsample_argmax,
)
from core.segmentation.runtime import OnnxSegmenter, SegmentationResult, load_segmenter

__all__ = [
    "MIN_SHARE",
    "ExportFailed",
    "InvalidSegmenter",
    "LabelSummary",
    "ModelSourceUnavailable",
    "OnnxSegmenter",
    "Preprocessing",
    "SegmentationResult",
    "SegmenterError",
    "SegmenterMetadata",
    "SegmenterNotFound",
    "decode_label_map",
    "encode_label_map",
    "load_segmenter",
    "preprocess",
    "read_metadata",
    "summarise_labels",
    "upsample_argmax",
    "write_metadata",
]
