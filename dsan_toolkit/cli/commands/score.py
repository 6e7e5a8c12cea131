"""`dsan score`: score one new video with a trained run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ...errors import InputError
from ..base import add_command
from ..errors import console, err_console, user_errors


@user_errors
def score_cmd(
    video: Path = typer.Argument(..., help="Video file (anything decord reads)."),
    run: Path = typer.Option(..., "--run", help="A finished run directory (dsan train / dsan bench)."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Say what is being done (loading, extracting, scoring)."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for VIDEO.scores.csv/.png/.json (default: RUN/scores/)."
    ),
    features: Path = typer.Option(
        None,
        "--features",
        "-f",
        help="Take the extraction config from this store instead of the run's own (the difference is labelled).",
    ),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Anomaly score threshold."),
    min_snippets: int = typer.Option(1, "--min-snippets", min=1, help="Shortest interval kept, in snippets."),
    select: str = typer.Option(
        None, "--select", help="last, best-on-val or best-on-test (default: the run's selected model)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    clip_weights: Path = typer.Option(
        None,
        "--clip-weights",
        help="Local CLIP weight file, for runs on features extracted from one (default: the path the run recorded).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace this video's existing outputs in --out."),
) -> None:
    """Score one video with a run: anomalous intervals, likely classes, CSV and PNG.

    Extracts the video's features with the run's own extraction config, scores them with
    the run's selected checkpoint, prints the intervals whose score reaches the threshold
    with their most likely classes, and writes a per-frame CSV, a plot and a JSON record of
    what made them (video, run, checkpoint and store identity, threshold, intervals).

    Examples:
      dsan score clip.mp4 --run dsan-demo/bench/runs/synth/vadclip-tiny-s0-1a2b3c4d
      dsan score street.mp4 --run runs/dsanet-ucf --threshold 0.6 --out scores/
    """
    from ...apps.score import score_video

    if video.is_dir():
        raise InputError(f"{video} is a folder; give one video file")
    if out is not None and out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    res = score_video(
        video,
        run,
        out=out,
        threshold=threshold,
        selection=select,
        device=device,
        min_snippets=min_snippets,
        features=features,
        clip_weights=clip_weights,
        overwrite=overwrite,
        progress=(lambda m: err_console.print(f"[dim]score[/dim] {m}")) if progress else None,
    )
    if res.store_label:
        console.print(f"[bold yellow]note:[/bold yellow] {res.store_label}")
    if res.random_backbone:
        console.print("[bold yellow]note:[/bold yellow] this run uses a randomly initialised CLIP backbone")
    table = Table(
        title=f"{video.name}: {res.num_frames} frames at {res.fps:g} fps, {res.snippets} snippets "
        f"({res.selection} model, threshold {threshold:g})"
    )
    for col in ("start (s)", "end (s)", "frames", "peak", "mean", "most likely classes"):
        table.add_column(col, justify="left" if col.startswith("most") else "right")
    for iv in res.intervals:
        cls = ", ".join(f"{c} {p:.2f}" for c, p in iv.classes)
        table.add_row(
            f"{iv.start_s:.2f}",
            f"{iv.end_s:.2f}",
            f"{iv.start_frame}-{iv.end_frame}",
            f"{iv.peak:.3f}",
            f"{iv.mean:.3f}",
            cls,
        )
    if res.intervals:
        console.print(table)
    else:
        console.print(f"no interval reaches the threshold {threshold:g}")
    console.print(f"per-frame scores: {res.csv_path}")
    console.print(f"plot: {res.png_path}")
    console.print(f"record: {res.record_path}")


def register(app: typer.Typer) -> None:
    add_command(app, "score", score_cmd)
