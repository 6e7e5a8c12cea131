"""`dsan datasets` and `dsan manifest ...`: built-in datasets and manifest files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ...datasets.registry import get_dataset, list_datasets, load_builtin_manifest, resolve_manifest
from ...manifest import read_manifest
from ..errors import console, user_errors

manifest_app = typer.Typer(
    help="Create and validate dataset manifests (your own videos too).", no_args_is_help=True
)


@user_errors
def datasets_cmd(
    name: str = typer.Argument(None, help="Show one dataset in detail (per-class counts)."),
) -> None:
    """List the built-in datasets with their video counts per split and class.

    Examples:
      dsan datasets
      dsan datasets ucf
    """
    names = [name] if name else list_datasets()
    for n in names:
        spec = get_dataset(n)
        m = load_builtin_manifest(n)
        counts = m.counts()
        splits = sorted(counts)
        table = Table(title=f"{n}: {spec.title} — {len(m)} videos, {m.info.fps:g} fps, snippet {m.info.snippet_len}")
        table.add_column("class")
        table.add_column("prompt")
        for s in splits:
            table.add_column(s, justify="right")
        for c in m.info.classes:
            table.add_row(c.code, c.prompt, *(str(counts[s][f"class:{c.code}"]) for s in splits))
        table.add_section()
        table.add_row("videos", "", *(str(counts[s]["videos"]) for s in splits))
        table.add_row("anomalous", "", *(str(counts[s]["anomalous"]) for s in splits))
        table.add_row("with segments", "", *(str(counts[s]["annotated"]) for s in splits))
        console.print(table)


@manifest_app.command("validate")
@user_errors
def validate_cmd(file: Path = typer.Argument(..., help="Manifest file (.jsonl).")) -> None:
    """Check a manifest: schema, classes, duplicate ids, segments; every problem is listed
    with its line.

    Example:
      dsan manifest validate my_dataset.jsonl
    """
    m = read_manifest(file)
    counts = m.counts()
    summary = ", ".join(f"{s}: {c['videos']} videos ({c['anomalous']} anomalous)" for s, c in counts.items())
    console.print(f"[green]ok[/green] {file}: dataset {m.name!r}, {len(m)} videos; {summary}")


@manifest_app.command("show")
@user_errors
def show_cmd(
    dataset: str = typer.Argument(..., help="Built-in dataset name or manifest file."),
    video: str = typer.Option(None, "--video", help="Print one video's record."),
) -> None:
    """Print a manifest's dataset record, or one video's record, as JSON.

    Examples:
      dsan manifest show ucf
      dsan manifest show xd --video 'v=S-7rRLrxnVQ__#1_label_B4-0-0'
    """
    import json

    m = resolve_manifest(dataset)
    rec = m.video(video).to_dict() if video else m.info.to_dict()
    console.print_json(json.dumps(rec))


def register(app: typer.Typer) -> None:
    app.command("datasets")(datasets_cmd)
    app.add_typer(manifest_app, name="manifest")
