"""Safe extraction of zip and tar archives.

An archive is read in two steps. :func:`list_members` reads its table of contents and checks
every member: a member whose name is absolute (``/x``, ``C:\\x``), climbs out with ``..``,
or is anything but a regular file or a folder (symbolic and hard links, device files,
FIFOs) makes the **whole archive** refused with :class:`UnsafeArchive`, before anything is
written. :func:`safe_extract` then writes the members into a fresh temporary folder next to
the destination and renames it into place, so a failure half-way (corrupt data, full disk,
Ctrl-C) leaves no files behind either.

Formats are a registry (:func:`register_format`): zip (``.zip``) and tar, plain or compressed
with gzip, bzip2 or xz. A file is recognised by its content, not only by its name.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..errors import InputError
from ..utils.atomic import default_dir_mode

COPY_CHUNK = 1 << 20
# What corrupt or truncated archive data raises while being read.
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError)
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(InputError):
    """An archive that cannot be read: unknown format, corrupt, encrypted."""


class UnsafeArchive(ArchiveError):
    """An archive with members that would land outside the destination, or links/devices."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        super().__init__(f"refused archive {path.name}: nothing was extracted\n{shown}{more}")


@dataclass(frozen=True)
class Member:
    """One archive entry after checking: a normalised relative POSIX name, a kind and a size."""

    name: str
    is_dir: bool
    size: int


def normalise_member_name(raw: str) -> tuple[str | None, str | None]:
    """``(relative name, None)`` for a safe member name, ``(None, reason)`` otherwise.

    Backslashes count as separators (archives made on Windows), ``.`` and empty parts are
    dropped; an absolute name, a drive letter or any ``..`` part is refused.
    """
    if "\x00" in raw:
        return None, "a NUL byte in the name"
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        return None, "an absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "a '..' part that would climb out of the destination"
    return "/".join(parts), None


class ArchiveReader(Protocol):
    """What a format provides: its checked members, and a stream of one file member."""

    def members(self) -> Iterator[tuple[str, str, int, str | None]]:
        """``(raw name, kind, size, refusal reason or None)`` per entry; kind is 'file' or 'dir'."""

    def open_member(self, raw_name: str) -> IO[bytes]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ArchiveFormat:
    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path], bool]
    open: Callable[[Path], ArchiveReader]


_FORMATS: dict[str, ArchiveFormat] = {}


def register_format(fmt: ArchiveFormat) -> ArchiveFormat:
    if fmt.name in _FORMATS:
        raise ValueError(f"archive format {fmt.name!r} registered twice")
    _FORMATS[fmt.name] = fmt
    return fmt


def list_formats() -> list[str]:
    return sorted(_FORMATS)


# -- zip ------------------------------------------------------------------------------------
class _ZipReader:
    def __init__(self, path: Path) -> None:
        try:
            self._zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveError(f"{path.name} is not a readable zip archive ({exc})") from None
        self._by_name = {i.filename: i for i in self._zf.infolist()}

    def members(self) -> Iterator[tuple[str, str, int, str | None]]:
        for info in self._zf.infolist():
            ftype = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zipper stored no Unix type
            kind = "dir" if info.is_dir() else "file"
            reason = None
            if ftype == stat.S_IFLNK:
                reason = "a symbolic link"
            elif ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                reason = "a special file (device, FIFO or socket)"
            elif info.flag_bits & 0x1:
                reason = "an encrypted member"
            yield info.filename, kind, info.file_size, reason

    def open_member(self, raw_name: str) -> IO[bytes]:
        return self._zf.open(self._by_name[raw_name])

    def close(self) -> None:
        self._zf.close()


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


