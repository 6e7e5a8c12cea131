"""Rendering the library's progress events (:mod:`dsan_toolkit.progress`) in the terminal or a log.

On a terminal a counted task is a transient rich bar; otherwise (a log, a pipe, CI) it is
plain text: one line when a task ends, and for long tasks a line every tenth of the way (at
most one per :data:`PLAIN_MIN_SECONDS`), so that a piped ``dsan train`` or ``dsan extract``
shows where it is. Messages are printed
either way. With ``enabled=False`` (``--no-progress``) only messages are printed.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from ..progress import ADVANCE, DONE, MESSAGE, TASK, ProgressEvent, counted

PLAIN_STEPS = 10  # plain-text lines per counted task at most (besides its summary)
PLAIN_MIN_SECONDS = 5.0  # and not more often than this


class ProgressRenderer:
    """A :data:`~dsan_toolkit.progress.Listener` drawing on ``console`` (use as a context manager)."""

    def __init__(self, console: Console, *, enabled: bool = True, prefix: str = "") -> None:
        self.console = console
        self.enabled = enabled
        self.prefix = prefix
        self.live = enabled and console.is_terminal
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}  # name -> rich task id, or [done, total, next line at, t0]

    def __enter__(self) -> ProgressRenderer:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def task(self, name: str, total: int | None, *, unit: str = "") -> Any:
        """A counted task for callers that only count (:func:`dsan_toolkit.progress.counted`)."""
        return counted(self, name, total, unit=unit)

    def print(self, text: str) -> None:
        self.console.print(f"{self.prefix}{text}", markup=False, highlight=False, soft_wrap=True)

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.kind == MESSAGE:
            self.print(ev.text)
        elif not self.enabled:
            return
        elif ev.kind == TASK:
            self._start(ev)
        elif ev.kind == ADVANCE:
            self._advance(ev)
        elif ev.kind == DONE:
            self._done(ev)

    def _start(self, ev: ProgressEvent) -> None:
        if self._bar is not None:
            self._tasks[ev.task] = self._bar.add_task(ev.task, total=ev.total, completed=ev.completed)
            return
        total = ev.total or 0
        step = max(1, -(-total // PLAIN_STEPS)) if total else 0
        now = time.perf_counter()
        self._tasks[ev.task] = [ev.completed, total, ev.completed + step if step else None, step, now, now]

    def _advance(self, ev: ProgressEvent) -> None:
        state = self._tasks.get(ev.task)
        if state is None:
            return
        if self._bar is not None:
            desc = f"{ev.task} {ev.text}".strip()
            self._bar.update(state, advance=ev.advance, description=desc)
            return
        state[0] += ev.advance
        done, total, next_at, step, t0, last = state
        now = time.perf_counter()
        if next_at is not None and done >= next_at and done < total and now - last >= PLAIN_MIN_SECONDS:
            state[2], state[5] = done + step, now
            self.print(
                f"{ev.task}: {done}/{total} ({100 * done // total}%), {now - t0:.0f} s"
                + (f", {ev.text}" if ev.text else "")
            )

    def _done(self, ev: ProgressEvent) -> None:
        state = self._tasks.pop(ev.task, None)
        if self._bar is not None and state is not None:
            self._bar.remove_task(state)
        if ev.text:
            self.print(ev.text)
