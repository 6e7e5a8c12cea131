"""Reading and writing manifests as JSON Lines.

Reading collects every problem with its file and line before refusing the file; writing
is atomic (a temporary file renamed into place), so a half-written manifest never exists
under its final name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import ManifestError
from ..utils.atomic import atomic_writer
from .schema import DatasetInfo, Manifest, VideoRecord
from .validate import validate_manifest


def iter_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` lazily; raise :class:`ManifestError` on bad JSON."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest file not found") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise ManifestError(f"{path}:{lineno}: each line must be a JSON object")
                yield lineno, rec
        except UnicodeDecodeError:
            raise ManifestError(f"{path}: not a UTF-8 text file") from None


def read_manifest(path: str | Path, *, validate: bool = True) -> Manifest:
    """Read a manifest file; refuse it with every located problem when it is invalid."""
    path = Path(path)
    info: DatasetInfo | None = None
    videos: list[VideoRecord] = []
    lines: dict[str, int] = {}
    problems: list[str] = []
    for lineno, rec in iter_records(path):
        kind = rec.get("kind")
        where = f"{path}:{lineno}"
        try:
            if kind == "dataset":
                if info is not None:
                    problems.append(f"{where}: a second dataset record")
                    continue
                if lineno != 1 and videos:
                    problems.append(f"{where}: the dataset record must come before the videos")
                info = DatasetInfo.from_dict(rec)
            elif kind == "video":
                v = VideoRecord.from_dict(rec)
                lines.setdefault(v.id, lineno)
                videos.append(v)
                lines[f"#{len(videos) - 1}"] = lineno
            else:
                problems.append(f"{where}: unknown record kind {kind!r} (expected 'dataset' or 'video')")
        except KeyError as exc:
            problems.append(f"{where}: missing field {exc.args[0]!r}")
        except (TypeError, ValueError) as exc:
            problems.append(f"{where}: {exc}")
    if info is None:
        problems.insert(0, f'{path}: no dataset record (first line must have "kind": "dataset")')
    if problems:
        raise ManifestError(f"invalid manifest {path}", problems)
    assert info is not None
    manifest = Manifest(info, tuple(videos))
    if validate:
        located = [lines[f"#{i}"] for i in range(len(videos))]
        validate_manifest(manifest, source=str(path), line_numbers=located)
    return manifest


def write_manifest(manifest: Manifest, path: str | Path, *, validate: bool = True) -> Path:
    """Validate, then write atomically."""
    path = Path(path)
    if validate:
        validate_manifest(manifest, source=str(path))
    with atomic_writer(path) as fh:
        for rec in manifest.to_records():
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path
