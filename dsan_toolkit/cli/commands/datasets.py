"""`dsan datasets` and `dsan manifest ...`: built-in datasets, manifest files and validation splits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ..base import DsanCommand, add_command, new_app
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer

if TYPE_CHECKING:
    from ...manifest import Manifest

manifest_app = new_app(help="Create and validate dataset manifests (your own videos too).")


@user_errors
def datasets_cmd(
    name: str = typer.Argument(None, help="Show one dataset in detail (per-class counts)."),
) -> None:
    """List the built-in datasets with their video counts per split and class.

    Examples:
      dsan datasets
      dsan datasets ucf
    """
    from ...datasets.registry import get_dataset, list_datasets
    from ...manifest.builtin import load_builtin_manifest

    names = [name] if name else list_datasets()
    for n in names:
        spec = get_dataset(n)
        m = load_builtin_manifest(n)
        title = f"{n}: {spec.title} — {len(m)} videos, {m.info.fps:g} fps, snippet {m.info.snippet_len}"
        console.print(class_counts_table(m, title))


def class_counts_table(
    manifest: Manifest, title: str, totals: tuple[str, ...] = ("videos", "anomalous", "annotated")
) -> Table:
    """Videos per class and split (columns), then the ``totals`` rows of ``Manifest.counts()``."""
    labels = {"videos": "videos", "anomalous": "anomalous", "annotated": "with segments"}
    counts = manifest.counts()
    splits = sorted(counts)
    table = Table(title=title)
    table.add_column("class")
    table.add_column("prompt")
    for s in splits:
        table.add_column(s, justify="right")
    for c in manifest.info.classes:
        table.add_row(c.code, c.prompt, *(str(counts[s][f"class:{c.code}"]) for s in splits))
    table.add_section()
    for key in totals:
        table.add_row(labels[key], "", *(str(counts[s][key]) for s in splits))
    return table


@manifest_app.command("validate", cls=DsanCommand)
@user_errors
def validate_cmd(file: Path = typer.Argument(..., help="Manifest file (.jsonl).")) -> None:
    """Check a manifest: schema, classes, duplicate ids, segments; every problem is listed
    with its line.

    Example:
      dsan manifest validate my_dataset.jsonl
    """
    from ...manifest import read_manifest

    m = read_manifest(file)
    counts = m.counts()
    summary = ", ".join(f"{s}: {c['videos']} videos ({c['anomalous']} anomalous)" for s, c in counts.items())
    console.print(f"[green]ok[/green] {file}: dataset {m.name!r}, {len(m)} videos; {summary}")


@manifest_app.command("create", cls=DsanCommand)
@user_errors
def create_cmd(
    videos: Path = typer.Option(..., "--videos", help="Folder of your videos (the dataset root)."),
    labels: Path = typer.Option(..., "--labels", help="CSV: path,split,labels[,segments][,id] (see docs/datasets.md)."),
    classes: Path = typer.Option(None, "--classes", help="CSV: code,name,prompt,normal (default: from the labels)."),
    name: str = typer.Option(None, "--name", help="Dataset name (default: the videos folder's name)."),
    normal: str = typer.Option("Normal", "--normal", help="Code of the normal class when there is no --classes."),
    snippet_len: int = typer.Option(16, "--snippet-len", help="Frames per snippet (feature row)."),
    out: Path = typer.Option(None, "--out", "-o", help="Manifest file to write (default: NAME.jsonl here)."),
    workers: int = typer.Option(None, "--workers", "-j", help="Videos probed in parallel."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing manifest file."),
    unreadable: str = typer.Option(
        "refuse",
        "--unreadable",
        help="Rows whose video is missing or cannot be decoded: refuse (nothing written), keep (kept with a note; verify/extract record them as failed) or skip (left out).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Count the videos probed."),
) -> None:
    """Build a manifest for your own videos from a labels CSV (probing every video).

    labels.csv: a header, then one row per video, e.g.
      path,split,labels,segments
      clips/a.mp4,train,Normal,
      clips/b.mp4,test,Fire|Smoke,120-240:Fire;300-360:Smoke
    Labels are '|'-joined class codes (empty: normal); segments are [start, end) frames.
    Every bad row is reported as file:line: reason; nothing is written then.

    Examples:
      dsan manifest create --videos /data/cams --labels labels.csv --name cams
      dsan manifest create --videos vids --labels l.csv --classes classes.csv -o my.jsonl
    """
    from ...datasets.custom import build_manifest, unlisted_videos
    from ...datasets.labels_csv import parse_labels_csv
    from ...errors import InputError
    from ...manifest import write_manifest

    if not videos.is_dir():
        raise InputError(f"--videos {videos} is not a folder")
    n_rows = len(parse_labels_csv(labels)[0])
    target = out if out is not None else Path(f"{name or videos.resolve().name}.jsonl")
    if target.is_dir():
        raise InputError(
            f"--out {target} is a folder; give a manifest file name (e.g. {target}/{name or 'dataset'}.jsonl)"
        )
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --overwrite to replace it or choose another --out")
    with ProgressRenderer(err_console, enabled=progress) as render, render.task("probe", n_rows, unit="videos") as done:
        built = build_manifest(
            videos,
            labels,
            classes_csv=classes,
            name=name,
            normal=normal,
            snippet_len=snippet_len,
            workers=workers,
            progress=lambda _id: done(),
            unreadable=unreadable,
        )
    manifest = built.manifest
    write_manifest(manifest, target)
    counts = manifest.counts()
    summary = ", ".join(f"{s}: {c['videos']} videos ({c['anomalous']} anomalous)" for s, c in counts.items())
    console.print(
        f"[green]wrote[/green] {target}: dataset {manifest.name!r}, {len(manifest)} videos; {summary}; "
        f"classes {', '.join(manifest.class_codes)}; nominal fps {manifest.info.fps:g}"
    )
    if built.unreadable:
        what = "kept, marked (verify/extract will record them as failed)" if built.policy == "keep" else "skipped"
        console.print(
            f"[yellow]note:[/yellow] {len(built.unreadable)} row(s) whose video could not be read were {what}:"
        )
        for row in built.unreadable[:10]:
            console.print(f"  {row.text(labels)}", soft_wrap=True)
    extra = unlisted_videos(videos, manifest)
    if extra:
        console.print(
            f"[yellow]note:[/yellow] {len(extra)} video file(s) in {videos} are not in {labels}, e.g. {extra[0]}"
        )
    console.print(f"next: dsan verify --dataset {target} --root {videos}")


@manifest_app.command("show", cls=DsanCommand)
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

    from ...manifest.builtin import resolve_manifest

    m = resolve_manifest(dataset)
    rec = m.video(video).to_dict() if video else m.info.to_dict()
    console.print_json(json.dumps(rec))


@manifest_app.command("val-split", cls=DsanCommand)
@user_errors
def val_split_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Built-in dataset or manifest file."),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of each class's training videos held out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw (numpy.random.default_rng)."),
    out: Path = typer.Option(None, "--out", "-o", help="Split file to write (default: NAME.val-split.json here)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing split file."),
) -> None:
    """Write a validation split: training videos held out for `dsan train --select best-on-val`.

    Stratified by each video's primary class; per class k = floor(fraction * n + 0.5), at least
    1 when the class has 2 or more training videos, and never all of them. The same manifest,
    fraction and seed give the same ids on any machine (docs/training.md).

    Examples:
      dsan manifest val-split -d my_dataset.jsonl
      dsan manifest val-split -d ucf --fraction 0.2 --seed 1 -o ucf-val20.json
    """
    from ...manifest.builtin import resolve_manifest
    from ...manifest.valsplit import derive_val_split, write_val_split

    m = resolve_manifest(dataset)
    split = derive_val_split(m, fraction, seed)
    target = out if out is not None else Path(f"{m.name}.val-split.json")
    write_val_split(split, target, overwrite=overwrite)
    anomalous = sum(m.is_anomalous(m.video(i)) for i in split.ids)
    console.print(
        f"[green]wrote[/green] {target}: {split.size} of {len(m.split('train'))} training videos of {m.name!r} "
        f"held out ({anomalous} anomalous), fraction {fraction:g}, seed {seed}; hash {split.hash[:12]}"
    )


def register(app: typer.Typer) -> None:
    add_command(app, "datasets", datasets_cmd)
    app.add_typer(manifest_app, name="manifest")
