"""Fetching a dataset's video archives and placing the videos where its manifest says.

Sources are data: a dataset declares its archive parts (:class:`ArchivePart`: file name,
optional URL, size, sha256). For each part the sources are tried in order:

1. ``source_dir`` (``--from DIR``): the part (or one of its aliases) already on disk, used in
   place and never modified;
2. the cache ``<root>/.dsan-download/archives/``: a part downloaded (or put there) earlier;
3. ``mirror`` (``--mirror URL_PREFIX``): ``URL_PREFIX/<part name>``;
4. the part's own URL.

Downloads go to ``<name>.part`` files, resume with HTTP ``Range`` (a server that ignores it
makes the download restart), are retried with exponential backoff on 5xx answers and
connection errors, hashed (sha256) while they stream, checked against the declared size and
checksum (a bad file is deleted, never left in place) and renamed into place atomically.

Archives are extracted with :mod:`.archives` (refusing members that would escape, links and
devices). A member whose file name is a manifest video's file name moves to that video's
manifest ``path``; other members go under the part's ``extract_to``. Existing files are never
overwritten. ``<root>/.dsan-download/state.json`` records finished parts and
``complete.json`` a finished run, so a second run does nothing and says so. A lock file keeps
two runs off the same root. Where no source works the report lists what to fetch by hand
and where to put it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Protocol, Sequence

from .. import __version__
from ..config import config_hash, register_config, sha256_text, to_dict
from ..errors import DsanError, InputError
from ..manifest import Manifest
from ..manifest.builtin import load_builtin_manifest
from ..utils.atomic import atomic_path, atomic_write_json
from .archives import ArchiveError, is_archive, safe_extract
from .registry import get_dataset
from .spec import ArchivePart

WORK_DIR = ".dsan-download"
STATE_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_SCHEMES = ("http://", "https://", "file://")


@register_config
@dataclass(frozen=True)
class DownloadConfig:
    """How downloads behave. ``retries`` extra attempts per source, waiting
    ``min(backoff * 2**k, backoff_max)`` seconds before attempt ``k + 1``."""

    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 60.0
    chunk_size: int = 1 << 20
    keep_archives: bool = False
    include_optional: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InputError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.backoff_max < 0:
            raise InputError("backoff delays must be >= 0")
        if self.timeout <= 0:
            raise InputError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.chunk_size <= 0:
            raise InputError(f"chunk_size must be > 0, got {self.chunk_size}")

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff * (2**attempt), self.backoff_max))


# -- progress reporting ---------------------------------------------------------------------
class Reporter(Protocol):
    """Where progress goes (the CLI shows a rich progress bar; the library default is silent)."""

    def info(self, message: str) -> None: ...

    def start(self, name: str, total: int | None, completed: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    def info(self, message: str) -> None:
        pass

    def start(self, name: str, total: int | None, completed: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def stop(self) -> None:
        pass


# -- errors ---------------------------------------------------------------------------------
class SourceFailed(DsanError):
    """One source of one part did not give a good file (the next source is tried)."""


class _Retry(Exception):
    """A transient failure: wait and try the same source again."""


class ChecksumMismatch(SourceFailed):
    pass


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


# -- small helpers --------------------------------------------------------------------------
def work_dir(root: Path) -> Path:
    return Path(root) / WORK_DIR


def archive_cache(root: Path) -> Path:
    return work_dir(root) / "archives"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


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


# -- the lock -------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RootLock:
    """An exclusive lock file in the work folder; a lock left by a dead process is taken over."""

    def __init__(self, root: Path) -> None:
        self.path = work_dir(root) / "lock"
        self._held = False

    def __enter__(self) -> "RootLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.path.read_text(encoding="utf-8", errors="replace").split()
                pid = int(owner[0]) if owner and owner[0].isdigit() else -1
                host = owner[1] if len(owner) > 1 else ""
                if host == socket.gethostname() and pid > 0 and not _pid_alive(pid):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise InputError(
                    f"another `dsan download` is using {self.path.parent.parent} (process {pid} on "
                    f"{host or 'an unknown host'}); if it is not running any more, delete {self.path}"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(me)
            self._held = True
            return self
        raise InputError(f"cannot take the lock {self.path}")  # pragma: no cover

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False


# -- one HTTP download ----------------------------------------------------------------------
class _Hasher:
    """sha256 of a growing ``.part`` file, carried across resumed attempts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.h = hashlib.sha256()
        self.nbytes = 0

    def sync(self, path: Path, chunk: int) -> None:
        size = path.stat().st_size if path.exists() else 0
        if size == self.nbytes:
            return
        self.reset()
        if size:
            with open(path, "rb") as fh:
                while data := fh.read(chunk):
                    self.update(data)

    def update(self, data: bytes) -> None:
        self.h.update(data)
        self.nbytes += len(data)


