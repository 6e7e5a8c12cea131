"""What a built-in dataset is: its name, title, manifest builder and archive parts (data).

The dataset modules (:mod:`.ucf`, :mod:`.xd`) declare one :class:`DatasetSpec` each;
:mod:`.registry` collects them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..manifest import Manifest


@dataclass(frozen=True)
class ArchivePart:
    """One downloadable archive (or file) of a dataset's videos.

    After extraction, a member whose file name is a manifest video's file name is moved to
    that video's manifest ``path`` (archives have their own top folders); any other member
    lands under ``extract_to`` with its path inside the archive.
    """

    name: str
    # Direct download URL (None when the host needs a browser or it is not known).
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    # Folder (relative to the dataset root) for members that are not manifest videos.
    extract_to: str = "."
    # Web page where a person can fetch the part by hand (shared-folder links and the like).
    page: str | None = None
    # Not needed by the manifest (downloaded only when asked for).
    optional: bool = False
    # Other file names the same archive is known under (accepted in --from folders).
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A built-in dataset: its name, title, how to build its manifest, where to get it."""

    name: str
    title: str
    homepage: str
    build_manifest: Callable[[Path], Manifest]
    archives: tuple[ArchivePart, ...] = field(default_factory=tuple)
    manual_download: str = ""


__all__ = ["ArchivePart", "DatasetSpec"]
