"""`dsan audit`: recompute and verify everything a run or bench directory records."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import CheckFailed
from ..base import add_command
from ..errors import console, err_console, user_errors


@user_errors
def audit_cmd(
    path: Path = typer.Argument(..., help="A run directory (dsan train) or a bench directory (dsan bench)."),
    rerun: bool = typer.Option(False, "--rerun", help="Also retrain with the same config and seed and compare."),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="Largest accepted drift of a retrained metric."),
    store: Path = typer.Option(
        None,
        "--features",
        "-f",
        help="Feature store to check instead of the run's recorded path (run dirs); its content hash must still be the recorded one.",
    ),
    lock: Path = typer.Option(None, "--lock", help="Lock file (dsan verify) to check against the manifest (run dirs)."),
    report_file: Path = typer.Option(None, "--report-file", help="Markdown audit report (default: PATH/audit.md)."),
    device: str = typer.Option("cpu", "--device", help="Device for --rerun."),
    clip_weights: Path = typer.Option(
        None,
        "--clip-weights",
        help="Local CLIP weight file for --rerun (default: the path the run recorded); its sha256 must be the recorded one.",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Say what is being checked (hashing, recomputing, retraining)."
    ),
) -> None:
    """Audit a run or bench directory: hashes, recomputed metrics, environment, optional rerun.

    Recomputes every metric from the stored predictions and the manifest's ground truth and
    compares it with the recorded value; verifies the hashes of config, checkpoints, feature
    store (content of its arrays), manifest and lock file; compares the environment. Writes a
    markdown report and exits non-zero naming whatever does not match.

    Examples:
      dsan audit runs/dsanet-ucf-s0
      dsan audit dsan-bench
      dsan audit runs/dsanet-ucf-s0 --rerun --tolerance 1e-6
    """
    from ...audit.bench import audit_path
    from ...utils.atomic import atomic_write_text
    from ...utils.paths import output_file

    out = output_file(report_file or (path / "audit.md"), "--report-file")
    kw = {
        "rerun": rerun,
        "tolerance": tolerance,
        "device": device,
        "clip_weights": clip_weights,
        "progress": (lambda m: err_console.print(f"[dim]audit[/dim] {m}")) if progress else None,
    }
    if store or lock:
        kw.update(store=store, lock=lock)
    rep = audit_path(path, **kw)
    atomic_write_text(out, rep.to_markdown())
    n_checks = len(rep.checks) + len(rep.numbers) + len(rep.rerun)
    numeric_env = [d for d in rep.env_diffs if d.numeric]
    if numeric_env:
        err_console.print(
            "environment differs: " + ", ".join(f"{d.key} {d.recorded} -> {d.current}" for d in numeric_env)
        )
    if rep.ok:
        console.print(f"[green]audit passed[/green]: {n_checks} checks on {path}; report {out}")
        return
    raise CheckFailed(
        f"audit failed ({len(rep.problems)} problem(s)); report {out}\n"
        + "\n".join(f"  - {p}" for p in rep.problems[:30])
    )


def register(app: typer.Typer) -> None:
    add_command(app, "audit", audit_cmd)
