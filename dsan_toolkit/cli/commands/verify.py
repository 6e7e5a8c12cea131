"""`dsan verify`: check a dataset's videos against its manifest and write a lock file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ...errors import CheckFailed, InputError
from ..base import add_command
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer

if TYPE_CHECKING:
    from ...datasets.verify import VerifyReport

_STATUS_STYLE = {"ok": "green", "mismatch": "yellow"}


def _print_report(report: VerifyReport, show: int) -> None:
    counts = report.counts()
    summary = Table(title=f"{report.dataset}: {len(report.checks)} videos under {report.root} ({report.seconds:.1f} s)")
    summary.add_column("status")
    summary.add_column("videos", justify="right")
    for status, n in counts.items():
        if n or status == "ok":
            style = _STATUS_STYLE.get(status, "red")
            summary.add_row(f"[{style}]{status}[/{style}]", str(n))
    console.print(summary)

    failed = report.failed
    if failed:
        table = Table(title="videos with problems")
        for col in ("id", "path", "status", "detail"):
            table.add_column(col, overflow="fold")
        for c in failed[:show]:
            table.add_row(c.id, c.path, c.status, "; ".join(c.problems))
        console.print(table)
        if len(failed) > show:
            console.print(f"... and {len(failed) - show} more (all are in the lock file; --show N lists more)")
    warned = report.warned
    if warned:
        console.print(
            f"[yellow]{len(warned)} ok videos with warnings[/yellow], e.g. {warned[0].id}: {warned[0].warnings[0]}"
        )

    diff = report.diff
    if diff is not None:
        for note in diff.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        if diff.empty:
            console.print("no change since the previous lock file")
        else:
            table = Table(title="changes since the previous lock file")
            table.add_column("id", overflow="fold")
            table.add_column("change", overflow="fold")
            rows = [(vid, "; ".join(d)) for vid, d in diff.changed.items()]
            rows += [(vid, "added") for vid in diff.added] + [(vid, "removed") for vid in diff.removed]
            for vid, what in rows[:show]:
                table.add_row(vid, what)
            console.print(table)
            if len(rows) > show:
                console.print(f"... and {len(rows) - show} more changes")
    if report.lock_path:
        console.print(f"lock file: {report.lock_path}")


@user_errors
def verify_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Built-in dataset name (ucf, xd) or a manifest file."),
    root: Path = typer.Option(
        ..., "--root", "-r", help="Folder that holds the videos (manifest paths are relative to it)."
    ),
    checksums: bool = typer.Option(False, "--checksums", help="Also record (and compare) each file's sha256."),
    workers: int = typer.Option(None, "--workers", "-j", help="Parallel checks (default: CPU count, at most 8)."),
    lock: Path = typer.Option(
        None, "--lock", help="Lock file to compare with and write (default: ROOT/<dataset>.lock.json)."
    ),
    no_lock: bool = typer.Option(False, "--no-lock", help="Neither read nor write a lock file."),
    decode: str = typer.Option(
        "ends", "--decode", help="'ends': decode the first and last frame; 'all': every frame (slow)."
    ),
    split: str = typer.Option(None, "--split", help="Check only this split (train or test)."),
    fps_tolerance: float = typer.Option(0.01, "--fps-tolerance", help="Relative fps difference still accepted."),
    fail_on_change: bool = typer.Option(
        False, "--fail-on-change", help="Exit non-zero when files changed since the lock."
    ),
    show: int = typer.Option(30, "--show", help="Rows shown in the problem and change tables."),
    allow_missing: bool = typer.Option(
        False,
        "--allow-missing",
        help="Check a root that lacks most videos (a partial copy). Without it a root that holds none, or fewer than half, of the videos is refused and no lock file is written.",
    ),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Videos checked and how many are bad: a bar on a terminal, else a line every tenth of the way and at the end.",
    ),
) -> None:
    """Check every video of a dataset: present, decodable, frame count, fps, resolution.

    Probes the videos in parallel with decord (optionally hashing them).
    Prints a table of missing / unreadable / mismatching videos.
    Writes a lock file (frame counts, sizes, hashes, versions) for later steps.
    Run again, it reports what changed since the lock file.
    Exits 1 when any video has a problem.

    Examples:
      dsan verify --dataset ucf --root /data/UCF-Crime --checksums
      dsan verify --dataset my.jsonl --root videos/ --split test --decode all
      dsan verify -d synth/manifest.jsonl -r synth --fail-on-change
    """
    from ...datasets.lockfile import default_lock_path
    from ...datasets.verify import verify_dataset
    from ...manifest.builtin import resolve_manifest

    manifest = resolve_manifest(dataset)
    if split is not None:
        if split not in {v.split for v in manifest.videos}:
            raise InputError(f"split {split!r} has no video in {manifest.name!r}")
        manifest = manifest.split(split)
    if show < 0:
        raise InputError("--show must be >= 0")
    lock_path = None
    if not no_lock:
        lock_path = lock if lock is not None else default_lock_path(manifest, root, split)
    if not Path(root).is_dir():
        raise InputError(f"dataset root {root} is not a folder")

    with (
        ProgressRenderer(err_console, enabled=progress) as render,
        render.task("verify", len(manifest), unit="videos") as done,
    ):
        bad = [0]

        def advance(check: Any) -> None:  # from the checking threads
            bad[0] += not check.ok
            done(text=f"{bad[0]} bad")

        report = verify_dataset(
            manifest,
            root,
            checksums=checksums,
            workers=workers,
            lock_path=lock_path,
            decode=decode,
            fps_tolerance=fps_tolerance,
            progress=advance,
            allow_missing=allow_missing,
        )
    _print_report(report, show)
    if not report.ok:
        raise CheckFailed(f"verify: {report.summary()}")
    if fail_on_change and report.diff is not None and not report.diff.empty:
        raise CheckFailed("verify: files changed since the previous lock file")
    console.print(f"[green]ok[/green] {report.summary()}")


def register(app: typer.Typer) -> None:
    add_command(app, "verify", verify_cmd)
