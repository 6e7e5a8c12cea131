"""Manifest validation: every rule, every problem located by file and line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import PurePosixPath

from ..errors import ManifestError
from .schema import SPLITS, Manifest


def find_problems(
    manifest: Manifest, *, source: str = "<manifest>", line_numbers: Sequence[int] | None = None
) -> list[str]:
    """All problems of a manifest, as ``"source:line: reason"`` strings (empty when valid)."""
    info = manifest.info
    problems: list[str] = []
    head = f"{source}:1"

    codes = [c.code for c in info.classes]
    for code, n in Counter(codes).items():
        if n > 1:
            problems.append(f"{head}: class code {code!r} is defined {n} times")
    if not codes:
        problems.append(f"{head}: the class table is empty")
    if sum(c.normal for c in info.classes) != 1:
        problems.append(f"{head}: exactly one class must be marked normal")
    if not info.fps > 0:
        problems.append(f"{head}: fps must be positive, got {info.fps}")
    if info.snippet_len < 1:
        problems.append(f"{head}: snippet_len must be >= 1, got {info.snippet_len}")
    known = set(codes)
    normal = next((c.code for c in info.classes if c.normal), None)

    seen: dict[str, int] = {}
    for i, v in enumerate(manifest.videos):
        line = line_numbers[i] if line_numbers is not None else i + 2
        where = f"{source}:{line}"
        if not v.id:
            problems.append(f"{where}: empty video id")
        if v.id in seen:
            problems.append(f"{where}: duplicate video id {v.id!r} (first on line {seen[v.id]})")
        else:
            seen[v.id] = line
        p = PurePosixPath(v.path)
        if not v.path or p.is_absolute() or ".." in p.parts or "\\" in v.path:
            problems.append(f"{where}: path {v.path!r} must be relative to the dataset root, without '..'")
        if v.split not in SPLITS:
            problems.append(f"{where}: split {v.split!r} is not one of {list(SPLITS)}")
        if not v.labels:
            problems.append(f"{where}: video {v.id!r} has no label")
        for lab in v.labels:
            if lab not in known:
                problems.append(f"{where}: unknown class {lab!r} (known: {', '.join(codes)})")
        if normal is not None and normal in v.labels and len(v.labels) > 1:
            problems.append(f"{where}: a video cannot be both normal and anomalous")
        if v.fps is not None and not v.fps > 0:
            problems.append(f"{where}: fps must be positive, got {v.fps}")
        if v.num_frames is not None and v.num_frames < 0:
            problems.append(f"{where}: num_frames must be >= 0, got {v.num_frames}")
        for s in v.segments:
            if s.label not in known:
                problems.append(f"{where}: segment class {s.label!r} is unknown")
            elif s.label == normal:
                problems.append(f"{where}: segment [{s.start}, {s.end}) is labelled with the normal class")
            if s.start < 0:
                problems.append(f"{where}: segment [{s.start}, {s.end}) starts before frame 0")
            if s.end <= s.start:
                problems.append(f"{where}: segment [{s.start}, {s.end}) ends before it starts")
            if v.num_frames is not None and s.end > v.num_frames:
                problems.append(f"{where}: segment [{s.start}, {s.end}) lies outside the video ({v.num_frames} frames)")
        for a, b in v.frame_intervals:
            if a < 0 or b <= a:
                problems.append(f"{where}: frame interval [{a}, {b}) is empty or starts before frame 0")
            elif v.num_frames is not None and b > v.num_frames:
                problems.append(f"{where}: frame interval [{a}, {b}) lies outside the video ({v.num_frames} frames)")
        if v.frame_intervals and not v.segments:
            problems.append(f"{where}: frame_intervals without segments")
        if v.segments and normal is not None and v.labels == (normal,):
            problems.append(f"{where}: normal video {v.id!r} has anomaly segments")
    return problems


def validate_manifest(
    manifest: Manifest, *, source: str = "<manifest>", line_numbers: Sequence[int] | None = None
) -> None:
    """Raise :class:`ManifestError` listing every problem, or return when the manifest is valid."""
    problems = find_problems(manifest, source=source, line_numbers=line_numbers)
    if problems:
        raise ManifestError(f"invalid manifest {source}", problems)
