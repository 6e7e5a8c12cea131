"""The per-video records of a store and their consolidated index, read without Zarr machinery.

Each committed video array carries its record in its attributes (:func:`scan_records` reads
the small ``zarr.json`` files directly); :func:`finalize_store` consolidates them, in manifest
order, into the ``index`` group and marks the store complete when no video is missing. It runs
under :func:`store_lock`, so that ranks finishing at once do not interleave.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import InputError
from .schema import (
    FORMAT_NAME,
    INDEX_GROUP,
    LOCK_SUFFIX,
    META_GROUP,
    RECORD_FIELDS,
    STAGING_DIR,
    STATUS_DONE,
    STATUS_FAILED,
    VIDEOS_GROUP,
)


def read_root_attrs(path: Path) -> dict[str, Any] | None:
    """The root attributes if ``path`` is a dsan store, else None (no Zarr machinery)."""
    meta = path / "zarr.json"
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    attrs = doc.get("attributes") or {}
    return attrs if attrs.get("format") == FORMAT_NAME else None


def scan_records(path: Path) -> dict[str, dict[str, Any]]:
    """Per-video records (array attributes) of every committed video, by key.

    Reads the small ``zarr.json`` files directly; an unreadable one is skipped (it cannot be
    a committed video, commits are atomic renames of complete arrays).
    """
    out: dict[str, dict[str, Any]] = {}
    vdir = path / VIDEOS_GROUP
    if not vdir.is_dir():
        return out
    with os.scandir(vdir) as it:
        for entry in it:
            if not entry.is_dir() or not entry.name.startswith("v"):
                continue
            try:
                doc = json.loads((Path(entry.path) / "zarr.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            attrs = doc.get("attributes") or {}
            if "id" in attrs and "status" in attrs:
                out[entry.name] = attrs
    return out


def store_lock(path: Path) -> FileLock:
    """The store's exclusive lock, ``.NAME.lock`` next to the store (inside it, a file that is no
    Zarr node would make zarr warn whenever the root is listed): ``with`` waits for it. An OS
    file lock (``filelock``), released by the kernel when its process ends."""
    path = Path(path)
    return FileLock(str(path.parent / f".{path.name}{LOCK_SUFFIX}"))


@dataclass(frozen=True)
class FinalizeResult:
    complete: bool
    done: int
    failed: int
    missing: int


def build_index(path: Path, manifest_ids: list[str]) -> dict[str, list[Any]]:
    """The index columns (manifest order) from the committed records."""
    records = {r["id"]: (key, r) for key, r in scan_records(path).items()}
    cols: dict[str, list[Any]] = {"key": []}
    for f in RECORD_FIELDS:
        cols[f] = []
    for vid in manifest_ids:
        if vid not in records:
            continue
        key, r = records[vid]
        cols["key"].append(key)
        for f in RECORD_FIELDS:
            cols[f].append(r.get(f))
    return cols


def finalize_store(path: str | Path) -> FinalizeResult:
    """Consolidate a store's index (used by writers and ``dsan store finalize``)."""
    import zarr

    path = Path(path)
    attrs = read_root_attrs(path)
    if attrs is None:
        raise InputError(f"{path} is not a dsan feature store")
    with store_lock(path):
        meta = json.loads((path / META_GROUP / "zarr.json").read_text(encoding="utf-8"))["attributes"]
        ids = [r["id"] for r in meta["manifest"] if r.get("kind") == "video"]
        cols = build_index(path, ids)
        done = sum(s == STATUS_DONE for s in cols["status"])
        failed = sum(s == STATUS_FAILED for s in cols["status"])
        missing = len(ids) - len(cols["id"])
        root = zarr.open_group(str(path), mode="r+")
        if INDEX_GROUP in root:
            root[INDEX_GROUP].attrs.put(cols)
        else:
            root.create_group(INDEX_GROUP, attributes=cols)
        root.attrs.update({"complete": missing == 0, "num_done": done, "num_failed": failed, "num_missing": missing})
        shutil.rmtree(path / STAGING_DIR, ignore_errors=True) if missing == 0 else None
    return FinalizeResult(complete=missing == 0, done=done, failed=failed, missing=missing)


__all__ = ["FinalizeResult", "build_index", "finalize_store", "read_root_attrs", "scan_records", "store_lock"]
