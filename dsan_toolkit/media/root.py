"""Does a folder hold a dataset's videos? Checked before anything is written.

A root that holds none, or few, of the selected videos is almost always the wrong folder (a
parent or sibling of the real one, another dataset, a copy of one split), and running on it
would write a lock file of missing videos or a store of failed ones. :func:`check_video_root`
refuses it, **when no video is found or more than half of them are missing**, unless the copy
is declared partial (``allow_missing``, the commands' ``--allow-missing``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

MAX_MISSING_SHARE = 0.5  # more than this share of the selected videos missing: the root looks wrong


class RootLooksWrong(InputError):
    """The root holds none or few of the selected videos (nothing was written)."""


@dataclass(frozen=True)
class RootPresence:
    """How many of the selected videos exist under a root."""

    root: Path
    total: int
    found: int
    example_missing: str | None  # one expected path (root joined) that does not exist
    found_by_split: dict[str, int]
    total_by_split: dict[str, int]

    @property
    def looks_wrong(self) -> bool:
        missing = self.total - self.found
        return self.total > 0 and (self.found == 0 or missing > MAX_MISSING_SHARE * self.total)

    def split_hint(self) -> str | None:
        """The one split every found video belongs to, when the selection has several."""
        present = [s for s, n in self.found_by_split.items() if n]
        return present[0] if len(self.total_by_split) > 1 and len(present) == 1 else None


def video_presence(root: str | Path, paths: Sequence[str], splits: Sequence[str] | None = None) -> RootPresence:
    """Which of ``paths`` (relative to ``root``; ``splits``: each one's split) exist."""
    root = Path(root)
    exists = [os.path.exists(root / p) for p in paths]
    labels = list(splits) if splits is not None else [""] * len(paths)
    example = next((str(root / p) for p, e in zip(paths, exists) if not e), None)
    return RootPresence(
        root=root,
        total=len(paths),
        found=sum(exists),
        example_missing=example,
        found_by_split=dict(Counter(s for s, e in zip(labels, exists) if e)),
        total_by_split=dict(Counter(labels)),
    )


def check_video_root(
    root: str | Path, paths: Sequence[str], splits: Sequence[str] | None = None, *, allow_missing: bool = False
) -> RootPresence:
    """:class:`RootLooksWrong` when no video, or fewer than half of them, exist under ``root``
    (see the module docstring), unless ``allow_missing``; the presence counts otherwise."""
    presence = video_presence(root, paths, splits)
    if allow_missing or not presence.looks_wrong:
        return presence
    split = presence.split_hint()
    advice = (
        f"the videos found are all of the {split!r} split: add --split {split}"
        if split
        else "pass the folder that holds the dataset's videos (the manifest's paths are relative to it)"
    )
    raise RootLooksWrong(
        f"{presence.root} does not look like this dataset's video root: {presence.found} of {presence.total} "
        f"videos found (e.g. {presence.example_missing} does not exist). Nothing was written; {advice}, or --allow-missing "
        "for a copy that lacks videos on purpose."
    )


__all__ = ["MAX_MISSING_SHARE", "RootLooksWrong", "RootPresence", "check_video_root", "video_presence"]
