"""`dsan demo`: the main job end to end on generated data (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import CheckFailed
from ..base import add_command
from ..errors import console, err_console, user_errors


@user_errors
def demo_cmd(
    out: Path = typer.Option(
        Path("dsan-demo"), "--out", "-o", help="Working folder (rerunning reuses finished steps)."
    ),
    methods: str = typer.Option("dsanet,vadclip,mil,zeroshot", "--methods", "-m", help="Methods to train and compare."),
    seeds: str = typer.Option("0", "--seeds", help="Seeds, comma-separated."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Override the tiny presets' epochs."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A line per step, video and job."),
) -> None:
    """Run the whole toolkit on synthetic videos with a random tiny CLIP: a few minutes on CPU.

    Generates a synthetic dataset of real H.264 videos, verifies it, extracts features with
    the tiny random-init backbone, trains and evaluates dsanet, vadclip, mil and zero-shot
    (tiny presets), prints the bench table (markdown), writes the HTML report and audits the
    bench. The data is synthetic and the backbone random: the numbers test the pipeline only.

    Examples:
      dsan demo
      dsan demo --out /tmp/demo --seeds 0,1
      dsan demo --methods vadclip,mil --epochs 2
    """
    from ...apps.demo import BANNER, run_demo
    from .bench import parse_list, parse_seeds

    err_console.print(f"[bold yellow]{BANNER}[/bold yellow]")
    res = run_demo(
        out,
        methods=parse_list(methods, "--methods"),
        seeds=parse_seeds(seeds),
        device=device,
        epochs=epochs,
        progress=(lambda m: err_console.print(f"[dim]demo[/dim] {m}")) if progress else None,
    )
    typer.echo(res.markdown)
    if res.skipped_methods:
        console.print(f"not available in this installation (skipped): {', '.join(res.skipped_methods)}")
    console.print(
        "[bold yellow]Synthetic data, random backbone:[/bold yellow] these numbers test the pipeline, not the methods."
    )
    console.print(f"Full report (further metrics, runs, protocol): {res.report_md.resolve()}")
    console.print(f"HTML report (tables, score curves, ROC/PR, confusion): {res.html.resolve()}")
    console.print(f"Audit report: {res.audit_md.resolve()}")
    if res.score_hint:
        typer.echo(f"Score a video with a trained run:\n  {res.score_hint}")
    console.print(f"Done in {res.seconds:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in res.timings.items()) + ")")
    if not res.audit_ok:
        raise CheckFailed("the audit of the demo bench failed:\n" + "\n".join(f"  - {p}" for p in res.problems))
    console.print(
        "[green]audit passed[/green]: every metric recomputed from the stored predictions, every hash verified"
    )


def register(app: typer.Typer) -> None:
    add_command(app, "demo", demo_cmd)
