"""The registry of methods: ``register_method(name)`` fills it, ``get_method`` / ``list_methods`` read it.

Built-in methods live in one sub-package each and are imported by explicit name (no
package scan); a built-in package that is not present yet is skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from ..errors import InputError
from .api import Method

M = TypeVar("M", bound=type[Method])

_METHODS: dict[str, Method] = {}
BUILTIN_METHODS: tuple[str, ...] = ("dsanet", "vadclip", "mil", "zeroshot")
_loaded = False


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Method` subclass under ``name``."""

    def deco(cls: M) -> M:
        if name in _METHODS and type(_METHODS[name]) is not cls:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _METHODS[name] = cls()
        return cls

    return deco


def _load_builtin() -> None:
    """Import every built-in method package once; the registry counts as loaded only when all
    imports succeeded (a failed import raises again on the next call instead of leaving a
    silently partial registry)."""
    global _loaded
    if _loaded:
        return
    for name in BUILTIN_METHODS:
        module = f"{__package__}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # only a missing built-in package is tolerated
            if exc.name not in (module, f"{module}.method"):
                raise
    _loaded = True


def list_methods() -> list[str]:
    _load_builtin()
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    _load_builtin()
    if name not in _METHODS:
        raise InputError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]
