"""Placing what a part holds: a member whose file name is a manifest video's file name moves to
that video's manifest ``path`` (archives have their own top folders); any other member goes
under the part's ``extract_to``. Existing files are never overwritten. Archives are extracted
with :mod:`dsan_toolkit.datasets.archives` (refusing members that would escape, links and devices) into a staging
folder first.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ...errors import InputError
from ...manifest import Manifest
from ...utils.atomic import atomic_path
from ..archives import ArchiveError, safe_extract
from ..spec import ArchivePart
from .fetch import Reporter
from .sources import Obtained


def video_index(manifest: Manifest) -> dict[str, str]:
    """Video file name -> manifest path (file names are unique in the built-in manifests);
    lower-cased names are added as a fallback for archives with other capitalisation."""
    index: dict[str, str] = {}
    for v in manifest:
        index.setdefault(PurePosixPath(v.path).name.lower(), v.path)
    for v in manifest:
        index[PurePosixPath(v.path).name] = v.path
    return index


def inside_root(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative path without ``..`` (checked by name, so folders of the
    root that are links to other disks keep working)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise InputError(f"path {rel!r} would leave the dataset root")
    return root / p


@dataclass
class Placement:
    videos: list[str] = field(default_factory=list)  # manifest paths this archive holds
    moved: int = 0  # of those, moved into place now (the others were there already)
    extras: int = 0  # other members, put under extract_to
    kept_existing: int = 0  # members whose destination existed: the existing file was kept


def place_members(
    staging: Path, files: Iterable[str], part: ArchivePart, root: Path, index: dict[str, str]
) -> Placement:
    """Move the extracted ``files`` (relative to ``staging``) to their places under ``root``."""
    out = Placement()
    for rel in files:
        name = PurePosixPath(rel).name
        video = index.get(name) or index.get(name.lower())
        dest = inside_root(root, video if video is not None else str(PurePosixPath(part.extract_to) / rel))
        if video is not None:
            out.videos.append(video)
        if dest.exists():
            out.kept_existing += 1
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest)
        if video is not None:
            out.moved += 1
        else:
            out.extras += 1
    return out


def place_single(got: Obtained, video: str, root: Path) -> Placement:
    dest = inside_root(root, video)
    out = Placement(videos=[video])
    if dest.exists():
        out.kept_existing = 1
        return out
    dest.parent.mkdir(parents=True, exist_ok=True)
    if got.origin == "from":  # copy (a --from file is never moved), then rename into place
        with atomic_path(dest) as tmp:
            shutil.copyfile(got.path, tmp)
    else:
        os.replace(got.path, dest)
    out.moved = 1
    return out


def extract_and_place(
    got: Obtained, part: ArchivePart, root: Path, index: dict[str, str], reporter: Reporter, staging: Path
) -> Placement | str:
    """Extract into the folder ``staging``, then place; a refused archive gives the reason (str)."""
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    reporter.info(f"{part.name}: extracting")
    try:
        files = safe_extract(got.path, staging)
    except ArchiveError as exc:
        if got.origin != "from":
            got.path.unlink(missing_ok=True)  # our own copy is useless; a --from file stays untouched
        return str(exc)
    try:
        return place_members(staging, files, part, root, index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["Placement", "extract_and_place", "place_members", "place_single", "video_index"]
