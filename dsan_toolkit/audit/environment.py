"""Comparing the software/hardware environment of a run with the current one.

The keys follow the run directory's ``environment.json`` (docs/training.md), which
:func:`dsan_toolkit.train.environment.capture_environment` records. Differences are
sorted into those that can change numbers (library versions, device, CUDA) and those that
cannot (host name, time stamps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Keys whose change can change a number; everything else is informational.
NUMERIC_KEYS: tuple[str, ...] = (
    "dsan_toolkit",
    "torch",
    "numpy",
    "zarr",
    "open_clip",
    "safetensors",
    "sklearn",
    "cuda",
    "cudnn",
    "device",
    "device_name",
    "python",
    "deterministic",
    "world_size",
)
INFO_KEYS: tuple[str, ...] = ("hostname", "platform", "started", "git_commit", "torch_threads", "backend")

# Library versions recorded besides torch (informational unless also in NUMERIC_KEYS).
VERSION_KEYS: tuple[str, ...] = ("dsan_toolkit", "numpy", "zarr", "open_clip", "safetensors", "sklearn", "pandas")


@dataclass(frozen=True)
class EnvDiff:
    key: str
    recorded: Any
    current: Any
    numeric: bool  # can this difference change a number?


def compare_environments(recorded: dict[str, Any], current: dict[str, Any]) -> list[EnvDiff]:
    """Every key whose value differs, numeric-relevant ones first."""
    diffs = []
    for key in sorted(current):  # run properties (world size, determinism) are not compared
        if key == "started":
            continue
        a, b = recorded.get(key), current.get(key)
        if a != b and key in set(NUMERIC_KEYS) | set(INFO_KEYS) | set(VERSION_KEYS):
            diffs.append(EnvDiff(key, a, b, key in NUMERIC_KEYS))
    return sorted(diffs, key=lambda d: (not d.numeric, d.key))
