"""`dsan download`: fetch a dataset's video archives and place the videos under a root."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from ...errors import CheckFailed, InputError
from ..base import add_command
from ..errors import console, err_console, user_errors
from ..progress import PLAIN_MIN_SECONDS, PLAIN_STEPS

if TYPE_CHECKING:
    from ...datasets.download import DownloadReport
    from ...datasets.spec import ArchivePart


class RichReporter:
    """Download progress as a rich progress bar (messages printed above it): on a terminal."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None

    def info(self, message: str) -> None:
        self.progress.console.print(escape(message), highlight=False)

    def start(self, name: str, total: int | None, completed: int) -> None:
        self.task = self.progress.add_task(name, total=total, completed=completed)

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, nbytes)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


class PlainReporter:
    """Download progress as plain lines (a log, a pipe, ``--no-progress``): messages, a line
    every tenth of a long transfer (``progress`` only) and one when a part is done."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.name, self.total, self.done, self.start_at, self.next_at, self.last = "", None, 0, 0, 0.0, 0.0

    def info(self, message: str) -> None:
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)

    def start(self, name: str, total: int | None, completed: int) -> None:
        self.name, self.total, self.done, self.start_at = name, total, completed, completed
        self.next_at = completed + (total or 0) / PLAIN_STEPS
        self.t0 = self.last = time.perf_counter()

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.perf_counter()
        if self.progress and self.total and self.done >= self.next_at and now - self.last >= PLAIN_MIN_SECONDS:
            self.next_at = self.done + self.total / PLAIN_STEPS
            self.last = now
            self.info(
                f"{self.name}: {self.done / 2**20:.0f} of {self.total / 2**20:.0f} MiB "
                f"({100 * self.done // self.total}%), {now - self.t0:.0f} s"
            )

    def stop(self) -> None:
        if self.progress and self.name:
            secs = time.perf_counter() - self.t0
            got = (self.done - self.start_at) / 2**20
            self.info(
                f"{self.name}: {got:.1f} MiB in {secs:.1f} s" + (f" ({got / secs:.1f} MiB/s)" if secs > 0 else "")
            )
        self.name = ""


def _parts_table(title: str, parts: tuple[ArchivePart, ...] | list[ArchivePart]) -> Table:
    table = Table(title=f"{title}: archive parts")
    for col in ("name", "size", "sha256", "source"):
        table.add_column(col, overflow="fold")
    for p in parts:
        size = "?" if p.size is None else f"{p.size:,}"
        source = p.url or (f"by hand: {p.page}" if p.page else "by hand")
        table.add_row(p.name + (" (optional)" if p.optional else ""), size, p.sha256 or "?", source)
    return table


def _summary(report: DownloadReport) -> None:
    if report.already_complete:
        console.print(
            f"[green]nothing to do[/green]: {report.dataset} is already complete in {escape(str(report.root))}"
        )
    else:
        done = {
            "downloaded": report.fetched,
            "taken from disk": report.reused,
            "extracted": report.extracted,
            "already done": report.skipped,
        }
        for label, names in done.items():
            if names:
                console.print(f"{label}: {escape(', '.join(names))}")
        console.print(
            f"videos placed: {report.placed}; other files: {report.extras}; existing files kept: {report.kept_existing}"
        )
        for name, digest in report.checksums.items():
            if digest:
                console.print(f"  sha256 {digest}  {escape(name)}", highlight=False, soft_wrap=True)
    have = report.total_videos - len(report.missing)
    colour = "green" if not report.missing else "yellow"
    console.print(
        f"[{colour}]{have} of {report.total_videos} videos[/{colour}] of {report.dataset} in {escape(str(report.root))}",
        soft_wrap=True,
    )
    if report.missing:
        shown = report.missing[:5]
        more = f" ... and {len(report.missing) - 5} more" if len(report.missing) > 5 else ""
        console.print("missing: " + escape(", ".join(shown)) + more, soft_wrap=True)


@user_errors
def download_cmd(
    dataset: str = typer.Option(
        ...,
        "--dataset",
        "-d",
        help="Built-in dataset (ucf, xd: `dsan datasets`) or a manifest file (.jsonl) with --parts.",
    ),
    root: Path = typer.Option(..., "--root", "-r", help="Dataset root: videos end up at <root>/<manifest path>."),
    mirror: str = typer.Option(
        None, "--mirror", help="URL prefix serving the parts as <prefix>/<part name> (http, https or file)."
    ),
    from_dir: Path = typer.Option(
        None, "--from", help="Folder that already holds (some of) the archive parts; they are read, never changed."
    ),
    parts_file: Path = typer.Option(
        None,
        "--parts",
        help="JSON file declaring the archive parts (for a manifest file, or to override a built-in's).",
    ),
    retries: int = typer.Option(
        5, "--retries", min=0, help="Extra attempts per source on server or connection errors."
    ),
    backoff: float = typer.Option(
        1.0, "--backoff", min=0.0, help="First wait between attempts in seconds (doubles each time, at most 60 s)."
    ),
    timeout: float = typer.Option(60.0, "--timeout", min=0.001, help="Network timeout per request in seconds."),
    keep_archives: bool = typer.Option(
        False, "--keep-archives", help="Keep downloaded archives after extraction (in <root>/.dsan-download/archives)."
    ),
    optional: bool = typer.Option(
        False, "--optional", help="Also fetch parts marked optional (not needed by the manifest)."
    ),
    list_parts: bool = typer.Option(False, "--list", help="Only print the archive parts and where they come from."),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Transfer progress: a bar on a terminal, else a line per part (and every tenth of a long one).",
    ),
) -> None:
    """Download a dataset's videos: resumable, checksummed, safely extracted, idempotent.

    Each archive part comes from --from DIR, else an earlier run, else --mirror,
    else its declared URL. Videos land at their manifest paths (matched by file
    name). A second run does nothing. Where no source works, the command prints
    what to fetch by hand and where to put it, and exits with code 1.

    Examples:
      dsan download --dataset ucf --root data/ucf --from ~/Downloads/ucf_zips
      dsan download --dataset xd --root data/xd --mirror https://mirror.example.org/xd
      dsan download --dataset ucf --root data/ucf --list
      dsan download --dataset my.jsonl --parts my_parts.json --root data/my
    """
    from ...datasets.download import DownloadConfig, download_builtin, download_dataset, read_parts_file
    from ...datasets.registry import get_dataset, list_datasets
    from ...manifest.builtin import resolve_manifest

    manual = ""
    if parts_file is not None:
        parts, manual = read_parts_file(parts_file)
    elif dataset in list_datasets():
        parts = list(get_dataset(dataset).archives)
    else:
        resolve_manifest(dataset)  # a bad name or file gets its own clear error first
        raise InputError(f"{dataset} is a manifest file: declare its archive parts with --parts FILE")
    title = get_dataset(dataset).title if dataset in list_datasets() else dataset
    if list_parts:
        console.print(_parts_table(title, parts))
        return
    config = DownloadConfig(
        retries=retries, backoff=backoff, timeout=timeout, keep_archives=keep_archives, include_optional=optional
    )
    with _reporter(progress) as reporter:
        if parts_file is None:
            report = download_builtin(
                dataset, root, mirror=mirror, source_dir=from_dir, config=config, reporter=reporter
            )
        else:
            spec_manual = get_dataset(dataset).manual_download if dataset in list_datasets() else ""
            report = download_dataset(
                resolve_manifest(dataset),
                parts,
                root,
                mirror=mirror,
                source_dir=from_dir,
                config=config,
                reporter=reporter,
                title=title,
                manual_download=manual or spec_manual,
                command=f"dsan download --dataset {dataset} --parts {parts_file} --root {root}",
            )
    _summary(report)
    if not report.ok:
        err_console.print(escape(report.manual), highlight=False)
        refused = sum(f.refused for f in report.failures)
        missing = len(report.failures) - refused
        what = ", ".join(
            x
            for x in (
                f"{refused} archive part(s) refused as unsafe or damaged" if refused else "",
                f"{missing} archive part(s) missing" if missing else "",
            )
            if x
        )
        raise CheckFailed(f"{what}; see above")


@contextlib.contextmanager
def _reporter(progress: bool) -> Iterator[Any]:
    """A byte bar on a terminal; plain lines otherwise (or only messages with --no-progress)."""
    if not (progress and err_console.is_terminal):
        yield PlainReporter(progress)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        yield RichReporter(bar)


def register(app: typer.Typer) -> None:
    add_command(app, "download", download_cmd)
