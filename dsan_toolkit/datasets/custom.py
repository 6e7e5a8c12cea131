"""Manifests for your own videos: ``dsan manifest create --videos DIR --labels labels.csv``.

The CSV files (``labels.csv``, one row per video, and the optional ``classes.csv``) are
described and parsed in :mod:`.labels_csv`.

Every video is probed with decord (frame count and fps go into the manifest); the
dataset's nominal fps is the most common one. Every bad row is reported as
``file:line: reason`` before anything is written. Rows whose video is missing or cannot be
decoded refuse the whole file by default; ``--unreadable keep`` keeps them with a ``note``
(``dsan verify`` and ``dsan extract`` then record them as failed) and ``--unreadable skip``
leaves them out; either way they are listed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ManifestError
from ..manifest import DatasetInfo, Manifest, Segment, VideoRecord
from ..manifest.validate import find_problems
from ..media.probe import VideoError, VideoProbe, probe_video, quiet_native_stderr
from .labels_csv import LabelRow, derive_classes, parse_labels_csv, read_classes_csv

UNREADABLE_POLICIES = ("refuse", "keep", "skip")


@dataclass(frozen=True)
class UnreadableRow:
    """A labels row whose video could not be probed: where, which file, why."""

    line: int
    path: str
    reason: str

    def text(self, labels_csv: Path | str) -> str:
        return f"{labels_csv}:{self.line}: video {self.path!r} is {self.reason}"


@dataclass(frozen=True)
class ManifestBuild:
    """A built manifest and the rows whose video could not be probed (kept or skipped)."""

    manifest: Manifest
    unreadable: tuple[UnreadableRow, ...] = ()
    policy: str = "refuse"


def _row_record(
    row: LabelRow,
    probe: VideoProbe | None,
    normal: str,
    known: set[str],
    where: str,
    note: str | None = None,
) -> tuple[VideoRecord | None, list[str]]:
    problems: list[str] = []
    labels = row.labels or (normal,)
    for lab in labels:
        if lab not in known:
            problems.append(f"{where}: unknown class {lab!r} (known: {', '.join(sorted(known))})")
    anomalies = [lab for lab in labels if lab != normal]
    if anomalies and normal in labels:
        problems.append(f"{where}: a video cannot be both normal and anomalous ({'|'.join(labels)})")
    segments: list[Segment] = []
    if row.segments and not anomalies:
        problems.append(f"{where}: a normal video cannot have anomaly segments")
        return None, problems
    for start, end, cls in row.segments:
        if cls is None:
            if len(anomalies) != 1:
                problems.append(
                    f"{where}: segment {start}-{end} needs ':CLASS' (the video has {len(anomalies)} anomaly labels)"
                )
                continue
            cls = anomalies[0]
        if cls not in labels:
            problems.append(f"{where}: segment class {cls!r} is not among the video's labels {list(labels)}")
        if end <= start:
            problems.append(f"{where}: segment {start}-{end} ends before it starts")
        if probe is not None and end > probe.num_frames:
            problems.append(f"{where}: segment {start}-{end} ends past the video ({probe.num_frames} frames)")
        segments.append(Segment(start, end, cls))
    if problems:
        return None, problems
    rec = VideoRecord(
        id=row.id,
        path=row.path,
        split=row.split,
        labels=labels,
        segments=tuple(segments),
        fps=None if probe is None else round(probe.fps, 6),
        num_frames=None if probe is None else probe.num_frames,
        note=note,
    )
    return rec, []


def _line_of(problem: str) -> int:
    m = re.match(r"^.*?:(\d+): ", problem)
    return int(m.group(1)) if m else 0


def create_manifest(videos_dir: str | Path, labels_csv: str | Path, **options: Any) -> Manifest:
    """Build (and validate) a manifest for the videos in ``videos_dir`` labelled by ``labels_csv``
    (:func:`build_manifest` without the report; the same keyword options)."""
    return build_manifest(videos_dir, labels_csv, **options).manifest


def build_manifest(
    videos_dir: str | Path,
    labels_csv: str | Path,
    *,
    classes_csv: str | Path | None = None,
    name: str | None = None,
    normal: str = "Normal",
    snippet_len: int = 16,
    description: str = "",
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    unreadable: str = "refuse",
) -> ManifestBuild:
    """Build (and validate) a manifest for the videos in ``videos_dir`` labelled by ``labels_csv``.

    Raises :class:`ManifestError` listing every problem (``file:line: reason``): bad rows,
    unknown classes, duplicate ids, segments past the end and, with ``unreadable="refuse"``
    (default), missing or undecodable videos. ``unreadable="keep"`` keeps such rows with a
    ``note`` saying why (no frame count or fps: ``dsan verify`` and ``dsan extract`` record them
    as failed until the file is fixed); ``"skip"`` leaves them out. Either way the rows are
    returned in :attr:`ManifestBuild.unreadable`.
    """
    from .verify import default_workers

    if unreadable not in UNREADABLE_POLICIES:
        raise InputError(f"unknown --unreadable {unreadable!r}; choose one of {', '.join(UNREADABLE_POLICIES)}")

    videos_dir = Path(videos_dir)
    labels_csv = Path(labels_csv)
    if not videos_dir.is_dir():
        raise InputError(f"videos folder {videos_dir} is not a folder")
    if snippet_len < 1:
        raise InputError(f"snippet length must be >= 1, got {snippet_len}")
    rows, problems = parse_labels_csv(labels_csv)
    if classes_csv is not None:
        classes = read_classes_csv(classes_csv)
        normal = next(c.code for c in classes if c.normal)
    else:
        classes = derive_classes(rows, normal)
    known = {c.code for c in classes}

    seen: dict[str, int] = {}
    for r in rows:
        if r.id in seen:
            problems.append(
                f"{labels_csv}:{r.line}: duplicate video id {r.id!r} (first on line {seen[r.id]}); "
                "add an 'id' column to tell them apart"
            )
        else:
            seen[r.id] = r.line

    def probe(r: LabelRow) -> VideoProbe | VideoError:
        try:
            return probe_video(videos_dir / r.path)
        except VideoError as exc:
            return exc
        finally:
            if progress:
                progress(r.id)  # from a worker thread

    with quiet_native_stderr(), ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        probes = list(pool.map(probe, rows))

    videos: list[VideoRecord] = []
    bad_videos: list[UnreadableRow] = []
    for r, p in zip(rows, probes):
        where = f"{labels_csv}:{r.line}"
        note = None
        if isinstance(p, VideoError):
            bad_videos.append(UnreadableRow(r.line, r.path, f"{p.reason} ({p.detail})"))
            if unreadable == "refuse":
                problems.append(bad_videos[-1].text(labels_csv))
                continue
            if unreadable == "skip":
                continue
            note = f"unreadable when the manifest was made: {p.reason} ({p.detail})"
            p = None
        rec, bad = _row_record(r, p, normal, known, where, note)
        problems.extend(bad)
        if rec is not None:
            videos.append(rec)
    if problems:
        problems.sort(key=_line_of)
        hint = (
            (
                "; or pass --unreadable keep (rows kept, marked; verify/extract record them as failed) or "
                "--unreadable skip (rows left out)"
            )
            if unreadable == "refuse" and bad_videos
            else ""
        )
        raise ManifestError(f"cannot build a manifest from {labels_csv}{hint}", problems)

    fps_counts = Counter(v.fps for v in videos if v.fps is not None)
    nominal = max(fps_counts, key=lambda f: (fps_counts[f], f)) if fps_counts else 25.0
    info = DatasetInfo(
        name=name or videos_dir.resolve().name,
        classes=classes,
        fps=float(nominal),
        snippet_len=snippet_len,
        test_crop=0,
        description=description or f"custom dataset built by `dsan manifest create` from {labels_csv.name}",
    )
    manifest = Manifest(info, tuple(videos))
    kept_lines = {r.id: r.line for r in rows}
    remaining = find_problems(manifest, source=str(labels_csv), line_numbers=[kept_lines[v.id] for v in videos])
    if remaining:
        raise ManifestError(f"cannot build a manifest from {labels_csv}", remaining)
    return ManifestBuild(manifest, tuple(bad_videos), unreadable)


VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


def unlisted_videos(
    videos_dir: str | Path, manifest: Manifest, extensions: tuple[str, ...] = VIDEO_EXTENSIONS
) -> list[str]:
    """Video files under ``videos_dir`` that the manifest does not list (relative paths)."""
    videos_dir = Path(videos_dir)
    listed = {v.path for v in manifest.videos}
    found = (p.relative_to(videos_dir).as_posix() for p in videos_dir.rglob("*") if p.suffix.lower() in extensions)
    return sorted(p for p in found if p not in listed)


__all__ = [
    "UNREADABLE_POLICIES",
    "ManifestBuild",
    "UnreadableRow",
    "build_manifest",
    "create_manifest",
    "unlisted_videos",
]
