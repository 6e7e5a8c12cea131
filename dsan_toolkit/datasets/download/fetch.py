"""One file over HTTP (or ``file://``): resumable, retried, hashed while it streams.

:func:`fetch_url` downloads to ``<dest>.part``, resumes with HTTP ``Range`` (a server that
ignores it makes the download restart), retries with exponential backoff on 5xx answers and
connection errors, hashes (sha256) while it streams, checks the declared size and checksum (a
bad file is deleted, never left in place) and renames into place atomically.
:func:`verify_file` checks a file already on disk the same way.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ... import __version__
from ...config import register_config
from ...errors import DsanError, InputError
from ..spec import ArchivePart

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@register_config
@dataclass(frozen=True)
class DownloadConfig:
    """How downloads behave. ``retries`` extra attempts per source, waiting
    ``min(backoff * 2**k, backoff_max)`` seconds before attempt ``k + 1``."""

    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 60.0
    chunk_size: int = 1 << 20
    keep_archives: bool = False
    include_optional: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InputError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.backoff_max < 0:
            raise InputError("backoff delays must be >= 0")
        if self.timeout <= 0:
            raise InputError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.chunk_size <= 0:
            raise InputError(f"chunk_size must be > 0, got {self.chunk_size}")

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff * (2**attempt), self.backoff_max))


# -- progress reporting ---------------------------------------------------------------------
class Reporter(Protocol):
    """Where progress goes (the CLI shows a rich progress bar; the library default is silent)."""

    def info(self, message: str) -> None: ...

    def start(self, name: str, total: int | None, completed: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    def info(self, message: str) -> None:
        pass

    def start(self, name: str, total: int | None, completed: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def stop(self) -> None:
        pass


# -- errors ---------------------------------------------------------------------------------
class SourceFailed(DsanError):
    """One source of one part did not give a good file (the next source is tried)."""


class _Retry(Exception):
    """A transient failure: wait and try the same source again."""


class ChecksumMismatch(SourceFailed):
    pass


def human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


# -- one HTTP download ----------------------------------------------------------------------
class _Hasher:
    """sha256 of a growing ``.part`` file, carried across resumed attempts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.h = hashlib.sha256()
        self.nbytes = 0

    def sync(self, path: Path, chunk: int) -> None:
        size = path.stat().st_size if path.exists() else 0
        if size == self.nbytes:
            return
        self.reset()
        if size:
            with open(path, "rb") as fh:
                while data := fh.read(chunk):
                    self.update(data)

    def update(self, data: bytes) -> None:
        self.h.update(data)
        self.nbytes += len(data)


_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
}