# -- tar ------------------------------------------------------------------------------------
class _TarReader:
    def __init__(self, path: Path) -> None:
        try:
            self._tf = tarfile.open(path, mode="r:*")
            self._infos = self._tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{path.name} is not a readable tar archive ({exc})") from None
        self._by_name = {i.name: i for i in self._infos}

    def members(self) -> Iterator[tuple[str, str, int, str | None]]:
        for info in self._infos:
            reason = None
            if info.issym():
                reason = f"a symbolic link (to {info.linkname!r})"
            elif info.islnk():
                reason = f"a hard link (to {info.linkname!r})"
            elif info.ischr() or info.isblk():
                reason = "a device file"
            elif info.isfifo():
                reason = "a FIFO"
            elif not (info.isreg() or info.isdir()):
                reason = "an entry that is neither a file nor a folder"
            yield info.name, "dir" if info.isdir() else "file", info.size, reason

    def open_member(self, raw_name: str) -> IO[bytes]:
        stream = self._tf.extractfile(self._by_name[raw_name])
        if stream is None:  # pragma: no cover - members() only lets regular files through
            raise ArchiveError(f"cannot read member {raw_name!r}")
        return stream

    def close(self) -> None:
        self._tf.close()


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


register_format(ArchiveFormat("zip", (".zip",), _is_zip, _ZipReader))
register_format(
    ArchiveFormat("tar", (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz"), _is_tar, _TarReader)
)


# -- public API -----------------------------------------------------------------------------
def detect_format(path: Path) -> ArchiveFormat:
    """The format of ``path``: by its name first, confirmed by (or else found from) its content."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"archive not found: {path}")
    lower = path.name.lower()
    by_name = [f for f in _FORMATS.values() if lower.endswith(f.suffixes)]
    for fmt in by_name + [f for f in _FORMATS.values() if f not in by_name]:
        if fmt.sniff(path):
            return fmt
    raise ArchiveError(
        f"{path.name} is not a {' or '.join(list_formats())} archive (is it complete? a web page saved by mistake?)"
    )


def is_archive(path: Path) -> bool:
    try:
        detect_format(path)
    except ArchiveError:
        return False
    return True


def _checked(reader: ArchiveReader, path: Path) -> list[tuple[str, Member]]:
    problems: list[str] = []
    out: list[tuple[str, Member]] = []
    for raw, kind, size, reason in reader.members():
        name, name_problem = normalise_member_name(raw)
        reason = reason or name_problem
        if reason:
            problems.append(f"{raw!r}: {reason}")
        elif name:
            out.append((raw, Member(name=name, is_dir=kind == "dir", size=int(size))))
    if problems:
        raise UnsafeArchive(path, problems)
    return out


def list_members(path: Path) -> list[Member]:
    """Every member of an archive, checked; raises :class:`UnsafeArchive` listing all problems."""
    path = Path(path)
    reader = detect_format(path).open(path)
    try:
        return [m for _, m in _checked(reader, path)]
    finally:
        reader.close()


def _write_member(reader: ArchiveReader, raw: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with reader.open_member(raw) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK)


def safe_extract(path: Path, dest: Path, *, check_space: bool = True) -> list[str]:
    """Extract archive ``path`` into the new folder ``dest``; returns the files' relative names.

    ``dest`` must not exist yet. Every member is checked first (see :func:`list_members`);
    the data goes into a temporary sibling folder renamed to ``dest`` at the end, which is
    removed on any failure, so either all of the archive is there or none of it.
    """
    path, dest = Path(path), Path(dest)
    if dest.exists():
        raise ArchiveError(f"extraction target already exists: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    reader = detect_format(path).open(path)
    try:
        members = _checked(reader, path)
        if check_space:
            need = sum(m.size for _, m in members if not m.is_dir)
            free = shutil.disk_usage(dest.parent).free
            if need > free:
                raise ArchiveError(
                    f"not enough disk space to extract {path.name}: needs {need / 1e9:.2f} GB, "
                    f"{free / 1e9:.2f} GB free under {dest.parent}"
                )
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            files: list[str] = []
            root = tmp.resolve()
            for raw, m in members:
                target = tmp / m.name
                # Belt and braces: the normalised name cannot leave the folder, check anyway.
                if os.path.commonpath([root, target.resolve()]) != str(root):
                    raise UnsafeArchive(path, [f"{raw!r}: resolves outside the destination"])
                if m.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    _write_member(reader, raw, target)
                    files.append(m.name)
            os.chmod(tmp, default_dir_mode())  # mkdtemp made it 0700
            os.replace(tmp, dest)
        except _READ_ERRORS as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ArchiveError(f"cannot extract {path.name}: {exc}; nothing was kept") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        reader.close()
    return files
