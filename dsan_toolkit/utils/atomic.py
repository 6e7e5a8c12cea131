"""Atomic file writes: a file either appears complete under its name or not at all.

Every writer creates a temporary file in the destination's folder (so the final
``os.replace`` is a rename on one file system), writes and fsyncs it, gives it the
permissions a plain ``open()`` would have given it under the current umask
(``tempfile.mkstemp`` creates files with mode 0600), renames it into place and removes
it again on any failure, Ctrl-C included. A file-system refusal of the writer's own
steps (read-only folder, no space left, a folder or a file in the way) becomes an
:class:`~dsan_toolkit.errors.InputError` naming the destination.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import InputError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "current_umask",
    "default_dir_mode",
    "default_file_mode",
]

_UMASK_LOCK = threading.Lock()
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore at once (racy only against other umask users)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 minus the umask (0644 usually)."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 minus the umask (``mkdtemp`` gives 0700)."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    For writers that want a file name rather than a handle (video muxers, copies,
    ``safetensors.save_file``). ``suffix`` lets such a writer see the right extension.
    The parent folder is created; on any exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename in (str(tmp), tmp) or exc.errno in _NO_ROOM:
            raise _cannot_write(path, exc) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", *, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Yield an open handle (``mode`` "w" text or "wb" bytes) whose file replaces ``path`` on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as fh:
                yield fh
        else:
            with open(tmp, "w", encoding=encoding, newline="") as fh:
                yield fh


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_writer(path, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(
    path: str | Path, data: Any, *, indent: int | None = 1, sort_keys: bool = True, ensure_ascii: bool = True
) -> Path:
    """Write ``data`` as JSON (UTF-8, a final newline) atomically; returns ``path``."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii) + "\n"
    return atomic_write_text(path, text)


def _cannot_write(path: Path, exc: OSError) -> InputError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        reason = "a file is in the way of its folder"
    return InputError(f"cannot write {path}: {reason}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
