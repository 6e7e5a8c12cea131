"""What native code (decord's C++ logger, FFmpeg) writes to file descriptor 2, captured.

decord logs ``[12:00:00] .../video_reader.cc:83: ERROR opening: a.mp4, Invalid data found when
processing input`` to fd 2 before it raises a bare ``Error reading a.mp4...``: the reason is in
the log, not in the exception. :func:`capture_native_stderr` sends fd 2 to an unlinked
temporary file around a decord call and hands back what was written, so the reason goes into
the video's failure record instead of the terminal.

The redirection is process-wide (file descriptors are), so it is shared: the first capture to
start redirects fd 2, the last to end restores it, each gets the text written during its own
span (with concurrent captures in several threads a span may hold another thread's lines too:
:func:`clean_native_text` drops lines that name another file). Python's own ``sys.stderr`` keeps
writing to the terminal meanwhile: while fd 2 is redirected, a ``sys.stderr`` that writes to
fd 2 is replaced by a stream on a copy of the original fd 2 (and put back after). Every path
out, exceptions included, restores fd 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

STDERR_FD = 2
MAX_DETAIL = 300  # characters of native text kept in a failure reason

# "[12:00:00] /src/video/video_reader.cc:83: " (dmlc logging), possibly repeated (nested checks)
_DMLC_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+?\.(?:cc|h|cpp):\d+: ")
# "[h264 @ 0x55d0c0a8c2c0] " (FFmpeg's av_log context)
_AV_PREFIX = re.compile(r"^\[(\S+) @ 0x[0-9a-f]+\] ")
_OPENING = re.compile(r"^ERROR opening: (.*), ")
_STACK = re.compile(r"^(Stack trace|\s*\[bt\]|\s*\d+: )")


@dataclass
class Captured:
    """What native code wrote to fd 2 during one :func:`capture_native_stderr` (set at its end)."""

    text: str = ""


class _Redirect:
    """The process's shared fd-2 redirection (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved_fd = -1  # a copy of the original fd 2
        self.log: IO[bytes] | None = None  # the unlinked file fd 2 points to meanwhile
        self.py_stderr: Any = None  # the sys.stderr replaced meanwhile
        self.stream: IO[str] | None = None  # its replacement, on saved_fd

    def enter(self) -> int | None:
        """Start a span; its start offset in the log (None: fd 2 cannot be redirected)."""
        with self.lock:
            if self.depth == 0 and not self._redirect():
                return None
            self.depth += 1
            assert self.log is not None
            return os.fstat(self.log.fileno()).st_size

    def exit(self, start: int) -> str:
        """End a span started at ``start``; the text written since."""
        with self.lock:
            assert self.log is not None
            fd = self.log.fileno()
            end = os.fstat(fd).st_size
            data = os.pread(fd, end - start, start) if end > start else b""
            self.depth -= 1
            if self.depth == 0:
                self._restore()
        return data.decode("utf-8", "replace")

    def _redirect(self) -> bool:
        with contextlib.suppress(Exception):
            sys.stderr.flush()  # what Python wrote so far goes where it was going
        try:
            saved = os.dup(STDERR_FD)
        except OSError:  # no fd 2 at all
            return False
        log = tempfile.TemporaryFile(mode="a+b", buffering=0, prefix="dsan-native-")
        os.dup2(log.fileno(), STDERR_FD)
        self.saved_fd, self.log = saved, log
        if _writes_to_fd2(sys.stderr):
            self.py_stderr = sys.stderr
            self.stream = open(
                os.dup(saved),
                "w",
                buffering=1,
                encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                errors=getattr(sys.stderr, "errors", None) or "backslashreplace",
            )
            sys.stderr = self.stream
        return True

    def _restore(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.flush()
            if sys.stderr is self.stream:  # replaced again meanwhile: leave that one alone
                sys.stderr = self.py_stderr
                self.stream.close()
            self.stream = self.py_stderr = None
        os.dup2(self.saved_fd, STDERR_FD)
        os.close(self.saved_fd)
        assert self.log is not None
        self.log.close()
        self.saved_fd, self.log = -1, None


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return stream is not None and stream.fileno() == STDERR_FD
    except (AttributeError, OSError, ValueError):  # no fileno (captured by a test runner, ...)
        return False


_redirect = _Redirect()


def _reset_after_fork() -> None:  # a lock held by another thread at fork would never be released
    global _redirect
    _redirect = _Redirect()


os.register_at_fork(after_in_child=_reset_after_fork)


@contextlib.contextmanager
def capture_native_stderr() -> Iterator[Captured]:
    """Capture what is written to fd 2 in the block; ``.text`` holds it after the block."""
    out = Captured()
    start = _redirect.enter()
    if start is None:
        yield out
        return
    try:
        yield out
    finally:
        out.text = _redirect.exit(start)


def clean_native_text(text: str, path: str | os.PathLike[str] | None = None) -> str:
    """Captured native lines -> one line for a failure reason: source locations, FFmpeg
    context addresses, stack traces and repeats dropped; ``ERROR opening: PATH, why`` -> ``why``;
    lines naming another file than ``path`` (another thread's) dropped; at most
    :data:`MAX_DETAIL` characters."""
    own = None if path is None else os.fspath(path)
    kept: list[str] = []
    for raw in text.splitlines():
        line = _DMLC_PREFIX.sub("", raw).strip()
        if not line or _STACK.match(line):
            continue
        m = _OPENING.match(line)
        if m:
            if own is not None and m.group(1) != own:
                continue
            line = line[m.end() :]
        line = _AV_PREFIX.sub(lambda a: a.group(1) + ": ", line)
        if line not in kept:
            kept.append(line)
    joined = "; ".join(kept)
    return joined if len(joined) <= MAX_DETAIL else joined[: MAX_DETAIL - 3] + "..."


__all__ = ["Captured", "MAX_DETAIL", "capture_native_stderr", "clean_native_text"]
