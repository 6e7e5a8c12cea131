"""The CSV files of ``dsan manifest create``: ``labels.csv`` (one row per video) and the
optional ``classes.csv`` (the class table), parsed and checked row by row.

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

Every bad row is reported as ``file:line: reason``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError, ManifestError
from ..manifest import ClassInfo
from ..manifest.schema import SPLITS

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


def derive_classes(rows: list[LabelRow], normal: str) -> tuple[ClassInfo, ...]:
    codes = {lab for r in rows for lab in r.labels} | {s[2] for r in rows for s in r.segments if s[2]}
    codes.discard(normal)
    return (ClassInfo(normal, normal.lower(), normal.lower(), normal=True),) + tuple(
        ClassInfo(c, c, c) for c in sorted(codes)
    )


__all__ = [
    "CLASSES_COLUMNS",
    "LABELS_COLUMNS",
    "REQUIRED_COLUMNS",
    "LabelRow",
    "derive_classes",
    "parse_labels_csv",
    "read_classes_csv",
    "read_labels_csv",
]
