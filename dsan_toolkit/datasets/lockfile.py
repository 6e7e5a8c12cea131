"""The lock file of ``dsan verify``: what was found for each video of a dataset under a root.

JSON (see :mod:`.verify` for an example), written atomically; later steps (extraction, feature
import, audits) read it with :func:`read_lock`, and a new verify run reports what changed since
the previous one (:func:`diff_locks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..manifest import Manifest
from ..media.probe import VideoProbe
from ..utils.atomic import atomic_write_json
from ..utils.jsonio import read_json_object

LOCK_VERSION = 1
# fields of a lock entry compared between runs
COMPARED_FIELDS: tuple[str, ...] = ("status", "size", "num_frames", "fps", "width", "height", "sha256")


@dataclass(frozen=True)
class LockFile:
    """A lock file's content."""

    dataset: str
    manifest_hash: str
    videos: dict[str, dict[str, Any]]
    toolkit_version: str = ""
    created: str = ""
    root: str = ""
    decode: str = "ends"
    checksums: bool = False
    lock_version: int = LOCK_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "lock_version": self.lock_version,
            "toolkit_version": self.toolkit_version,
            "created": self.created,
            "dataset": self.dataset,
            "manifest_hash": self.manifest_hash,
            "root": self.root,
            "decode": self.decode,
            "checksums": self.checksums,
            "videos": self.videos,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockFile:
        videos = d["videos"]
        if not isinstance(videos, dict) or not all(isinstance(v, dict) for v in videos.values()):
            raise TypeError("'videos' must map video ids to objects")
        return cls(
            dataset=str(d["dataset"]),
            manifest_hash=str(d["manifest_hash"]),
            videos={str(k): dict(v) for k, v in videos.items()},
            toolkit_version=str(d.get("toolkit_version", "")),
            created=str(d.get("created", "")),
            root=str(d.get("root", "")),
            decode=str(d.get("decode", "ends")),
            checksums=bool(d.get("checksums", False)),
            lock_version=int(d.get("lock_version", LOCK_VERSION)),
        )

    def probe_of(self, video_id: str) -> VideoProbe | None:
        """The recorded probe of a video that was ok, else None."""
        e = self.videos.get(video_id)
        if not e or e.get("status") != "ok":
            return None
        return VideoProbe.from_dict(e)


@dataclass(frozen=True)
class LockDiff:
    """What changed since the previous lock file."""

    changed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # id -> "field: old -> new"
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.changed or self.added or self.removed)


def default_lock_path(manifest: Manifest, root: str | Path, split: str | None = None) -> Path:
    """``ROOT/<dataset>.lock.json`` (``<dataset>-<split>.lock.json`` for one split)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", manifest.name).strip("._") or "dataset"
    return Path(root) / (f"{stem}-{split}.lock.json" if split else f"{stem}.lock.json")


def read_lock(path: str | Path) -> LockFile:
    """Read a lock file; :class:`InputError` when it is not one."""
    path = Path(path)
    data = read_json_object(path, "lock file", hint="delete it or choose another --lock")
    try:
        return LockFile.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a lock file (bad or missing field {exc})") from None


def write_lock(lock: LockFile, path: str | Path) -> Path:
    """Write a lock file atomically."""
    return atomic_write_json(path, lock.to_dict(), indent=1, sort_keys=True)


def _fmt(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"
    return "-" if value is None else str(value)


def diff_locks(old: LockFile, new: LockFile) -> LockDiff:
    """Videos changed, added and removed between two locks of the same dataset."""
    changed: dict[str, tuple[str, ...]] = {}
    for vid in sorted(set(old.videos) & set(new.videos)):
        a, b = old.videos[vid], new.videos[vid]
        if a.get("status") != b.get("status") and not (a.get("num_frames") and b.get("num_frames")):
            # a video that (no longer) decodes: its status says it all
            changed[vid] = (f"status: {a.get('status')} -> {b.get('status')}",)
            continue
        diffs = []
        for f in COMPARED_FIELDS:
            if f == "sha256" and not (a.get(f) and b.get(f)):
                continue  # compared only when both runs hashed the file
            if a.get(f) != b.get(f):
                diffs.append(f"{f}: {_fmt(a.get(f))} -> {_fmt(b.get(f))}")
        if diffs:
            changed[vid] = tuple(diffs)
    notes = []
    if old.manifest_hash != new.manifest_hash:
        notes.append("the manifest changed since the lock was written")
    if old.checksums and not new.checksums:
        notes.append("the previous lock has checksums; run with --checksums to compare file contents")
    return LockDiff(
        changed=changed,
        added=tuple(sorted(set(new.videos) - set(old.videos))),
        removed=tuple(sorted(set(old.videos) - set(new.videos))),
        notes=tuple(notes),
    )


__all__ = [
    "COMPARED_FIELDS",
    "LOCK_VERSION",
    "LockDiff",
    "LockFile",
    "default_lock_path",
    "diff_locks",
    "read_lock",
    "write_lock",
]
