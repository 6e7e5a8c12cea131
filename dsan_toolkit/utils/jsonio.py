"""Reading a JSON record a command reuses: every failure is an :class:`InputError` naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["read_json_object"]


def read_json_object(path: str | Path, what: str, *, hint: str = "") -> dict[str, Any]:
    """The JSON object in ``path`` (a ``what``: "lock file", "run config", ...); missing,
    unreadable, not JSON or not an object each raise :class:`InputError`, with ``hint`` (what
    to do) appended."""
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found{tail}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable {what} ({exc}){tail}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a {what} (expected a JSON object){tail}")
    return data
