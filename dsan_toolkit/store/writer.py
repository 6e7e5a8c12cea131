"""Writing feature stores: resumable, atomic per video, shared by disjoint writers.

A :class:`StoreWriter` is used by extraction, import and the synthetic generator::

    with StoreWriter(path, spec, rank=rank) as w:
        for vid in w.pending_ids():
            w.write_video(vid, feats, num_frames=n, fps=fps)      # or begin_video() + rows
        w.finalize()

Semantics:
- creating a store is atomic (built in ``.NAME.creating-HOST-PID`` and renamed into place), so
  two ranks starting at once agree on one store; such folders left by killed processes are
  removed by the next writer (:func:`remove_stale_creating`);
- a store made from a different :meth:`StoreSpec.identity` is refused, never appended to;
- every video becomes visible complete or not at all (staging + directory rename); a writer
  first removes its own rank's staging debris, so a SIGKILLed run rerun with the same
  command completes the store with nothing lost or duplicated;
- :meth:`finalize` (under the store's file lock, :func:`~.index.store_lock`) consolidates the per-video
  records into the index and marks the store complete when every manifest video has a record.
  Run by every writer, the last one to finish sees all records.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np

from ..config import config_hash
from ..errors import InputError
from .index import FinalizeResult, finalize_store, read_root_attrs, scan_records, store_lock
from .schema import (
    DIMENSION_NAMES,
    FORMAT_NAME,
    META_GROUP,
    SCHEMA_VERSION,
    STAGING_DIR,
    STATUS_DONE,
    STATUS_FAILED,
    STORAGE_DTYPES,
    VIDEOS_GROUP,
    StoreSpec,
    library_versions,
    video_key,
)


def _zarr():
    import zarr

    return zarr


CREATING_TAG = ".creating-"  # a store is built in ``.NAME.creating-HOST-PID`` next to it, then renamed
_HOST = socket.gethostname().replace("/", "_") or "localhost"


def _pid_alive(pid: int, since: float) -> bool:
    """Whether ``pid`` runs here and may be the process that made something at time ``since``.

    A PID that was reused by a process started after ``since`` is not the creator (Linux:
    start time from ``/proc``); elsewhere a live PID counts as alive.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time after boot, clock ticks
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK") <= since + 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def remove_stale_creating(path: str | Path) -> list[Path]:
    """Remove the temporary creation folders of ``path`` left by dead processes of this host.

    A writer killed (SIGKILL, power loss) while creating a store leaves
    ``.NAME.creating-HOST-PID`` next to it. Folders whose process is gone are removed;
    those of live processes or of other hosts (a shared file system) are left alone.
    Returns the removed folders.
    """
    path = Path(path)
    prefix = f".{path.name}{CREATING_TAG}"
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.iterdir():
        if not tmp.name.startswith(prefix):
            continue
        host, _, pid_text = tmp.name[len(prefix) :].rpartition("-")
        if (host and host != _HOST) or not pid_text.isdigit():
            continue  # another machine's (or not ours): its PID means nothing here
        try:
            since = tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        if _pid_alive(int(pid_text), since):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


class VideoSink:
    """Rows of one video written block by block into a staging array, then committed.

    Rows arriving in order are buffered up to a whole chunk along T before they are written,
    so small blocks never cause read-modify-write of a chunk; memory stays one chunk per video.
    """

    def __init__(self, writer: StoreWriter, video_id: str, key: str, arr: Any, staging: Path, T: int) -> None:
        self._writer = writer
        self.video_id = video_id
        self.key = key
        self._arr = arr
        self._staging = staging
        self.T = T
        self._chunk = int(arr.chunks[1])
        self._buf = np.empty((arr.shape[0], self._chunk, arr.shape[2]), dtype=writer.spec.dtype)
        self._buf_start = 0  # first row of the buffered chunk
        self._buf_fill = 0  # rows buffered
        self._written = 0  # rows written or buffered, in order

    def write_rows(self, t0: int, rows: np.ndarray) -> None:
        """Write rows ``[t0, t0 + n)`` for all crops; ``rows`` is (crops, n, D), in order."""
        n = rows.shape[1]
        if t0 != self._written or t0 + n > self.T:
            raise ValueError(f"{self.video_id}: rows [{t0}, {t0 + n}) out of order (next {self._written}, T {self.T})")
        pos = 0
        while pos < n:
            take = min(n - pos, self._chunk - self._buf_fill)
            self._buf[:, self._buf_fill : self._buf_fill + take] = rows[:, pos : pos + take]
            self._buf_fill += take
            pos += take
            end = self._buf_start + self._buf_fill
            if self._buf_fill == self._chunk or end == self.T:
                self._arr[:, self._buf_start : end, :] = self._buf[:, : self._buf_fill]
                self._buf_start, self._buf_fill = end, 0
        self._written += n

    def commit(self) -> None:
        if self._written != self.T:
            raise RuntimeError(f"{self.video_id}: {self.T - self._written} of {self.T} rows were never written")
        self._writer._commit(self._staging, self.key)

    def abort(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)


