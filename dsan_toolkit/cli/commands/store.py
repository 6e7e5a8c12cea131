"""`dsan store info|check|finalize`: inspect and validate feature stores."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ...errors import CheckFailed
from ..base import DsanCommand, new_app
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer

store_app = new_app(help="Inspect, validate and finalize feature stores.")


@store_app.command("info", cls=DsanCommand)
@user_errors
def info_cmd(
    store: Path = typer.Argument(..., help="Feature store (STORE.zarr)."),
    as_json: bool = typer.Option(False, "--json", help="Print the store metadata as JSON."),
) -> None:
    """Summarise a store: dataset, backbone, preprocessing, videos, lengths, status.

    Examples:
      dsan store info ucf.zarr
      dsan store info ucf.zarr --json
    """
    from ...store import open_store

    s = open_store(store)
    a = s.attrs
    if as_json:
        console.print_json(json.dumps({k: v for k, v in a.items()}))
        return
    lengths = list(s.lengths().values())
    t = Table(title=f"{store}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    bb = a.get("backbone", {})
    rows = [
        ("dataset", f"{a.get('dataset')} (manifest {str(a.get('manifest_hash'))[:12]}, {a.get('num_videos')} videos)"),
        ("producer", str(a.get("producer"))),
        ("backbone", f"{bb.get('model')} / {bb.get('pretrained') or bb.get('weights_sha256') or 'random'}"),
        ("random weights", "YES: not for results" if a.get("random_weights") else "no"),
        ("snippet", f"{a.get('snippet_rule')}, {a.get('snippet_len')} frames"),
        ("crops", str(a.get("crops"))),
        ("feature dim / dtype", f"{a.get('feature_dim')} / {a.get('dtype')}"),
        ("config hash", str(a.get("config_hash"))[:16]),
        ("complete", completeness(bool(a.get("complete")), len(s.video_ids("failed")))),
        ("done / failed", f"{len(lengths)} / {len(s.video_ids('failed'))}"),
    ]
    flagged = s.flagged()
    if flagged:
        rows.append(
            (
                "flagged",
                f"{len(flagged)} videos (see `dsan store check`), e.g. {next(iter(flagged))}: "
                f"{flagged[next(iter(flagged))][0]}",
            )
        )
    if lengths:
        rows.append(("T min / mean / max", f"{min(lengths)} / {sum(lengths) / len(lengths):.1f} / {max(lengths)}"))
        rows.append(("rows (all crops)", f"{sum(lengths) * s.num_crops:,}"))
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if a.get("warning"):
        err_console.print(f"[bold yellow]warning:[/bold yellow] {a['warning']}")


def completeness(complete: bool, failed: int) -> str:
    """'complete', 'complete with N failed' or 'incomplete': failed videos have a record (the
    store is complete) but no features."""
    if not complete:
        return "incomplete (videos without a record: resume the writer or run `dsan store finalize`)"
    return f"complete with {failed} failed (no features; `dsan store check` lists why)" if failed else "complete"


@store_app.command("check", cls=DsanCommand)
@user_errors
def check_cmd(
    store: Path = typer.Argument(..., help="Feature store (STORE.zarr)."),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="Also require every video of this built-in dataset or manifest file."
    ),
    values: bool = typer.Option(True, "--values/--no-values", help="Read every array to check finite values."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Count the videos checked."),
) -> None:
    """Validate a store: metadata, completeness against the manifest, shapes, finite values.

    Exits 1 when any problem is found (each one is listed).

    Examples:
      dsan store check ucf.zarr
      dsan store check ucf_test.zarr --dataset ucf --no-values
    """
    from ...manifest.builtin import resolve_manifest
    from ...store import open_store
    from ...store.check import check_store

    s = open_store(store)
    m = resolve_manifest(dataset) if dataset else None
    with ProgressRenderer(err_console, enabled=progress) as render:
        rep = check_store(s, manifest=m, scan_values=values, on_event=render)
    for w in rep.warnings:
        err_console.print(f"[bold yellow]warning:[/bold yellow] {w}")
    summary = f"{store}: {rep.checked} videos checked, {rep.done} done, {rep.failed} failed, {rep.missing} missing"
    if rep.ok:
        console.print(f"[green]ok[/green] {summary}")
        return
    for p in rep.problems[:50]:
        err_console.print(f"  - {p}")
    if len(rep.problems) > 50:
        err_console.print(f"  ... and {len(rep.problems) - 50} more")
    raise CheckFailed(f"{summary}; {len(rep.problems)} problems")


@store_app.command("finalize", cls=DsanCommand)
@user_errors
def finalize_cmd(store: Path = typer.Argument(..., help="Feature store (STORE.zarr).")) -> None:
    """Consolidate a store's index after sharded writers finished (each writer also does it).

    Example:
      dsan store finalize ucf.zarr
    """
    from ...store import finalize_store

    r = finalize_store(store)
    state = "complete" if r.complete else f"incomplete ({r.missing} videos missing)"
    console.print(f"{store}: {r.done} done, {r.failed} failed, {state}")
    if not r.complete:
        raise CheckFailed(f"{store} is incomplete: {r.missing} videos have no record")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