_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.ENETUNREACH, errno.EHOSTUNREACH}


def _transient(exc: BaseException) -> bool:
    """Connection-level errors worth retrying; a host name that does not resolve, a missing
    file:// path and the like are not."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return False
    if isinstance(reason, (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)):
        return True
    return isinstance(reason, OSError) and reason.errno in _TRANSIENT_ERRNOS


def _open(url: str, offset: int, cfg: DownloadConfig) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": f"dsan_toolkit/{__version__}", "Accept-Encoding": "identity"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=cfg.timeout)  # noqa: S310 - schemes checked by the caller


def _attempt(url: str, part_file: Path, part: ArchivePart, hasher: _Hasher, cfg: DownloadConfig, reporter: Reporter) -> None:
    """One request: resume or (re)start ``part_file``; raises :class:`_Retry` on transient errors."""
    hasher.sync(part_file, cfg.chunk_size)
    have = hasher.nbytes
    if part.size is not None and have > part.size:
        part_file.unlink()
        hasher.reset()
        have = 0
    try:
        resp = _open(url, have, cfg)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            m = re.match(r"^bytes \*/(\d+)$", (exc.headers.get("Content-Range") or "").strip())
            server_size = int(m.group(1)) if m else part.size
            if have and (server_size is None or have == server_size):
                return  # nothing left to send: the .part is whole; verification decides
            part_file.unlink(missing_ok=True)
            hasher.reset()
            raise _Retry("HTTP 416 (the partial file does not fit the server's): restarting") from None
        if exc.code >= 500 or exc.code in (408, 425, 429):
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if _transient(exc):
            raise _Retry(f"connection error: {getattr(exc, 'reason', exc)}") from None
        raise SourceFailed(f"cannot reach the host: {getattr(exc, 'reason', exc)}") from None
    with resp:
        status = getattr(resp, "status", None) or 200
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html") and not part.name.lower().endswith((".htm", ".html")):
            raise SourceFailed("the host answered with a web page instead of the file (it probably needs a browser)")
        total: int | None = None
        if status == 206:
            m = _CONTENT_RANGE.match((resp.headers.get("Content-Range") or "").strip())
            if not m or int(m.group(1)) != have:
                part_file.unlink(missing_ok=True)
                hasher.reset()
                raise _Retry("the server answered a different byte range: restarting")
            total = None if m.group(3) == "*" else int(m.group(3))
            mode = "ab"
        else:  # 200: a server that ignores Range sends everything again
            if have:
                reporter.info(f"{part.name}: the server does not resume; restarting from byte 0")
            hasher.reset()
            have = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        if part.size is not None and total is not None and total != part.size:
            raise SourceFailed(f"the server's file has {total} bytes, {part.size} expected")
        reporter.start(part.name, total, have)
        read = getattr(resp, "read1", resp.read)  # what has arrived, up to a chunk: steady progress
        try:
            with open(part_file, mode) as fh:
                while True:
                    try:
                        data = read(cfg.chunk_size)
                    except (http.client.HTTPException, OSError) as exc:  # resets, timeouts, TLS errors
                        raise _Retry(f"transfer interrupted after {hasher.nbytes} bytes ({type(exc).__name__})") from None
                    if not data:
                        break
                    fh.write(data)  # an OSError here is the local disk's: not retried
                    hasher.update(data)
                    reporter.advance(len(data))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            reporter.stop()
        if total is not None and hasher.nbytes < total:
            raise _Retry(f"connection closed early ({hasher.nbytes} of {total} bytes)")


def fetch_url(
    url: str,
    dest: Path,
    part: ArchivePart,
    *,
    config: DownloadConfig = DownloadConfig(),
    reporter: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download ``url`` to ``dest`` (via ``dest.part``, resumable) and return its sha256.

    Transient failures are retried ``config.retries`` times with exponential backoff; a size
    or checksum mismatch deletes the partial file and raises :class:`ChecksumMismatch`; any
    other failure raises :class:`SourceFailed` and keeps the ``.part`` for a later resume.
    """
    reporter = reporter or SilentReporter()
    dest = Path(dest)
    part_file = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.size is not None:
        free = shutil.disk_usage(dest.parent).free
        have = part_file.stat().st_size if part_file.exists() else 0
        if part.size - have > free:
            raise InputError(f"not enough disk space for {part.name}: {_human(part.size - have)} needed, {_human(free)} free")
    hasher = _Hasher()
    errors: list[str] = []
    for attempt in range(config.retries + 1):
        try:
            _attempt(url, part_file, part, hasher, config, reporter)
            break
        except _Retry as exc:
            errors.append(str(exc))
            if attempt == config.retries:
                raise SourceFailed(f"gave up after {attempt + 1} attempts; last error: {exc}") from None
            wait = config.delay(attempt)
            reporter.info(f"{part.name}: {exc}; retrying in {wait:g} s ({attempt + 1}/{config.retries})")
            sleep(wait)
    hasher.sync(part_file, config.chunk_size)
    digest = hasher.h.hexdigest()
    problem = None
    if part.size is not None and hasher.nbytes != part.size:
        problem = f"size {hasher.nbytes} bytes, {part.size} expected"
    elif part.sha256 is not None and digest != part.sha256:
        problem = f"sha256 {digest}, {part.sha256} expected"
    if problem:
        part_file.unlink(missing_ok=True)
        raise ChecksumMismatch(f"downloaded file is wrong ({problem}); it was deleted")
    os.replace(part_file, dest)
    return digest