class StoreWriter:
    """Create or reopen a store for ``spec`` and write videos into it (see module doc)."""

    def __init__(self, path: str | Path, spec: StoreSpec, *, rank: int = 0, overwrite: bool = False) -> None:
        if spec.dtype not in STORAGE_DTYPES:
            raise InputError(f"storage dtype must be one of {STORAGE_DTYPES}, not {spec.dtype!r}")
        if not spec.crops:
            raise InputError("a store needs at least one crop")
        self.path = Path(path)
        self.spec = spec
        self.rank = rank
        self.overwrite = overwrite
        self.config_hash = config_hash(spec.identity())
        self._keys = {v.id: video_key(i) for i, v in enumerate(spec.manifest.videos)}
        self._invalidated = False

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def open(self) -> None:
        if self.overwrite and self.path.exists():
            if read_root_attrs(self.path) is None and any(self.path.iterdir()):
                raise InputError(f"{self.path} exists and is not a dsan feature store; refusing to overwrite it")
            shutil.rmtree(self.path)
        remove_stale_creating(self.path)
        if not self.path.exists():
            self._create()
        attrs = read_root_attrs(self.path)
        if attrs is None:
            raise InputError(f"{self.path} exists and is not a dsan feature store; choose another output path")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise InputError(
                f"{self.path} has store schema version {attrs.get('schema_version')}, this toolkit writes "
                f"{SCHEMA_VERSION}; write to a new store"
            )
        if attrs.get("config_hash") != self.config_hash:
            raise InputError(
                f"{self.path} was made with a different configuration (config hash "
                f"{str(attrs.get('config_hash'))[:12]}, this run {self.config_hash[:12]}; dataset "
                f"{attrs.get('dataset')!r}, snippet {attrs.get('snippet_rule')!r}, crops {attrs.get('crops')}). "
                "It is never appended to: use a new --out, or --overwrite to replace it."
            )
        staging = self._staging_root()
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)

    def _root_attrs(self) -> dict[str, Any]:
        s = self.spec
        m = s.manifest
        attrs: dict[str, Any] = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "dataset": m.name,
            "manifest_hash": m.content_hash(),
            "num_videos": len(m),
            "backbone": s.backbone,
            "random_weights": s.random_weights,
            "preprocessing": s.preprocessing,
            "snippet_len": s.snippet_len,
            "snippet_rule": s.snippet_rule,
            "crops": list(s.crops),
            "feature_dim": s.feature_dim,
            "dtype": s.dtype,
            "chunk_t": s.chunk_t,
            "producer": s.producer,
            "versions": library_versions(),
            "config": s.config,
            "config_hash": self.config_hash,
            "complete": False,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **s.extra,
        }
        if s.random_weights:
            attrs["warning"] = (
                "RANDOM WEIGHTS: these features come from a randomly initialised backbone "
                f"({s.backbone.get('model')}); they are for tests and demos, not for results"
            )
        return attrs

    def _create(self) -> None:
        zarr = _zarr()
        from zarr.storage import LocalStore

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}{CREATING_TAG}{_HOST}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        store = LocalStore(tmp)
        root = zarr.create_group(store, attributes=self._root_attrs())
        root.create_group(META_GROUP, attributes={"manifest": self.spec.manifest.to_records()})
        root.create_group(VIDEOS_GROUP)
        try:
            os.rename(tmp, self.path)
        except OSError:
            # Another writer created it first (or it appeared meanwhile): use theirs.
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.path.exists():
                raise

    def _staging_root(self) -> Path:
        return self.path / STAGING_DIR / f"r{self.rank}"

    # -- state -------------------------------------------------------------------------
    def key(self, video_id: str) -> str:
        try:
            return self._keys[video_id]
        except KeyError:
            raise InputError(f"video {video_id!r} is not in the store's manifest") from None

    def records(self) -> dict[str, dict[str, Any]]:
        """Committed records by video id."""
        return {r["id"]: r for r in scan_records(self.path).values()}

    def done_ids(self) -> set[str]:
        return {vid for vid, r in self.records().items() if r.get("status") == STATUS_DONE}

    def pending_ids(self, ids: list[str] | None = None) -> list[str]:
        """Ids (manifest order, or ``ids``' order) without a ``done`` record: failed ones are retried."""
        done = self.done_ids()
        chosen = ids if ids is not None else [v.id for v in self.spec.manifest.videos]
        return [vid for vid in chosen if vid not in done]

    # -- writing -----------------------------------------------------------------------
    def _invalidate(self) -> None:
        if self._invalidated:
            return
        attrs = read_root_attrs(self.path) or {}
        if attrs.get("complete"):
            with store_lock(self.path):
                self._set_root_attrs({"complete": False})
        self._invalidated = True

    def _set_root_attrs(self, updates: dict[str, Any]) -> None:
        zarr = _zarr()
        g = zarr.open_group(str(self.path), mode="r+")
        g.attrs.update(updates)

    def _create_staging_array(self, video_id: str, T: int, record: dict[str, Any]) -> tuple[str, Path, Any]:
        zarr = _zarr()
        from zarr.storage import LocalStore

        self._invalidate()
        key = self.key(video_id)
        staging = self._staging_root() / key
        shutil.rmtree(staging, ignore_errors=True)
        C, D = len(self.spec.crops), self.spec.feature_dim
        attrs = {"id": video_id, "config_hash": self.config_hash, **record}
        arr = zarr.create_array(
            LocalStore(staging),
            shape=(C, T, D),
            chunks=(1, max(1, min(self.spec.chunk_t, T)), D),
            dtype=self.spec.dtype,
            compressors=None,
            fill_value=0.0,
            dimension_names=DIMENSION_NAMES,
            attributes=attrs,
        )
        return key, staging, arr

    def begin_video(
        self,
        video_id: str,
        T: int,
        *,
        num_frames: int | None,
        fps: float | None,
        padded: bool = False,
        flags: tuple[str, ...] = (),
    ) -> VideoSink:
        """Start a video of ``T`` rows; write blocks with ``write_rows`` then ``commit``.
        ``flags``: reasons to doubt the video that did not stop its import (shown by info/check)."""
        if T < 1:
            raise ValueError(f"{video_id}: a done video needs at least one row")
        record = {
            "status": STATUS_DONE,
            "T": int(T),
            "num_frames": num_frames,
            "fps": fps,
            "error": None,
            "padded": padded,
            "flags": list(flags),
        }
        key, staging, arr = self._create_staging_array(video_id, T, record)
        return VideoSink(self, video_id, key, arr, staging, T)

    def write_video(
        self,
        video_id: str,
        feats: np.ndarray,
        *,
        num_frames: int | None = None,
        fps: float | None = None,
        padded: bool = False,
        flags: tuple[str, ...] = (),
    ) -> None:
        """Write a whole video at once: ``feats`` is (crops, T, D)."""
        feats = np.asarray(feats)
        C, D = len(self.spec.crops), self.spec.feature_dim
        if feats.ndim != 3 or feats.shape[0] != C or feats.shape[2] != D:
            raise InputError(f"{video_id}: features of shape {feats.shape}, expected ({C}, T, {D})")
        sink = self.begin_video(video_id, feats.shape[1], num_frames=num_frames, fps=fps, padded=padded, flags=flags)
        sink.write_rows(0, feats)
        sink.commit()

    def fail_video(self, video_id: str, error: str, *, num_frames: int | None = None, fps: float | None = None) -> None:
        """Record a video as failed with its reason (an empty array carries the record)."""
        record = {
            "status": STATUS_FAILED,
            "T": 0,
            "num_frames": num_frames,
            "fps": fps,
            "error": str(error),
            "padded": False,
        }
        key, staging, _ = self._create_staging_array(video_id, 0, record)
        self._commit(staging, key)

    def _commit(self, staging: Path, key: str) -> None:
        final = self.path / VIDEOS_GROUP / key
        if final.exists():
            shutil.rmtree(final)  # a failed record being replaced, or a rewrite
        os.rename(staging, final)

    # -- consolidation -----------------------------------------------------------------
    def finalize(self) -> FinalizeResult:
        """Consolidate the per-video records into the index; mark complete when nothing is missing."""
        return finalize_store(self.path)
