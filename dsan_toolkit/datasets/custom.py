"""Manifests for your own videos: ``dsan manifest create --videos DIR --labels labels.csv``.

``labels.csv`` (UTF-8, a header row, one row per video)::

    path,split,labels,segments
    normal/cam1_0001.mp4,train,Normal,
    fire/cam2_0007.mp4,train,Fire,
    test/cam3_0002.mp4,test,Fire|Smoke,120-240:Fire;300-360:Smoke
    test/cam3_0005.mp4,test,Normal,

- ``path``: the video file, relative to ``DIR`` (``/`` separators). Required.
- ``split``: ``train`` or ``test``. Required.
- ``labels``: class codes joined by ``|``; empty means the normal class.
- ``segments`` (optional column): anomalous frame intervals ``start-end:CLASS`` joined by
  ``;``, 0-based, ``end`` exclusive (``[start, end)``). ``:CLASS`` may be left out when the
  video has exactly one anomaly label.
- ``id`` (optional column): the video id; default: the file name without its extension.

``classes.csv`` (optional; header ``code,name,prompt,normal``) fixes the class table and
its order (the order of the text prompts); ``normal`` is ``1``/``true``/``yes`` for
exactly one class. Without it the classes are the normal class (``--normal``, default
``Normal``) followed by the other codes of ``labels.csv`` in sorted order, each with its
code as name and prompt.

Every video is probed with decord (frame count and fps go into the manifest); the
dataset's nominal fps is the most common one. Every bad row is reported as
``file:line: reason`` before anything is written. Rows whose video is missing or cannot be
decoded refuse the whole file by default; ``--unreadable keep`` keeps them with a ``note``
(``dsan verify`` and ``dsan extract`` then record them as failed) and ``--unreadable skip``
leaves them out; either way they are listed.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from ..errors import InputError, ManifestError
from ..manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord
from ..manifest.schema import SPLITS
from ..manifest.validate import find_problems
from ..media.probe import VideoError, VideoProbe, probe_video, quiet_native_stderr

LABELS_COLUMNS: tuple[str, ...] = ("path", "split", "labels", "segments", "id")
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "split")
CLASSES_COLUMNS: tuple[str, ...] = ("code", "name", "prompt", "normal")
_SEGMENT = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*(?::\s*(\S+?)\s*)?$")
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}


@dataclass(frozen=True)
class LabelRow:
    """One parsed row of ``labels.csv`` (before probing)."""

    line: int
    id: str
    path: str
    split: str
    labels: tuple[str, ...]  # empty: the normal class
    segments: tuple[tuple[int, int, str | None], ...]


def _open_csv(path: Path, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line, row)`` pairs of a CSV file; :class:`InputError` when unreadable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a {what} CSV file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    reader = csv.reader(text.splitlines())
    rows = list(reader)
    if not rows or not any(c.strip() for c in rows[0]):
        raise InputError(f"{path}:1: empty file; the first line must be a header")
    header = [c.strip().lower() for c in rows[0]]
    out: list[tuple[int, dict[str, str]]] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header):
            out.append((lineno, {"__error__": f"{len(row)} fields, the header has {len(header)}"}))
            continue
        out.append((lineno, {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}))
    return header, out


def _parse_segments(text: str) -> tuple[tuple[int, int, str | None], ...]:
    out = []
    for part in (p for p in text.split(";") if p.strip()):
        m = _SEGMENT.match(part)
        if not m:
            raise ValueError(f"segment {part.strip()!r} is not 'start-end' or 'start-end:CLASS'")
        out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return tuple(out)


def read_labels_csv(path: str | Path) -> list[LabelRow]:
    """Parse ``labels.csv``; :class:`ManifestError` lists every bad row as ``file:line: reason``."""
    rows, problems = parse_labels_csv(Path(path))
    if problems:
        raise ManifestError(f"invalid labels file {path}", problems)
    return rows


def parse_labels_csv(path: Path) -> tuple[list[LabelRow], list[str]]:
    """The good rows of ``labels.csv`` and a located problem for every bad one."""
    header, rows = _open_csv(path, "labels")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{path}:1: missing column(s) {missing}; expected a header like 'path,split,labels,segments'"
        )
    unknown = [c for c in header if c not in LABELS_COLUMNS]
    if unknown:
        raise ManifestError(f"{path}:1: unknown column(s) {unknown}; known: {list(LABELS_COLUMNS)}")
    problems: list[str] = []
    out: list[LabelRow] = []
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        if "__error__" in row:
            problems.append(f"{where}: {row['__error__']}")
            continue
        rel = row["path"].replace("\\", "/")
        p = PurePosixPath(rel)
        if not rel:
            problems.append(f"{where}: empty path")
            continue
        if p.is_absolute() or ".." in p.parts:
            problems.append(f"{where}: path {rel!r} must be relative to the videos folder, without '..'")
            continue
        split = row["split"]
        if split not in SPLITS:
            problems.append(f"{where}: split {split!r} is not one of {list(SPLITS)}")
            continue
        labels = tuple(x.strip() for x in row.get("labels", "").split("|") if x.strip())
        try:
            segments = _parse_segments(row.get("segments", ""))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        vid = row.get("id") or p.stem
        out.append(LabelRow(lineno, vid, rel, split, labels, segments))
    if not out and not problems:
        raise ManifestError(f"{path}: no video rows after the header")
    return out, problems


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(f"normal must be 1/0, true/false or yes/no, got {text!r}")


def read_classes_csv(path: str | Path) -> tuple[ClassInfo, ...]:
    """Parse ``classes.csv`` (``code,name,prompt,normal``; name and prompt default to the code)."""
    path = Path(path)
    header, rows = _open_csv(path, "classes")
    if "code" not in header:
        raise ManifestError(f"{path}:1: missing column 'code'; expected a header 'code,name,prompt,normal'")
    unknown = [c for c in header if c not in CLASSES_COLUMNS]
    if unknown:
        raise ManifestError(f"{path}:1: unknown column(s) {unknown}; known: {list(CLASSES_COLUMNS)}")
    problems: list[str] = []
    classes: list[ClassInfo] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        if "__error__" in row:
            problems.append(f"{where}: {row['__error__']}")
            continue
        code = row["code"]
        if not code or "|" in code or ";" in code or ":" in code:
            problems.append(f"{where}: class code {code!r} must be non-empty without '|', ';' or ':'")
            continue
        if code in seen:
            problems.append(f"{where}: class {code!r} defined again (first on line {seen[code]})")
            continue
        seen[code] = lineno
        try:
            normal = _parse_bool(row.get("normal", ""))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        name = row.get("name") or code
        classes.append(ClassInfo(code=code, name=name, prompt=row.get("prompt") or name, normal=normal))
    if not problems and sum(c.normal for c in classes) != 1:
        problems.append(f"{path}: exactly one class must have normal=1 (found {sum(c.normal for c in classes)})")
    if problems:
        raise ManifestError(f"invalid classes file {path}", problems)
    return tuple(classes)


def _derive_classes(rows: list[LabelRow], normal: str) -> tuple[ClassInfo, ...]:
    codes = {lab for r in rows for lab in r.labels} | {s[2] for r in rows for s in r.segments if s[2]}
    codes.discard(normal)
    return (ClassInfo(normal, normal.lower(), normal.lower(), normal=True),) + tuple(
        ClassInfo(c, c, c) for c in sorted(codes)
    )


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
    row: LabelRow, probe: VideoProbe | None, normal: str, known: set[str], where: str, note: str | None = None,
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
        id=row.id, path=row.path, split=row.split, labels=labels, segments=tuple(segments),
        fps=None if probe is None else round(probe.fps, 6), num_frames=None if probe is None else probe.num_frames,
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
        classes = _derive_classes(rows, normal)
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
        hint = ("; or pass --unreadable keep (rows kept, marked; verify/extract record them as failed) or "
                "--unreadable skip (rows left out)") if unreadable == "refuse" and bad_videos else ""
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
    "CLASSES_COLUMNS",
    "LABELS_COLUMNS",
    "UNREADABLE_POLICIES",
    "LabelRow",
    "ManifestBuild",
    "UnreadableRow",
    "build_manifest",
    "create_manifest",
    "read_classes_csv",
    "parse_labels_csv",
    "read_labels_csv",
    "unlisted_videos",
]
