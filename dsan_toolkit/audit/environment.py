"""Recording and comparing the software/hardware environment of a run.

The keys follow the run directory's ``environment.json`` (docs/training.md). Differences are
sorted into those that can change numbers (library versions, device, CUDA) and those that
cannot (host name, time stamps).
"""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# Keys whose change can change a number; everything else is informational.
NUMERIC_KEYS: tuple[str, ...] = (
    "dsan_toolkit", "torch", "numpy", "zarr", "open_clip", "safetensors", "sklearn", "cuda",
    "cudnn", "device", "device_name", "python", "deterministic", "world_size",
)
INFO_KEYS: tuple[str, ...] = ("hostname", "platform", "started", "git_commit", "torch_threads", "backend")

_DISTS = {
    "dsan_toolkit": "dsan_toolkit", "numpy": "numpy", "zarr": "zarr", "open_clip": "open_clip_torch",
    "safetensors": "safetensors", "sklearn": "scikit-learn", "pandas": "pandas",
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(path: Path | None = None) -> str | None:
    """The toolkit source's git commit when it is a checkout (None otherwise)."""
    root = path or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def capture_environment(device: str = "cpu") -> dict[str, Any]:
    """The current environment in the ``environment.json`` schema."""
    import torch

    dev = str(device)
    if dev.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(dev))
    else:
        name = _cpu_name()
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": dev,
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, dist in _DISTS.items():
        env[key] = _version(dist)
    return env


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
        if a != b and key in set(NUMERIC_KEYS) | set(INFO_KEYS) | set(_DISTS):
            diffs.append(EnvDiff(key, a, b, key in NUMERIC_KEYS))
    return sorted(diffs, key=lambda d: (not d.numeric, d.key))