# -- sources --------------------------------------------------------------------------------
def _verify_local(path: Path, part: ArchivePart, chunk: int) -> str:
    """sha256 of a file on disk, checked against the part's size and checksum."""
    size = path.stat().st_size
    if part.size is not None and size != part.size:
        raise ChecksumMismatch(f"{path} has {size} bytes, {part.size} expected")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            h.update(data)
    digest = h.hexdigest()
    if part.sha256 is not None and digest != part.sha256:
        raise ChecksumMismatch(f"{path} has sha256 {digest}, {part.sha256} expected")
    return digest


def mirror_url(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + urllib.parse.quote(name)


def check_mirror(mirror: str | None) -> None:
    if mirror is not None and not mirror.startswith(_SCHEMES):
        raise InputError(f"--mirror must be a URL prefix starting with http://, https:// or file://, got {mirror!r}")


@dataclass
class _Obtained:
    path: Path
    sha256: str
    origin: str  # "from" | "cache" | "download"


def _obtain(
    part: ArchivePart,
    root: Path,
    *,
    source_dir: Path | None,
    mirror: str | None,
    cfg: DownloadConfig,
    reporter: Reporter,
    reasons: list[str],
) -> _Obtained | None:
    """The part's file from the first source that gives a good one; ``reasons`` collects why
    the others did not."""
    if source_dir is not None:
        for name in (part.name, *part.aliases):
            candidate = source_dir / name
            if candidate.is_file():
                reporter.info(f"{part.name}: checking {candidate}")
                try:
                    return _Obtained(candidate, _verify_local(candidate, part, cfg.chunk_size), "from")
                except ChecksumMismatch as exc:
                    reasons.append(f"{exc} (the file was left untouched)")
                break
        else:
            reasons.append(f"not in {source_dir}")
    cached = archive_cache(root) / part.name
    if cached.is_file():
        try:
            return _Obtained(cached, _verify_local(cached, part, cfg.chunk_size), "cache")
        except ChecksumMismatch as exc:
            cached.unlink()
            reasons.append(f"cached copy was wrong and was deleted: {exc}")
    urls = [("mirror", mirror_url(mirror, part.name))] if mirror else []
    if part.url:
        urls.append(("url", part.url))
    if not urls:
        reasons.append("no download URL is known (the host needs a browser)")
    for kind, url in urls:
        reporter.info(f"{part.name}: downloading from {url}")
        try:
            digest = fetch_url(url, cached, part, config=cfg, reporter=reporter)
        except SourceFailed as exc:
            reasons.append(f"{url}: {exc}")
            continue
        return _Obtained(cached, digest, "download")
    return None


# -- placing extracted files ----------------------------------------------------------------
def video_index(manifest: Manifest) -> dict[str, str]:
    """Video file name -> manifest path (file names are unique in the built-in manifests);
    lower-cased names are added as a fallback for archives with other capitalisation."""
    index: dict[str, str] = {}
    for v in manifest:
        index.setdefault(PurePosixPath(v.path).name.lower(), v.path)
    for v in manifest:
        index[PurePosixPath(v.path).name] = v.path
    return index


def _inside(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative path without ``..`` (checked by name, so folders of the
    root that are links to other disks keep working)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise InputError(f"path {rel!r} would leave the dataset root")
    return root / p


@dataclass
class _Placement:
    videos: list[str] = field(default_factory=list)  # manifest paths this archive holds
    moved: int = 0  # of those, moved into place now (the others were there already)
    extras: int = 0  # other members, put under extract_to
    kept_existing: int = 0  # members whose destination existed: the existing file was kept


def _place(staging: Path, files: Iterable[str], part: ArchivePart, root: Path, index: dict[str, str]) -> _Placement:
    out = _Placement()
    for rel in files:
        name = PurePosixPath(rel).name
        video = index.get(name) or index.get(name.lower())
        dest = _inside(root, video if video is not None else str(PurePosixPath(part.extract_to) / rel))
        if video is not None:
            out.videos.append(video)
        if dest.exists():
            out.kept_existing += 1
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest)
        if video is not None:
            out.moved += 1
        else:
            out.extras += 1
    return out


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
        lines.append(f"{len(refused)} archive part(s) of {title} were fetched but REFUSED when opened "
                     "(nothing of them was extracted):")
        for f in refused:
            lines.append(f"  - {f.part.name}: " + f.reasons[-1].replace("\n", "\n      "))
            lines += ["      earlier: " + r for r in f.reasons[:-1]]
        lines.append("  A refused archive is unsafe (members that would leave the dataset folder, links, devices) or "
                     "damaged; get a clean copy from the official source.")
    if unfetched:
        lines.append(f"{len(unfetched)} archive part(s) of {title} could not be fetched:")
    for f in unfetched:
        p = f.part
        facts = [_human(p.size)] + ([f"sha256 {p.sha256}"] if p.sha256 else [])
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


def _place_single(got: _Obtained, video: str, root: Path) -> _Placement:
    dest = _inside(root, video)
    out = _Placement(videos=[video])
    if dest.exists():
        out.kept_existing = 1
        return out
    dest.parent.mkdir(parents=True, exist_ok=True)
    if got.origin == "from":  # copy (a --from file is never moved), then rename into place
        with atomic_path(dest) as tmp:
            shutil.copyfile(got.path, tmp)
    else:
        os.replace(got.path, dest)
    out.moved = 1
    return out


def _extract_and_place(
    got: _Obtained, part: ArchivePart, root: Path, index: dict[str, str], reporter: Reporter
) -> _Placement | str:
    """Extract into a staging folder, then place; a refused archive gives the reason (str)."""
    staging = work_dir(root) / f"extract-{part.name}"
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    reporter.info(f"{part.name}: extracting")
    try:
        files = safe_extract(got.path, staging)
    except ArchiveError as exc:
        if got.origin != "from":
            got.path.unlink(missing_ok=True)  # our own copy is useless; a --from file stays untouched
        return str(exc)
    try:
        return _place(staging, files, part, root, index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    got = _obtain(part, root, source_dir=source_dir, mirror=mirror, cfg=cfg, reporter=reporter, reasons=reasons)
    if got is None:
        report.failures.append(PartFailure(part, reasons))
        return
    (report.fetched if got.origin == "download" else report.reused).append(part.name)
    report.checksums[part.name] = got.sha256
    size = got.path.stat().st_size
    video = index.get(part.name) or index.get(part.name.lower())
    if video is not None and not is_archive(got.path):
        placement = _place_single(got, video, root)  # a part that is one video, not an archive
    else:
        extracted = _extract_and_place(got, part, root, index, reporter)
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
