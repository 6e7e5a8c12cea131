"""The registry of built-in datasets.

The built-in dataset modules declare a :class:`DatasetSpec` each (:mod:`.ucf`, :mod:`.xd`);
this registry lists them by explicit name, and :func:`register_dataset` adds others. CLI
choices and ``dsan datasets`` come from :func:`list_datasets`. The manifests themselves are
committed JSONL files loaded by :mod:`dsan_toolkit.manifest.builtin` (generated from these
specs by ``scripts/build_manifests.py``).
"""

from __future__ import annotations

from ..errors import InputError
from .spec import DatasetSpec

_DATASETS: dict[str, DatasetSpec] = {}
_BUILTIN_LOADED = False


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    _DATASETS[spec.name] = spec
    return spec


def _load_builtin() -> None:
    # The built-in specs, by explicit name (no package scan); imported on first use.
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    from .ucf import UCF
    from .xd import XD

    _BUILTIN_LOADED = True
    for spec in (UCF, XD):
        register_dataset(spec)


def list_datasets() -> list[str]:
    _load_builtin()
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    _load_builtin()
    try:
        return _DATASETS[name]
    except KeyError:
        raise InputError(
            f"unknown dataset {name!r}; built-in datasets are: {', '.join(sorted(_DATASETS))}. "
            "For your own videos build a manifest with `dsan manifest create` and pass its file."
        ) from None


__all__ = ["get_dataset", "list_datasets", "register_dataset"]
