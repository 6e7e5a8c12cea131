"""One progress protocol for long library functions.

A long function takes an optional ``on_event`` listener and calls it with
:class:`ProgressEvent` values: a counted task starts (``TASK``), advances (``ADVANCE``) and
ends (``DONE``, with a one-line summary), and free-form ``MESSAGE`` lines. The library never
draws anything: the CLI renders the events (a rich bar on a terminal, plain lines in logs);
without a listener the messages and task summaries go to the library's logger.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

TASK, ADVANCE, DONE, MESSAGE = "task", "advance", "done", "message"
KINDS = (TASK, ADVANCE, DONE, MESSAGE)


@dataclass(frozen=True)
class ProgressEvent:
    """``kind`` is one of :data:`KINDS`; ``task`` names the counted task (TASK/ADVANCE/DONE)."""

    kind: str
    task: str = ""
    total: int | None = None  # TASK: items to do
    completed: int = 0  # TASK: items already done (a resumed task)
    advance: int = 0  # ADVANCE: items done since the last event
    text: str = ""  # ADVANCE: a short status; DONE: the task's summary; MESSAGE: the line
    fields: dict[str, Any] = field(default_factory=dict)  # machine-readable details


Listener = Callable[[ProgressEvent], None]


def emitter(on_event: Listener | None, logger: logging.Logger) -> Listener:
    """``on_event``, or a listener that logs messages and task summaries to ``logger``."""
    if on_event is not None:
        return on_event

    def log(ev: ProgressEvent) -> None:
        if ev.kind in (MESSAGE, DONE) and ev.text:
            logger.info(ev.text)

    return log


def message(text: str, **fields: Any) -> ProgressEvent:
    return ProgressEvent(MESSAGE, text=text, fields=fields)


@contextlib.contextmanager
def counted(
    on_event: Listener | None, name: str, total: int | None, *, unit: str = ""
) -> Iterator[Callable[..., None]]:
    """A counted task for code that only counts: yields ``advance(n=1, text="")``; the task
    ends with the summary ``NAME: done/total UNIT in S s``. Without a listener nothing is sent."""
    count = [0]

    def advance(n: int = 1, text: str = "") -> None:
        count[0] += n
        if on_event is not None:
            on_event(ProgressEvent(ADVANCE, name, advance=n, text=text))

    t0 = time.perf_counter()
    if on_event is not None:
        on_event(ProgressEvent(TASK, name, total=total))
    try:
        yield advance
    finally:
        if on_event is not None:
            of = f"/{total}" if total is not None else ""
            on_event(
                ProgressEvent(
                    DONE,
                    name,
                    text=f"{name}: {count[0]}{of}{' ' + unit if unit else ''} in {time.perf_counter() - t0:.1f} s",
                )
            )
