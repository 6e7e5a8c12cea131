"""Checks on user-given output paths, made before any work is done."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

__all__ = ["input_file", "output_file", "output_folder"]


def output_folder(path: str | Path, what: str = "--out") -> Path:
    """Create folder ``path`` (and parents) or say, naming the option, why it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot create the folder ({exc.strerror or exc})") from None
    return path


def output_file(path: str | Path, what: str) -> Path:
    """Check that ``path`` can become a file: not a folder, no file in the way of its folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {path}: {parent} is a file, not a folder")
            break
    return path


def input_file(path: str | Path, what: str) -> Path:
    """Check that ``path`` is an existing file (not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise InputError(f"{what} {path}: file not found")
    return path
