"""What the layers above read from a feature store: :class:`FeatureStoreLike`.

Training, evaluation and model code take a store as this protocol, so they depend on what they
use (metadata, lengths, reads) rather than on :class:`~.reader.FeatureStore` itself; a
:class:`~.reader.FeatureStore` (:func:`~.reader.open_store`) is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..manifest import Manifest

CropArg = int | Sequence[int] | None


@runtime_checkable
class FeatureStoreLike(Protocol):
    """A readable feature store (see :class:`~.reader.FeatureStore` for each member)."""

    path: Path
    attrs: dict[str, Any]  # the store metadata (``config_hash``, ``backbone``, ``crops``, ...)

    @property
    def manifest(self) -> Manifest: ...

    @property
    def feature_dim(self) -> int: ...

    @property
    def crop_ids(self) -> list[int]: ...

    def video_ids(self, status: str | None = ...) -> list[str]: ...

    def lengths(self) -> dict[str, int]: ...

    def read(self, video_id: str, crop: CropArg = None) -> np.ndarray: ...

    def load_all(
        self, ids: Sequence[str] | None = None, crop: int = 0, *, workers: int = 4
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def content_hash(self) -> str: ...


__all__ = ["CropArg", "FeatureStoreLike"]
