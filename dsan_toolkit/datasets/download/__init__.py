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

Archives are extracted with :mod:`dsan_toolkit.datasets.archives` (refusing members that would escape, links and
devices). A member whose file name is a manifest video's file name moves to that video's
manifest ``path``; other members go under the part's ``extract_to``. Existing files are never
overwritten. ``<root>/.dsan-download/state.json`` records finished parts and
``complete.json`` a finished run, so a second run does nothing and says so. A lock file keeps
two runs off the same root. Where no source works the report lists what to fetch by hand
and where to put it.

Modules: :mod:`.fetch` (one file over HTTP: resume, retries, hashing), :mod:`.sources` (part
declarations and the order of sources), :mod:`.place` (extracted members to manifest paths),
:mod:`.run` (the lock, the state, the report, built-in datasets).
"""

from .fetch import ChecksumMismatch, DownloadConfig, Reporter, SilentReporter, SourceFailed, fetch_url
from .run import DownloadReport, PartFailure, RootLock, download_builtin, download_dataset, manual_instructions
from .sources import WORK_DIR, archive_cache, check_mirror, check_part, mirror_url, read_parts_file, work_dir

__all__ = [
    "WORK_DIR",
    "ChecksumMismatch",
    "DownloadConfig",
    "DownloadReport",
    "PartFailure",
    "Reporter",
    "RootLock",
    "SilentReporter",
    "SourceFailed",
    "archive_cache",
    "check_mirror",
    "check_part",
    "download_builtin",
    "download_dataset",
    "fetch_url",
    "manual_instructions",
    "mirror_url",
    "read_parts_file",
    "work_dir",
]
