"""Built-in datasets (UCF-Crime, XD-Violence), custom and synthetic datasets."""

from .registry import DatasetSpec, get_dataset, list_datasets, load_builtin_manifest

__all__ = ["DatasetSpec", "get_dataset", "list_datasets", "load_builtin_manifest"]
