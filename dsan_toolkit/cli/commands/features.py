"""`dsan import-features`, `dsan export-features`, `dsan compare-features`: the released
VadCLIP feature layout and store comparison."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ...errors import CheckFailed
from ..base import add_command
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer

PROGRESS_HELP = "Count the videos: a bar on a terminal, else a line every tenth of the way and at the end."


@user_errors
def import_cmd(
    fmt: str = typer.Option("vadclip", "--format", help="Layout of the features (vadclip)."),
    lists: list[Path] = typer.Option(..., "--list", help="Official list CSV (path,label); repeat for train + test."),
    root: Path = typer.Option(
        ..., "--root", "-r", help="Folder holding the .npy files (searched recursively, by file name)."
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Built-in dataset (ucf, xd) or manifest file."),
    out: Path = typer.Option(..., "--out", "-o", help="Store to write (STORE.zarr)."),
    crops: str = typer.Option(None, "--crops", help="Comma-separated crop ids (default: those named in the lists)."),
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype: float32 or float16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store."),
    lock: Path = typer.Option(
        None,
        "--lock",
        help="Frame counts from a `dsan verify` lock file of the videos (the built-in manifests carry none): each video's rows are checked against them.",
    ),
    allow_length_mismatch: bool = typer.Option(
        False,
        "--allow-length-mismatch",
        help="Import videos whose row count contradicts their frame count, flagged (shown by `dsan store info/check`), instead of failing them.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help=PROGRESS_HELP),
) -> None:
    """Import the released per-crop .npy features into a store.

    List paths are the authors' absolute paths: files are found under --root by name
    (<video>__<crop>.npy). A video's rows must fit its frame count (from the manifest or
    --lock): T within 1 row of frames // 16. Exits 1 if a listed video is missing, unreadable,
    malformed, of the wrong length or unknown.

    Examples:
      dsan import-features --format vadclip --list list/ucf_CLIP_rgb.csv --list list/ucf_CLIP_rgbtest.csv \\
          --root UCFClipFeatures --dataset ucf --out ucf_released.zarr
      dsan import-features --list xd_CLIP_rgbtest.csv --root XDTestClipFeatures --dataset xd --out xd_test.zarr
    """
    from ...errors import InputError
    from ...manifest.builtin import resolve_manifest
    from ...store.interop import import_features

    crop_ids = None
    if crops:
        try:
            crop_ids = [int(c) for c in crops.split(",")]
        except ValueError:
            raise InputError(f"--crops must be comma-separated integers, not {crops!r}") from None
    manifest = resolve_manifest(dataset)
    counts = None
    if lock is not None:
        from ...datasets.lockfile import read_lock

        held = read_lock(lock)
        if held.dataset != manifest.name:
            raise InputError(f"--lock {lock} is a lock file of dataset {held.dataset!r}, not {manifest.name!r}")
        counts = {vid: int(e["num_frames"]) for vid, e in held.videos.items() if e.get("num_frames") is not None}
    with ProgressRenderer(err_console, enabled=progress) as render:
        rep = import_features(
            fmt,
            lists,
            root,
            manifest,
            out,
            crops=crop_ids,
            dtype=dtype,
            overwrite=overwrite,
            frame_counts=counts,
            allow_length_mismatch=allow_length_mismatch,
            on_event=render,
        )
    console.print(
        f"{out}: {rep.imported} of {rep.videos} videos imported, {len(rep.failed)} failed, "
        f"{len(rep.flagged)} flagged, {len(rep.extra_files)} extra .npy files ignored"
    )
    if rep.unchecked:
        err_console.print(
            f"[bold yellow]note:[/bold yellow] {len(rep.unchecked)} imported videos have no frame count: their row "
            "counts were not checked (pass --lock LOCK from `dsan verify` to check them)"
        )
    for vid, flag in rep.flagged[:20]:
        err_console.print(f"  flagged {vid}: {flag}")
    for name in rep.extra_files[:10]:
        err_console.print(f"  extra file (not used): {name}")
    for vid, err in rep.failed[:20]:
        err_console.print(f"  failed {vid}: {err}")
    for name in rep.unknown_names[:20]:
        err_console.print(f"  unknown video (not in the manifest): {name}")
    if not rep.ok:
        raise CheckFailed(
            f"{len(rep.failed)} videos failed, {len(rep.unknown_names)} listed names are not in the manifest"
        )


@user_errors
def export_cmd(
    store: Path = typer.Argument(..., help="Feature store."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the .npy files and list CSVs."),
    fmt: str = typer.Option("vadclip", "--format", help="Layout to write (vadclip)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help=PROGRESS_HELP),
) -> None:
    """Export a store to the official layout (<video>__<crop>.npy + list CSVs).

    The lists hold absolute paths, so the official code can read them as they are.

    Example:
      dsan export-features ucf.zarr --out ucf_npy --format vadclip
    """
    from ...store import open_store
    from ...store.interop import export_features

    with ProgressRenderer(err_console, enabled=progress) as render:
        r = export_features(open_store(store), out, fmt, on_event=render)
    console.print(
        f"{out}: {r['files']} .npy files; lists {', '.join(str(p.name) for p in r['lists'])} "
        f"(test crop {r['test_crop']})"
    )


@user_errors
def compare_cmd(
    store_a: Path = typer.Argument(..., help="First store (e.g. yours)."),
    store_b: Path = typer.Argument(..., help="Second store (e.g. imported released features)."),
    crop: list[int] = typer.Option(None, "--crop", help="Compare only these crop ids (repeatable)."),
    worst: int = typer.Option(10, "--worst", help="List this many least similar videos."),
    min_cos: float = typer.Option(None, "--min-cos", help="Exit 1 if the mean cosine is below this."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help=PROGRESS_HELP),
) -> None:
    """Compare two stores: per-video cosine similarity and length agreement.

    How to check that an extraction configuration reproduces the released features.

    Examples:
      dsan compare-features ucf_mine.zarr ucf_released.zarr
      dsan compare-features a.zarr b.zarr --crop 5 --min-cos 0.99
    """
    from ...store import open_store
    from ...store.interop import compare_stores

    with ProgressRenderer(err_console, enabled=progress) as render:
        res = compare_stores(open_store(store_a), open_store(store_b), crop or None, on_event=render)
    s = res["summary"]
    t = Table(title=f"{store_a} vs {store_b}")
    for col in ("videos compared", "only in A", "only in B", "same length", "cos mean", "cos p5", "cos min"):
        t.add_column(col, justify="right")
    t.add_row(
        str(s["common"]),
        str(len(s["only_a"])),
        str(len(s["only_b"])),
        f"{s['same_length']}/{s['common']}",
        f"{s['cos_mean']:.4f}",
        f"{s['cos_p05']:.4f}",
        f"{s['cos_min']:.4f}",
    )
    console.print(t)
    rows = sorted(res["videos"], key=lambda r: r["cos_mean"])[:worst]
    if rows:
        w = Table(title=f"least similar videos (crops {s['crops']})")
        for col in ("video", "T A", "T B", "cos mean", "cos min"):
            w.add_column(col)
        for r in rows:
            w.add_row(r["id"], str(r["T_a"]), str(r["T_b"]), f"{r['cos_mean']:.4f}", f"{r['cos_min']:.4f}")
        console.print(w)
    if min_cos is not None and not s["cos_mean"] >= min_cos:
        raise CheckFailed(f"mean cosine {s['cos_mean']:.4f} is below {min_cos}")


def register(app: typer.Typer) -> None:
    add_command(app, "import-features", import_cmd)
    add_command(app, "export-features", export_cmd)
    add_command(app, "compare-features", compare_cmd)
