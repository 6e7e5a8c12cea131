"""Checking a dataset's videos against its manifest, and the lock file that records them.

:func:`verify_dataset` probes every video of a manifest under a root (in a thread pool:
decord and hashlib release the GIL): present, decodable by decord (first and last frame,
or every frame with ``decode="all"``), frame count, fps, resolution, size and optionally
sha256. A video is

- ``missing`` / ``empty`` / ``unreadable`` / ``undecodable``: the failure kinds of
  :mod:`dsan_toolkit.media.failures`, the words ``dsan extract`` records for the same file,
- ``mismatch`` when the file decodes but disagrees with the manifest: ``num_frames``
  differs, the video's own ``fps`` differs (beyond ``fps_tolerance``), or a segment ends
  past the last frame,
- ``ok`` otherwise (a file whose fps differs from the dataset's *nominal* fps is ok with a
  warning, since the manifest does not pin it).

With ``lock_path`` the result is compared with the lock file already there (changed,
added and removed videos) and then written to it atomically (:mod:`.lockfile`). It is JSON::

    {"lock_version": 1, "toolkit_version": "...", "created": "2025-...Z",
     "dataset": "ucf", "manifest_hash": "<sha256>", "root": "/abs/root",
     "decode": "ends", "checksums": true,
     "videos": {"<id>": {"path": "...", "status": "ok", "num_frames": 2410, "fps": 30.0,
                         "width": 320, "height": 240, "duration": 80.33, "size": 1234,
                         "sha256": "..."}, ...}}

Later steps (extraction, audits) read it with :func:`read_lock`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import sha256_file
from ..errors import InputError
from ..manifest import Manifest, VideoRecord
from ..media.failures import FILE_KINDS
from ..media.probe import DECODE_MODES, VideoError, VideoProbe, probe_video, quiet_native_stderr
from ..media.root import check_video_root
from .lockfile import LockDiff, LockFile, diff_locks, read_lock, write_lock

STATUSES: tuple[str, ...] = ("ok", *FILE_KINDS, "mismatch")  # the failure kinds are the extraction's too


@dataclass(frozen=True)
class VideoCheck:
    """The verdict on one video."""

    id: str
    path: str
    status: str
    problems: tuple[str, ...] = ()  # why it is not ok (mismatches, decode error)
    warnings: tuple[str, ...] = ()
    probe: VideoProbe | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_lock_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, "status": self.status}
        if self.probe is not None:
            entry.update(self.probe.to_dict())
        if self.sha256 is not None:
            entry["sha256"] = self.sha256
        if self.problems:
            entry["problems"] = list(self.problems)
        return entry


@dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify_dataset`."""

    dataset: str
    manifest_hash: str
    root: str
    checks: tuple[VideoCheck, ...]
    diff: LockDiff | None = None
    lock_path: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[VideoCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def warned(self) -> tuple[VideoCheck, ...]:
        return tuple(c for c in self.checks if c.ok and c.warnings)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for c in self.checks:
            out[c.status] += 1
        return out

    def summary(self) -> str:
        n = len(self.checks)
        bad = {s: k for s, k in self.counts().items() if s != "ok" and k}
        if not bad:
            return f"all {n} videos ok"
        parts = ", ".join(f"{k} {s}" for s, k in bad.items())
        return f"{sum(bad.values())} of {n} videos have problems ({parts})"


# ----------------------------------------------------------------------------------------
# One video
# ----------------------------------------------------------------------------------------


def _compare(manifest: Manifest, v: VideoRecord, p: VideoProbe, fps_tolerance: float) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    if v.num_frames is not None and v.num_frames != p.num_frames:
        problems.append(f"num_frames: manifest {v.num_frames}, file {p.num_frames}")
    expected_fps = manifest.fps_of(v)
    if abs(p.fps - expected_fps) > fps_tolerance * expected_fps:
        msg = f"fps: manifest {expected_fps:g}, file {p.fps:g}"
        (problems if v.fps is not None else warnings).append(msg + ("" if v.fps is not None else " (nominal)"))
    for s in v.segments:
        if s.end > p.num_frames:
            problems.append(f"segment [{s.start}, {s.end}) ends past the last frame ({p.num_frames} frames)")
    return problems, warnings


def check_video(
    manifest: Manifest,
    v: VideoRecord,
    root: Path,
    *,
    checksums: bool = False,
    decode: str = "ends",
    fps_tolerance: float = 0.01,
) -> VideoCheck:
    """Check one video of ``manifest`` under ``root``."""
    path = root / v.path
    try:
        p = probe_video(path, decode=decode)  # type: ignore[arg-type]
    except VideoError as exc:
        return VideoCheck(v.id, v.path, exc.reason, problems=(exc.detail,))
    digest = sha256_file(path) if checksums else None
    problems, warnings = _compare(manifest, v, p, fps_tolerance)
    status = "mismatch" if problems else "ok"
    return VideoCheck(v.id, v.path, status, tuple(problems), tuple(warnings), p, digest)


# ----------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def verify_dataset(
    manifest: Manifest,
    root: str | Path,
    *,
    checksums: bool = False,
    workers: int | None = None,
    lock_path: str | Path | None = None,
    decode: str = "ends",
    fps_tolerance: float = 0.01,
    progress: Callable[[VideoCheck], None] | None = None,
    allow_missing: bool = False,
) -> VerifyReport:
    """Check every video of ``manifest`` under ``root``; compare with and write ``lock_path``.

    Never raises for bad videos (they are in the report); raises :class:`InputError` for a
    missing root, a bad option, or an existing lock file that is unreadable or belongs to
    another dataset, and :class:`~dsan_toolkit.media.root.RootLooksWrong` (nothing written)
    when no video or fewer than half of them exist under ``root``, unless ``allow_missing``.
    ``progress`` is called with each finished check (from this thread).
    """
    from .. import __version__

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root {root} is not a folder")
    if decode not in DECODE_MODES:
        raise InputError(f"decode must be one of {list(DECODE_MODES)}, got {decode!r}")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if not fps_tolerance >= 0:
        raise InputError(f"fps tolerance must be >= 0, got {fps_tolerance}")
    check_video_root(
        root, [v.path for v in manifest.videos], [v.split for v in manifest.videos], allow_missing=allow_missing
    )
    previous: LockFile | None = None
    if lock_path is not None and Path(lock_path).exists():
        previous = read_lock(lock_path)
        if previous.dataset != manifest.name:
            raise InputError(
                f"{lock_path}: this lock file belongs to dataset {previous.dataset!r}, not {manifest.name!r}; "
                "pass another --lock"
            )

    start = time.perf_counter()
    n_workers = workers or default_workers()

    def run(v: VideoRecord) -> VideoCheck:
        return check_video(manifest, v, root, checksums=checksums, decode=decode, fps_tolerance=fps_tolerance)

    results: dict[str, VideoCheck] = {}
    with quiet_native_stderr(), ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="verify") as pool:
        futures = [pool.submit(run, v) for v in manifest.videos]
        for fut in as_completed(futures):
            check = fut.result()
            results[check.id] = check
            if progress:
                progress(check)
    checks = tuple(results[v.id] for v in manifest.videos)

    manifest_hash = manifest.content_hash()
    diff = None
    if lock_path is not None:
        lock = LockFile(
            dataset=manifest.name,
            manifest_hash=manifest_hash,
            videos={c.id: c.to_lock_entry() for c in checks},
            toolkit_version=__version__,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            root=str(root.resolve()),
            decode=decode,
            checksums=checksums,
        )
        if previous is not None:
            diff = diff_locks(previous, lock)
        try:
            write_lock(lock, lock_path)
        except OSError as exc:
            raise InputError(
                f"cannot write the lock file {lock_path} ({exc.strerror or exc}); pass --lock FILE"
            ) from None
    return VerifyReport(
        dataset=manifest.name,
        manifest_hash=manifest_hash,
        root=str(root),
        checks=checks,
        diff=diff,
        lock_path=None if lock_path is None else str(lock_path),
        seconds=time.perf_counter() - start,
    )


__all__ = ["STATUSES", "VerifyReport", "VideoCheck", "check_video", "verify_dataset"]
