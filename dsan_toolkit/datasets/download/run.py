"""A download run: the lock on the root, the parts one by one, the state and the report.

``<root>/.dsan-download/state.json`` records finished parts and ``complete.json`` a finished
run, so a second run does nothing and says so. A lock keeps two runs off the same root. Where
no source works the report lists what to fetch by hand and where to put it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ... import __version__
from ...config import config_hash, sha256_text, to_dict
from ...errors import InputError
from ...manifest import Manifest
from ...manifest.builtin import load_builtin_manifest
from ...utils.atomic import atomic_write_json
from ..archives import is_archive
from ..registry import get_dataset
from ..spec import ArchivePart
from .fetch import DownloadConfig, Reporter, SilentReporter, human_size
from .place import extract_and_place, place_single, video_index
from .sources import archive_cache, check_mirror, check_part, obtain, work_dir

STATE_VERSION = 1


# -- results --------------------------------------------------------------------------------
@dataclass
class PartFailure:
    """A part that did not end in place: not fetched from any source, or fetched and then
    ``refused`` when its archive was opened (unsafe members, or not a readable archive)."""

    part: ArchivePart
    reasons: list[str]
    refused: bool = False


@dataclass
class DownloadReport:
    """What a run did. ``ok`` is false when a needed part could not be fetched or extracted."""

    root: Path
    dataset: str
    already_complete: bool = False
    fetched: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[PartFailure] = field(default_factory=list)
    placed: int = 0
    extras: int = 0
    kept_existing: int = 0
    missing: list[str] = field(default_factory=list)
    total_videos: int = 0
    checksums: dict[str, str] = field(default_factory=dict)
    manual: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the lock -------------------------------------------------------------------------------
class RootLock:
    """An exclusive lock on a root's work folder, taken without waiting: a second run on the same
    root is refused. An OS file lock (``filelock``): the kernel releases it when its process ends,
    so a run that was killed leaves nothing that keeps the next one out. ``lock.owner`` next to it
    says which process holds it (for the message only)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = work_dir(root) / "lock"
        self.owner_path = self.path.with_name("lock.owner")
        self._lock = FileLock(str(self.path), timeout=0)

    def __enter__(self) -> RootLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            try:
                owner = " (" + self.owner_path.read_text(encoding="utf-8", errors="replace").strip() + ")"
            except OSError:
                owner = ""
            raise InputError(f"another `dsan download` is using {self.root}{owner}; wait for it to end") from None
        self.owner_path.write_text(f"process {os.getpid()} on {socket.gethostname()}", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock.is_locked:
            self.owner_path.unlink(missing_ok=True)
            self._lock.release()


# -- the run --------------------------------------------------------------------------------
def _run_key(manifest: Manifest, parts: Sequence[ArchivePart]) -> str:
    paths = sha256_text("\n".join(v.path for v in manifest))
    return config_hash({"manifest": manifest.name, "paths": paths, "parts": [to_dict(p) for p in parts]})


def manual_instructions(
    failures: Sequence[PartFailure], root: Path, *, title: str, manual_download: str, command: str
) -> str:
    """What went wrong with each part: refused archives (and why) apart from parts that could
    not be fetched, then what to fetch by hand and where to put it."""
    lines: list[str] = []
    refused = [f for f in failures if f.refused]
    unfetched = [f for f in failures if not f.refused]
    if refused:
        lines.append(
            f"{len(refused)} archive part(s) of {title} were fetched but REFUSED when opened "
            "(nothing of them was extracted):"
        )
        for f in refused:
            lines.append(f"  - {f.part.name}: " + f.reasons[-1].replace("\n", "\n      "))
            lines += ["      earlier: " + r for r in f.reasons[:-1]]
        lines.append(
            "  A refused archive is unsafe (members that would leave the dataset folder, links, devices) or "
            "damaged; get a clean copy from the official source."
        )
    if unfetched:
        lines.append(f"{len(unfetched)} archive part(s) of {title} could not be fetched:")
    for f in unfetched:
        p = f.part
        facts = [human_size(p.size)] + ([f"sha256 {p.sha256}"] if p.sha256 else [])
        lines.append(f"  - {p.name} ({', '.join(facts)})")
        lines += ["      " + r.replace("\n", "\n      ") for r in f.reasons]
        where = p.page or p.url
        if where:
            lines.append(f"      get it from: {where}")
    if manual_download and unfetched:
        lines.append(manual_download)
    lines.append(
        f"Put the {'good ' if refused else ''}files in one folder and run again with --from FOLDER, or put them in "
        f"{archive_cache(root)}/ and run again:\n  {command}"
    )
    return "\n".join(lines)


def download_dataset(
    manifest: Manifest,
    parts: Sequence[ArchivePart],
    root: Path,
    *,
    mirror: str | None = None,
    source_dir: Path | None = None,
    config: DownloadConfig = DownloadConfig(),
    reporter: Reporter | None = None,
    title: str | None = None,
    manual_download: str = "",
    command: str | None = None,
) -> DownloadReport:
    """Fetch, check and extract ``parts`` so that ``root`` holds ``manifest``'s videos.

    Idempotent: a finished run leaves ``complete.json`` and the next one returns at once
    (``already_complete``). Parts that cannot be fetched are reported (``failures`` and the
    ``manual`` instructions); the rest is done anyway and kept for the next run.
    """
    reporter = reporter or SilentReporter()
    root = Path(root)
    check_mirror(mirror)
    problems = [p for part in parts for p in check_part(part)]
    if problems:
        raise InputError("invalid archive parts:\n" + "\n".join(f"  - {p}" for p in problems))
    if source_dir is not None and not Path(source_dir).is_dir():
        what = "is a file, not a folder" if Path(source_dir).exists() else "folder not found"
        raise InputError(f"--from {what}: {source_dir}")
    if root.exists() and not root.is_dir():
        raise InputError(f"--root is a file, not a folder: {root}")
    try:
        return _download(manifest, parts, root, mirror, source_dir, config, reporter, title, manual_download, command)
    except OSError as exc:  # the file system said no: permissions, disk full, ...
        where = f": {exc.filename}" if exc.filename else ""
        raise InputError(
            f"file system error ({exc.strerror or exc}){where}. Finished parts and partial downloads are "
            "kept; fix the cause and run the same command again to resume."
        ) from None


def _download(
    manifest: Manifest,
    parts: Sequence[ArchivePart],
    root: Path,
    mirror: str | None,
    source_dir: Path | None,
    config: DownloadConfig,
    reporter: Reporter,
    title: str | None,
    manual_download: str,
    command: str | None,
) -> DownloadReport:
    root.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in parts if config.include_optional or not p.optional]
    title = title or manifest.name
    report = DownloadReport(root=root, dataset=manifest.name, total_videos=len(manifest))
    key = _run_key(manifest, wanted)
    index = video_index(manifest)

    with RootLock(root):
        marker_path = work_dir(root) / "complete.json"
        marker = _read_json(marker_path)
        if marker and marker.get("key") == key and all((root / p).is_file() for p in marker.get("present", [])):
            report.already_complete = True
            report.missing = list(marker.get("missing", []))
            reporter.info(f"{title} is already complete in {root}: nothing to do")
            return report

        state_path = work_dir(root) / "state.json"
        state = _read_json(state_path) or {}
        if state.get("version") != STATE_VERSION:
            state = {"version": STATE_VERSION, "parts": {}}
        present = {v.path for v in manifest if (root / v.path).is_file()}
        if len(present) == len(manifest):
            reporter.info(f"all {len(manifest)} videos of {title} are already in {root}")
        else:
            for part in wanted:
                _do_part(part, root, state, state_path, index, report, source_dir, mirror, config, reporter)
        report.missing = [v.path for v in manifest if not (root / v.path).is_file()]
        if report.ok:
            present_now = sorted(set(index.values()) - set(report.missing))
            atomic_write_json(
                marker_path,
                {
                    "key": key,
                    "dataset": manifest.name,
                    "tool": f"dsan_toolkit {__version__}",
                    "config": to_dict(config),
                    "config_hash": config_hash(config),
                    "present": present_now,
                    "missing": report.missing,
                },
            )
        else:
            report.manual = manual_instructions(
                report.failures,
                root,
                title=title,
                manual_download=manual_download,
                command=command or f"dsan download --dataset {manifest.name} --root {root}",
            )
    return report


