"""The ``environment.json`` record of a run (schema: docs/training.md)."""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

_DISTS = {
    "dsan_toolkit": "dsan_toolkit",
    "numpy": "numpy",
    "zarr": "zarr",
    "open_clip": "open_clip_torch",
    "safetensors": "safetensors",
    "sklearn": "scikit-learn",
    "pandas": "pandas",
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


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def capture_environment(
    device: str | torch.device = "cpu",
    *,
    world_size: int = 1,
    backend: str | None = None,
    deterministic: bool = False,
) -> dict[str, Any]:
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" and torch.cuda.is_available() else _cpu_name()
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(dev),
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "world_size": world_size,
        "backend": backend,
        "deterministic": deterministic,
        "git_commit": _git_commit(),
        "started": now_iso(),
    }
    for key, dist in _DISTS.items():
        env[key] = _version(dist)
    return env
