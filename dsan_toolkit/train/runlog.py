"""The run log: ``log.jsonl`` of a run directory, one JSON event per line (schema: docs/training.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .environment import now_iso


class RunLog:
    """Appends JSON events to ``log.jsonl`` (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def size(self) -> int:
        return self.path.stat().st_size if self.enabled and self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Cut the log back to ``size`` bytes, and never leave a partial last line."""
        if not (self.enabled and self.path.exists()):
            return
        data = self.path.read_bytes()[:size]
        keep = data.rfind(b"\n") + 1
        if keep != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)

    @staticmethod
    def line(event: str, /, **fields: Any) -> bytes:
        rec = {"event": event, "time": now_iso(), **fields}
        return (json.dumps(rec, default=_json_default) + "\n").encode("utf-8")

    def append(self, line: bytes) -> None:
        if not self.enabled:
            return
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()

    def write(self, event: str, /, **fields: Any) -> None:
        if self.enabled:
            self.append(self.line(event, **fields))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.item() if o.numel() == 1 else o.tolist()
    return str(o)
