"""What can go wrong with a segmenter, each error carrying its data and reading as one sentence."""

from __future__ import annotations

from pathlib import Path


class SegmenterError(Exception):
    """Base class: a segmenter that cannot be exported, loaded or run."""


class SegmenterNotFound(SegmenterError, FileNotFoundError):
    """The configured ONNX file is not there."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"There is no segmenter at {path}; export one with `chatedit models export-segmenter` "
                         "or fix CHATEDIT_SEGMENTER.")
        self.path = Path(path)

    def __str__(self) -> str:  # FileNotFoundError would print its errno form
        return str(self.args[0])


class InvalidSegmenter(SegmenterError, ValueError):
    """A file that is not an ONNX segmenter made by our export command (or is damaged)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} cannot be used as a segmenter: {reason}.")
        self.path = Path(path)
        self.reason = reason


class ModelSourceUnavailable(SegmenterError, OSError):
    """The model to export could not be fetched (no network, unknown id, missing local dir)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"Cannot load the model {source!r}: {reason}.")
        self.source = source
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


class ExportFailed(SegmenterError, RuntimeError):
    """Export ran but its result cannot be trusted (the exporter failed or ONNX disagrees with PyTorch)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"Exporting {source!r} to ONNX failed: {reason}.")
        self.source = source
        self.reason = reason