def _transient(exc: BaseException) -> bool:
    """Connection-level errors worth retrying; a host name that does not resolve, a missing
    file:// path and the like are not."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return False
    if isinstance(reason, (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)):
        return True
    return isinstance(reason, OSError) and reason.errno in _TRANSIENT_ERRNOS


def _open(url: str, offset: int, cfg: DownloadConfig) -> Any:
    req = urllib.request.Request(
        url, headers={"User-Agent": f"dsan_toolkit/{__version__}", "Accept-Encoding": "identity"}
    )
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=cfg.timeout)  # noqa: S310 - schemes checked by the caller


def _attempt(
    url: str, part_file: Path, part: ArchivePart, hasher: _Hasher, cfg: DownloadConfig, reporter: Reporter
) -> None:
    """One request: resume or (re)start ``part_file``; raises :class:`_Retry` on transient errors."""
    hasher.sync(part_file, cfg.chunk_size)
    have = hasher.nbytes
    if part.size is not None and have > part.size:
        part_file.unlink()
        hasher.reset()
        have = 0
    try:
        resp = _open(url, have, cfg)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            m = re.match(r"^bytes \*/(\d+)$", (exc.headers.get("Content-Range") or "").strip())
            server_size = int(m.group(1)) if m else part.size
            if have and (server_size is None or have == server_size):
                return  # nothing left to send: the .part is whole; verification decides
            part_file.unlink(missing_ok=True)
            hasher.reset()
            raise _Retry("HTTP 416 (the partial file does not fit the server's): restarting") from None
        if exc.code >= 500 or exc.code in (408, 425, 429):
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if _transient(exc):
            raise _Retry(f"connection error: {getattr(exc, 'reason', exc)}") from None
        raise SourceFailed(f"cannot reach the host: {getattr(exc, 'reason', exc)}") from None
    with resp:
        status = getattr(resp, "status", None) or 200
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html") and not part.name.lower().endswith((".htm", ".html")):
            raise SourceFailed("the host answered with a web page instead of the file (it probably needs a browser)")
        total: int | None = None
        if status == 206:
            m = _CONTENT_RANGE.match((resp.headers.get("Content-Range") or "").strip())
            if not m or int(m.group(1)) != have:
                part_file.unlink(missing_ok=True)
                hasher.reset()
                raise _Retry("the server answered a different byte range: restarting")
            total = None if m.group(3) == "*" else int(m.group(3))
            mode = "ab"
        else:  # 200: a server that ignores Range sends everything again
            if have:
                reporter.info(f"{part.name}: the server does not resume; restarting from byte 0")
            hasher.reset()
            have = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        if part.size is not None and total is not None and total != part.size:
            raise SourceFailed(f"the server's file has {total} bytes, {part.size} expected")
        reporter.start(part.name, total, have)
        read = getattr(resp, "read1", resp.read)  # what has arrived, up to a chunk: steady progress
        try:
            with open(part_file, mode) as fh:
                while True:
                    try:
                        data = read(cfg.chunk_size)
                    except (http.client.HTTPException, OSError) as exc:  # resets, timeouts, TLS errors
                        raise _Retry(
                            f"transfer interrupted after {hasher.nbytes} bytes ({type(exc).__name__})"
                        ) from None
                    if not data:
                        break
                    fh.write(data)  # an OSError here is the local disk's: not retried
                    hasher.update(data)
                    reporter.advance(len(data))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            reporter.stop()
        if total is not None and hasher.nbytes < total:
            raise _Retry(f"connection closed early ({hasher.nbytes} of {total} bytes)")


def fetch_url(
    url: str,
    dest: Path,
    part: ArchivePart,
    *,
    config: DownloadConfig = DownloadConfig(),
    reporter: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download ``url`` to ``dest`` (via ``dest.part``, resumable) and return its sha256.

    Transient failures are retried ``config.retries`` times with exponential backoff; a size
    or checksum mismatch deletes the partial file and raises :class:`ChecksumMismatch`; any
    other failure raises :class:`SourceFailed` and keeps the ``.part`` for a later resume.
    """
    reporter = reporter or SilentReporter()
    dest = Path(dest)
    part_file = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.size is not None:
        free = shutil.disk_usage(dest.parent).free
        have = part_file.stat().st_size if part_file.exists() else 0
        if part.size - have > free:
            raise InputError(
                f"not enough disk space for {part.name}: {human_size(part.size - have)} needed, {human_size(free)} free"
            )
    hasher = _Hasher()
    errors: list[str] = []
    for attempt in range(config.retries + 1):
        try:
            _attempt(url, part_file, part, hasher, config, reporter)
            break
        except _Retry as exc:
            errors.append(str(exc))
            if attempt == config.retries:
                raise SourceFailed(f"gave up after {attempt + 1} attempts; last error: {exc}") from None
            wait = config.delay(attempt)
            reporter.info(f"{part.name}: {exc}; retrying in {wait:g} s ({attempt + 1}/{config.retries})")
            sleep(wait)
    hasher.sync(part_file, config.chunk_size)
    digest = hasher.h.hexdigest()
    problem = None
    if part.size is not None and hasher.nbytes != part.size:
        problem = f"size {hasher.nbytes} bytes, {part.size} expected"
    elif part.sha256 is not None and digest != part.sha256:
        problem = f"sha256 {digest}, {part.sha256} expected"
    if problem:
        part_file.unlink(missing_ok=True)
        raise ChecksumMismatch(f"downloaded file is wrong ({problem}); it was deleted")
    os.replace(part_file, dest)
    return digest


def verify_file(path: Path, part: ArchivePart, chunk: int) -> str:
    """sha256 of a file on disk, checked against the part's size and checksum."""
    size = path.stat().st_size
    if part.size is not None and size != part.size:
        raise ChecksumMismatch(f"{path} has {size} bytes, {part.size} expected")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            h.update(data)
    digest = h.hexdigest()
    if part.sha256 is not None and digest != part.sha256:
        raise ChecksumMismatch(f"{path} has sha256 {digest}, {part.sha256} expected")
    return digest


__all__ = [
    "ChecksumMismatch",
    "DownloadConfig",
    "Reporter",
    "SilentReporter",
    "SourceFailed",
    "fetch_url",
    "human_size",
    "verify_file",
]
