"""Built-in datasets (UCF-Crime, XD-Violence), custom and synthetic datasets.

``load_builtin_manifest`` is :func:`dsan_toolkit.manifest.builtin.load_builtin_manifest`."""

from ..manifest.builtin import load_builtin_manifest
from .registry import get_dataset, list_datasets
from .spec import DatasetSpec

__all__ = ["DatasetSpec", "get_dataset", "list_datasets", "load_builtin_manifest"]
