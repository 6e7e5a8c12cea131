"""Where a part comes from: its declaration (checked, or read from a parts file) and, in order,
``--from DIR``, the archive cache of the root, ``--mirror URL_PREFIX``, the part's own URL.

1. ``source_dir`` (``--from DIR``): the part (or one of its aliases) already on disk, used in
   place and never modified;
2. the cache ``<root>/.dsan-download/archives/``: a part downloaded (or put there) earlier;
3. ``mirror`` (``--mirror URL_PREFIX``): ``URL_PREFIX/<part name>``;
4. the part's own URL (:func:`~.fetch.fetch_url`).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...errors import InputError
from ..spec import ArchivePart
from .fetch import ChecksumMismatch, DownloadConfig, Reporter, SourceFailed, fetch_url, verify_file

WORK_DIR = ".dsan-download"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SCHEMES = ("http://", "https://", "file://")


def work_dir(root: Path) -> Path:
    return Path(root) / WORK_DIR


def archive_cache(root: Path) -> Path:
    return work_dir(root) / "archives"


def check_part(part: ArchivePart) -> list[str]:
    """Problems of a part declaration (empty when it is usable)."""
    problems: list[str] = []
    names = (part.name, *part.aliases)
    for n in names:
        if not n or "/" in n or "\\" in n or n in (".", "..") or "\x00" in n:
            problems.append(f"part name {n!r} must be a plain file name")
    if part.sha256 is not None and not _SHA256.match(part.sha256):
        problems.append(f"{part.name}: sha256 must be 64 lowercase hex digits, got {part.sha256!r}")
    if part.size is not None and part.size < 0:
        problems.append(f"{part.name}: size must be >= 0")
    if part.url is not None and not part.url.startswith(_SCHEMES):
        problems.append(f"{part.name}: url must start with http://, https:// or file://")
    rel = PurePosixPath(part.extract_to)
    if rel.is_absolute() or ".." in rel.parts:
        problems.append(f"{part.name}: extract_to must be a folder inside the root, got {part.extract_to!r}")
    return problems


_PART_KEYS = {"name", "url", "size", "sha256", "extract_to", "page", "optional", "aliases"}


def read_parts_file(path: Path) -> tuple[list[ArchivePart], str]:
    """Archive parts declared in a JSON file: a list of part objects, or
    ``{"parts": [...], "manual_download": "..."}``. Returns ``(parts, manual text)``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"parts file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read parts file {path}: {exc}") from None
    manual = ""
    if isinstance(data, dict):
        manual = str(data.get("manual_download", ""))
        data = data.get("parts")
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty list of archive parts (or {{'parts': [...]}})")
    parts: list[ArchivePart] = []
    problems: list[str] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "name" not in item:
            problems.append(f"part {i}: expected an object with at least a 'name'")
            continue
        unknown = set(item) - _PART_KEYS
        if unknown:
            problems.append(f"part {i}: unknown keys {sorted(unknown)} (known: {sorted(_PART_KEYS)})")
            continue
        try:
            part = ArchivePart(
                name=str(item["name"]),
                url=None if item.get("url") is None else str(item["url"]),
                size=None if item.get("size") is None else int(item["size"]),
                sha256=None if item.get("sha256") is None else str(item["sha256"]).lower(),
                extract_to=str(item.get("extract_to", ".")),
                page=None if item.get("page") is None else str(item["page"]),
                optional=bool(item.get("optional", False)),
                aliases=tuple(str(a) for a in item.get("aliases", ())),
            )
        except (TypeError, ValueError) as exc:
            problems.append(f"part {i}: {exc}")
            continue
        problems += [f"part {i}: {p}" for p in check_part(part)]
        parts.append(part)
    if problems:
        raise InputError(f"invalid parts file {path}:\n" + "\n".join(f"  - {p}" for p in problems))
    return parts, manual


def mirror_url(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + urllib.parse.quote(name)


def check_mirror(mirror: str | None) -> None:
    if mirror is not None and not mirror.startswith(_SCHEMES):
        raise InputError(f"--mirror must be a URL prefix starting with http://, https:// or file://, got {mirror!r}")


@dataclass
class Obtained:
    path: Path
    sha256: str
    origin: str  # "from" | "cache" | "download"


def obtain(
    part: ArchivePart,
    root: Path,
    *,
    source_dir: Path | None,
    mirror: str | None,
    cfg: DownloadConfig,
    reporter: Reporter,
    reasons: list[str],
) -> Obtained | None:
    """The part's file from the first source that gives a good one; ``reasons`` collects why
    the others did not."""
    if source_dir is not None:
        for name in (part.name, *part.aliases):
            candidate = source_dir / name
            if candidate.is_file():
                reporter.info(f"{part.name}: checking {candidate}")
                try:
                    return Obtained(candidate, verify_file(candidate, part, cfg.chunk_size), "from")
                except ChecksumMismatch as exc:
                    reasons.append(f"{exc} (the file was left untouched)")
                break
        else:
            reasons.append(f"not in {source_dir}")
    cached = archive_cache(root) / part.name
    if cached.is_file():
        try:
            return Obtained(cached, verify_file(cached, part, cfg.chunk_size), "cache")
        except ChecksumMismatch as exc:
            cached.unlink()
            reasons.append(f"cached copy was wrong and was deleted: {exc}")
    urls = [("mirror", mirror_url(mirror, part.name))] if mirror else []
    if part.url:
        urls.append(("url", part.url))
    if not urls:
        reasons.append("no download URL is known (the host needs a browser)")
    for _kind, url in urls:
        reporter.info(f"{part.name}: downloading from {url}")
        try:
            digest = fetch_url(url, cached, part, config=cfg, reporter=reporter)
        except SourceFailed as exc:
            reasons.append(f"{url}: {exc}")
            continue
        return Obtained(cached, digest, "download")
    return None


__all__ = [
    "WORK_DIR",
    "Obtained",
    "archive_cache",
    "check_mirror",
    "check_part",
    "mirror_url",
    "obtain",
    "read_parts_file",
    "work_dir",
]
