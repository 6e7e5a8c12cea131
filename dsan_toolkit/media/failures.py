"""Why a video cannot be used: one word per kind, shared by the probe, verify and extract.

A failure reason reads ``"<kind>: <detail>"`` (:func:`reason`), e.g. ``"empty: zero bytes"`` or
``"unreadable: Invalid data found when processing input"``. The same file gets the same kind
from :func:`~dsan_toolkit.media.probe.probe_video` (``dsan verify``'s status) and from the
extraction reader (the reason recorded in a store), because both classify it here
(:func:`file_failure`) and in :func:`~dsan_toolkit.media.probe.open_video`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MISSING = "missing"
EMPTY = "empty"
UNREADABLE = "unreadable"
UNDECODABLE = "undecodable"
DECODER_CRASHED = "decoder crashed"
DECODER_HUNG = "decoder hung"

# kind -> what it means (docs/verify.md and docs/extraction.md list the same)
FAILURE_KINDS: dict[str, str] = {
    MISSING: "no file at the path",
    EMPTY: "the file has zero bytes",
    UNREADABLE: "decord cannot open it: not a video, a cut-off download, a corrupted container, a folder",
    UNDECODABLE: "it opens but has no video frames, or frames fail to decode",
    DECODER_CRASHED: "decoding it killed the worker process, twice (extraction only)",
    DECODER_HUNG: "one decode call outlasted --decode-timeout, twice (extraction only)",
}
# what a probe of the file can find (the failure statuses of `dsan verify`)
FILE_KINDS: tuple[str, ...] = (MISSING, EMPTY, UNREADABLE, UNDECODABLE)


def reason(kind: str, detail: str) -> str:
    """``"<kind>: <detail>"``, the one-line form stored with a failed video."""
    if kind not in FAILURE_KINDS:
        raise ValueError(f"unknown failure kind {kind!r}")
    return f"{kind}: {detail}" if detail else kind


def kind_of(text: str) -> str | None:
    """The kind a reason starts with (``None``: not a reason of this vocabulary)."""
    return next((k for k in FAILURE_KINDS if text == k or text.startswith(k + ":")), None)


def file_failure(path: str | Path) -> tuple[str, str] | None:
    """``(kind, detail)`` when ``path`` is not a non-empty regular file, else ``None``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return MISSING, "no such file"
    except OSError as exc:
        return UNREADABLE, exc.strerror or str(exc)
    if not stat.S_ISREG(st.st_mode):
        return UNREADABLE, "not a regular file"
    if st.st_size == 0:
        return EMPTY, "zero bytes"
    return None


__all__ = [
    "DECODER_CRASHED",
    "DECODER_HUNG",
    "EMPTY",
    "FAILURE_KINDS",
    "FILE_KINDS",
    "MISSING",
    "UNDECODABLE",
    "UNREADABLE",
    "file_failure",
    "kind_of",
    "reason",
]
