"""`dsan extract`: videos -> CLIP features in a Zarr feature store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from ...errors import CheckFailed, InputError
from ...progress import ADVANCE, DONE, TASK, ProgressEvent, message
from ..base import add_command
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer


class _ExtractEvents:
    """The pipeline's events (plan, rows, video) as progress events: one counted task of videos
    with the snippet rate as its status, failed videos as messages."""

    def __init__(self, render: ProgressRenderer) -> None:
        self.render = render
        self.snippets = 0
        self.done = 0
        self.total = 0
        self.t0 = time.perf_counter()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "plan":
            if data["skipped"]:
                self.render(message(f"resuming: {data['skipped']} videos already done"))
            self.total = data["videos"]
            self.render(ProgressEvent(TASK, "extract", total=self.total))
        elif kind == "rows":
            self.snippets += data["rows"]
            self.render(ProgressEvent(ADVANCE, "extract", advance=0, text=self._rate()))
        elif kind == "video":
            self.done += 1
            if data["status"] == "failed":
                self.render(message(f"failed {data['id']}: {data['error']}"))
            self.render(ProgressEvent(ADVANCE, "extract", advance=1, text=self._rate()))

    def _rate(self) -> str:
        return f"{self.snippets / max(time.perf_counter() - self.t0, 1e-9):,.1f} snippets/s"

    def finish(self) -> None:
        self.render(ProgressEvent(DONE, "extract", text=f"extract: {self.done}/{self.total} videos, {self._rate()}"))


@user_errors
def extract_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Built-in dataset (ucf, xd) or a manifest file (.jsonl)."),
    root: Path = typer.Option(..., "--root", "-r", help="Folder the manifest's video paths are relative to."),
    out: Path = typer.Option(..., "--out", "-o", help="Feature store to create or complete (STORE.zarr)."),
    split: str = typer.Option(None, "--split", help="Only this split (train or test)."),
    model: str = typer.Option(
        "ViT-B-16", "--model", help="open_clip model name (dsan-tiny: tiny random-init model for tests)."
    ),
    pretrained: str = typer.Option(
        "openai", "--pretrained", help="open_clip pretrained tag; 'none' for random weights."
    ),
    weights: Path = typer.Option(
        None, "--weights", help="Local checkpoint (safetensors, or torch loaded with weights_only)."
    ),
    snippet: str = typer.Option("middle", "--snippet", help="How 16 frames become a row: first, middle or mean."),
    crops: str = typer.Option("10", "--crops", help="'center' or '10' (0 centre, 1-4 corners, 5-9 mirrors)."),
    resize: int = typer.Option(
        None, "--resize", help="Shorter side before cropping (default: image size for center, x256/224 for 10 crops)."
    ),
    precision: str = typer.Option("auto", "--precision", help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16."),
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype: float32 or float16."),
    decoder: str = typer.Option(
        "decord",
        "--decoder",
        help="Decoder backend: decord, pyav (threaded PyAV; recorded in the store's hashed config) or auto (the fastest installed: pyav, else decord).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N (under torchrun: cuda -> cuda:LOCAL_RANK)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images (frames x crops) per model call."),
    workers: int = typer.Option(
        None,
        "--workers",
        "-j",
        help="Worker processes (default: one per core on CPU, where each also runs the model; up to 8 decoders on GPU; 0: all in this process).",
    ),
    block_mb: int = typer.Option(
        None,
        "--block-mb",
        help="MiB of decoded frames per work item (bounds memory; default: the reader's block size, 64).",
    ),
    block_frames: int = typer.Option(None, "--block-frames", help="At most this many decoded frames per work item."),
    decode_timeout: float = typer.Option(
        600.0,
        "--decode-timeout",
        help="Seconds one decode call may take before its worker is stopped and the video retried, then failed (0: no limit).",
    ),
    shard: str = typer.Option(
        None, "--shard", help="K/N: write only videos i with i % N == K (read from torchrun's env when set)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store instead of resuming it."),
    allow_missing: bool = typer.Option(
        False,
        "--allow-missing",
        help="Go on when the root lacks most videos (a partial copy; they are recorded failed). Without it a root that holds none, or fewer than half, of the videos is refused before anything is written.",
    ),
    limit: int = typer.Option(None, "--limit", help="Only the first N pending videos (smoke test)."),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Videos done and snippets/s: a bar on a terminal, else a line every tenth of the way and at the end.",
    ),
) -> None:
    """Extract CLIP features of a dataset's videos into a Zarr store (resumable, sharded).

    One row per 16-frame snippet: T = N // 16 for N frames (one padded row if N < 16).
    Rerunning the same command completes an interrupted store; a store made with another
    configuration is refused. Videos that fail to decode are recorded and the command
    exits 1 with a summary. Under torchrun each rank writes its share of one store.

    Examples:
      dsan extract --dataset ucf --root /data/UCF_Crime --out ucf_vitb16.zarr --device cuda
      dsan extract --dataset ucf --root /data/UCF_Crime --out ucf.zarr --shard 0/4
      torchrun --nproc-per-node 4 -m dsan_toolkit.cli.app extract --dataset xd --root /data/XD --out xd.zarr --device cuda
      dsan extract --dataset synth/manifest.jsonl --root synth --out demo.zarr --model dsan-tiny --crops center
    """
    from ...extract import ExtractConfig, RunOptions, extract_features, parse_shard, torchrun_options
    from ...manifest.builtin import resolve_manifest

    manifest = resolve_manifest(dataset)
    if split is not None:
        if split not in ("train", "test"):
            raise InputError(f"--split must be train or test, not {split!r}")
        manifest = manifest.split(split)
    cfg = ExtractConfig(
        model=model,
        pretrained=None if pretrained.lower() == "none" or weights is not None else pretrained,
        weights=None if weights is None else str(weights),
        snippet=snippet,
        crops=crops,
        resize=resize,
        precision=precision,
        dtype=dtype,
        decoder=decoder,
    )
    opts = torchrun_options(
        RunOptions(
            device=device,
            batch_size=batch_size,
            block_frames=block_frames,
            workers=workers,
            shard=parse_shard(shard) or (0, 1),
            limit=limit,
            decode_timeout=decode_timeout,
            **({} if block_mb is None else {"block_mb": block_mb}),
        )
    )
    with ProgressRenderer(err_console, enabled=progress) as render:
        events = _ExtractEvents(render)
        res = extract_features(
            manifest, root, out, cfg, opts, overwrite=overwrite, on_event=events, allow_missing=allow_missing
        )
        if events.total:
            events.finish()
    fin = res.finalize
    rate = res.snippets / res.seconds if res.seconds else 0.0
    where = f" (shard {opts.shard[0]}/{opts.shard[1]})" if opts.shard[1] > 1 else ""
    console.print(
        f"{out}{where}: {res.done} videos extracted, {res.skipped} already done, {len(res.failed)} failed; "
        f"{res.snippets} snippets in {res.seconds:.1f} s ({rate:,.1f} snippets/s)"
    )
    if fin is not None:
        state = "complete" if fin.complete else f"incomplete: {fin.missing} videos missing (other shards or --limit)"
        console.print(f"store: {fin.done} done, {fin.failed} failed, {state}")
    if res.failed:
        for vid, err in res.failed[:20]:
            err_console.print(f"  failed {vid}: {err}")
        raise CheckFailed(f"{len(res.failed)} videos could not be decoded (recorded as failed in {out})")


def register(app: typer.Typer) -> None:
    add_command(app, "extract", extract_cmd)