def _do_part(
    part: ArchivePart,
    root: Path,
    state: dict[str, Any],
    state_path: Path,
    index: dict[str, str],
    report: DownloadReport,
    source_dir: Path | None,
    mirror: str | None,
    cfg: DownloadConfig,
    reporter: Reporter,
) -> None:
    done = state["parts"].get(part.name)
    if done and all((root / p).is_file() for p in done.get("placed", [])):
        report.skipped.append(part.name)
        report.checksums[part.name] = done.get("sha256", "")
        return
    reasons: list[str] = []
    got = obtain(part, root, source_dir=source_dir, mirror=mirror, cfg=cfg, reporter=reporter, reasons=reasons)
    if got is None:
        report.failures.append(PartFailure(part, reasons))
        return
    (report.fetched if got.origin == "download" else report.reused).append(part.name)
    report.checksums[part.name] = got.sha256
    size = got.path.stat().st_size
    video = index.get(part.name) or index.get(part.name.lower())
    if video is not None and not is_archive(got.path):
        placement = place_single(got, video, root)  # a part that is one video, not an archive
    else:
        extracted = extract_and_place(got, part, root, index, reporter, work_dir(root) / f"extract-{part.name}")
        if isinstance(extracted, str):
            report.failures.append(PartFailure(part, [*reasons, extracted], refused=True))
            return
        placement = extracted
    report.extracted.append(part.name)
    report.placed += placement.moved
    report.extras += placement.extras
    report.kept_existing += placement.kept_existing
    if not placement.videos:
        reporter.info(f"{part.name}: warning: it held no video of the manifest")
    state["parts"][part.name] = {
        "sha256": got.sha256,
        "size": size,
        "placed": sorted(set(placement.videos)),
        "extras": placement.extras,
    }
    atomic_write_json(state_path, state)
    if got.origin != "from" and not cfg.keep_archives:
        got.path.unlink(missing_ok=True)


# -- built-in datasets ----------------------------------------------------------------------
def download_builtin(
    name: str,
    root: Path,
    *,
    mirror: str | None = None,
    source_dir: Path | None = None,
    config: DownloadConfig = DownloadConfig(),
    reporter: Reporter | None = None,
) -> DownloadReport:
    """:func:`download_dataset` for a registered dataset (``ucf``, ``xd``)."""
    spec = get_dataset(name)
    if not spec.archives:
        raise InputError(f"dataset {name!r} declares no archive parts to download")
    flags = (f" --mirror {mirror}" if mirror else "") + (f" --from {source_dir}" if source_dir else "")
    return download_dataset(
        load_builtin_manifest(name),
        spec.archives,
        root,
        mirror=mirror,
        source_dir=source_dir,
        config=config,
        reporter=reporter,
        title=spec.title,
        manual_download=spec.manual_download,
        command=f"dsan download --dataset {name} --root {root}{flags}",
    )


__all__ = ["DownloadReport", "PartFailure", "RootLock", "download_builtin", "download_dataset", "manual_instructions"]
