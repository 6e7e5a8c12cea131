"""Turning user mistakes into one-paragraph messages and non-zero exit codes."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from ..errors import DsanError

F = TypeVar("F", bound=Callable[..., Any])

LOG_WIDTH = 240  # columns of output that is not a terminal (a log, a pipe): tables keep their natural width


def make_console(*, stderr: bool = False) -> Console:
    """A console for the CLI's output: on a terminal rich's usual one; otherwise wide, with
    soft wrapping, so that a log never breaks a path or a message in the middle."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, highlight=False, soft_wrap=stderr)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=LOG_WIDTH)


err_console = make_console(stderr=True)
console = make_console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/bold red] {message}", markup=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Decorator for command functions: :class:`DsanError` -> message + exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DsanError as exc:
            raise fail(_escape(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except OSError as exc:
            if exc.errno not in _ENVIRONMENT_ERRNOS:
                raise  # anything else is a bug: keep the traceback
            raise fail(_escape(os_error_message(exc)), 2) from None

    return wrapper  # type: ignore[return-value]


# File-system refusals a user meets (and fixes) rather than bugs of ours.
_ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENOENT,
        errno.ENAMETOOLONG,
        errno.EMFILE,
        errno.ENOTEMPTY,
        errno.EIO,
    }
)


def os_error_message(exc: OSError) -> str:
    """``OSError`` -> "cannot use PATH: reason" (the paths the OS names, no traceback)."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "a file"
    return f"cannot use {where}: {exc.strerror or exc}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
