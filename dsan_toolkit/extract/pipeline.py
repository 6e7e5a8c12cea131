"""The extraction pipeline: videos -> CLIP features in a store (the driver).

Stages, overlapped with bounded queues, each in its module:

1. **decode** (:mod:`.decode_stage`; ``workers`` processes, a DataLoader over
   :func:`~dsan_toolkit.decode.reader.iter_video_blocks`): each worker opens its videos with
   decord and yields blocks of at most ``block_mb`` MiB of uint8 frames; at most ``prefetch``
   blocks wait per worker, whatever the video length;
2. **preprocess + model** (on ``device``, :mod:`.encoder`): a block's frames go to the device
   as uint8 (pinned, non-blocking on CUDA) and are resized/cropped/normalised there; each
   video's frames are cut into model calls at fixed offsets from its own start (never mixed
   with another video's, so the stored bytes do not depend on scheduling or ``workers``), run
   under autocast (fp16/bf16 on GPU); per-frame features are averaged into rows by the snippet
   rule. On an accelerator this runs in the main process; on a CPU each worker runs it on its
   own blocks (:func:`~.decode_stage.encode_lanes`), so only rows leave the workers;
3. **write** (:mod:`.sink`, a thread of the main process): rows go to the :class:`StoreWriter`
   through a bounded queue; each video is committed atomically when its last row is written.

The stages hand each other the small frozen records of :mod:`dsan_toolkit.decode.messages` and
:class:`~.encoder.FeatureRows`. A video that fails to decode is recorded as failed and the rest
go on; a worker process that dies or hangs is handled by :func:`_run`. Sharding writes videos
``i`` (manifest position) with ``i % N == K``; every process finalizes at its end (under the
store's lock), so the last one to finish marks the store complete.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import to_dict
from ..decode.backends import decoder_record, resolve_decoder
from ..decode.crops import parse_crops
from ..decode.messages import VideoEnd, VideoFailed, VideoStart
from ..errors import DsanError, InputError
from ..manifest import Manifest
from ..media.failures import DECODER_CRASHED, DECODER_HUNG, reason
from ..media.root import check_video_root
from ..store import STATUS_DONE, StoreSpec, StoreWriter
from ..store.index import FinalizeResult, read_root_attrs, scan_records
from .config import ExtractConfig, RunOptions, auto_workers
from .decode_stage import Job, Watchdog, decode_loader, encode_lanes, exited_workers, shared_state
from .encoder import Encoder, FeatureRows, WriterMessage, encode_stream, model_threads
from .preprocess import resize_impl, resize_kernel
from .sink import StoreSink

ROW_RULE = (
    "T = N // L rows (snippet t = frames [t*L, (t+1)*L), the last N % L frames dropped); one padded row when 0 < N < L"
)


@dataclass
class ExtractResult:
    """What one extraction run did."""

    store: Path
    assigned: int = 0
    skipped: int = 0  # already done before this run
    done: int = 0
    failed: list[Job] = field(default_factory=list)
    snippets: int = 0
    frames: int = 0
    seconds: float = 0.0
    finalize: FinalizeResult | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


# -- configuration resolution ---------------------------------------------------------------
def resolve_config(cfg: ExtractConfig, device: torch.device, image_size: int) -> ExtractConfig:
    """Fill ``auto``/``None`` fields (precision, resize, decoder) with what this run will do."""
    precision = cfg.precision
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    resize = cfg.resize
    if resize is None:
        resize = image_size if cfg.crops == "center" else int(round(image_size * 256 / 224))
    if resize < image_size:
        raise InputError(f"--resize {resize} is smaller than the model's image size {image_size}")
    decoder = resolve_decoder(cfg.decoder)
    return dataclasses.replace(cfg, precision=precision, resize=resize, decoder=decoder)


def precision_for_device(precision: str, device: torch.device | str) -> str:
    """The precision a recorded config runs with on ``device``: reduced precision (fp16/bf16
    autocast) only on CUDA; elsewhere fp32. ``auto`` stays ``auto``.

    For re-extracting with a stored config on another device (``dsan score`` on a CPU with
    features made on a GPU); the values then differ by the fp16/bf16 rounding only.
    """
    if precision == "auto" or torch.device(device).type == "cuda":
        return precision
    return "fp32"


def build_spec(cfg: ExtractConfig, manifest: Manifest, info: Any, device: torch.device) -> StoreSpec:
    """The store identity of an extraction (the weight file is identified by its sha256)."""
    backbone = info.to_dict()
    weights_file = backbone.pop("weights_file", None)
    config = to_dict(cfg)
    if cfg.weights is not None:
        config["weights"] = f"sha256:{info.weights_sha256}"
    preprocessing = {
        "snippet_rule": cfg.snippet,
        "snippet_len": cfg.snippet_len,
        "row_rule": ROW_RULE,
        "crops": list(parse_crops(cfg.crops)),
        "crop_order": "0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right, 5-9 mirrors of 0-4",
        "resize_short_side": cfg.resize,
        "crop_size": info.image_size,
        "interpolation": cfg.interpolation,
        "antialias": True,
        "rounding": "resized pixels rounded and clamped to 0..255 (as an 8-bit PIL image)",
        "resize_impl": resize_impl(device),
        "normalisation": {"mean": list(info.mean), "std": list(info.std)},
        "precision": cfg.precision,
        "normalize_features": cfg.normalize_features,
    }
    return StoreSpec(
        manifest=manifest,
        crops=parse_crops(cfg.crops),
        feature_dim=info.embed_dim,
        backbone=backbone,
        random_weights=info.random_weights,
        preprocessing=preprocessing,
        snippet_rule=cfg.snippet,
        snippet_len=cfg.snippet_len,
        config=config,
        producer="extract",
        dtype=cfg.dtype,
        chunk_t=cfg.chunk_t,
        extra={"decoder": decoder_record(cfg.decoder), **({"weights_file": weights_file} if weights_file else {})},
        numeric={"resize_kernel": resize_kernel(device)},
    )


def shard_ids(manifest: Manifest, shard: tuple[int, int]) -> list[str]:
    k, n = shard
    return [v.id for i, v in enumerate(manifest.videos) if i % n == k]


def largest_first(jobs: list[Job]) -> list[Job]:
    """Jobs by decreasing file size (a proxy for length; missing files last): workers take the
    next job when free, so the longest videos start first and the run does not end with one
    worker finishing a long video while the others wait."""

    def size(job: Job) -> int:
        try:
            return os.stat(job[1]).st_size
        except OSError:
            return -1

    return sorted(jobs, key=size, reverse=True)


def extract_features(
    manifest: Manifest,
    root: str | Path,
    out: str | Path,
    cfg: ExtractConfig,
    opts: RunOptions = RunOptions(),
    *,
    overwrite: bool = False,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    bundle: Any = None,
    allow_missing: bool = False,
) -> ExtractResult:
    """Extract features of ``manifest``'s videos (files under ``root``) into the store ``out``.

    Resumes: videos already done in ``out`` are skipped. ``on_event(kind, data)`` receives
    ``("plan", {"videos", "skipped"})``, ``("video", {"id", "status", "T", "error"})`` and
    ``("rows", {"rows"})`` for progress display. ``bundle``: an already built
    :class:`~dsan_toolkit.clip.ClipBundle` on ``opts.device`` matching ``cfg`` (skips loading).
    A root that holds none, or fewer than half, of this shard's videos raises
    :class:`~dsan_toolkit.media.root.RootLooksWrong` before anything is written or loaded,
    unless ``allow_missing`` (a partial copy: the missing videos are recorded failed).
    """
    from ..clip import create_clip

    cfg.check()
    opts.check()
    cfg = dataclasses.replace(cfg, decoder=resolve_decoder(cfg.decoder))  # before anything loads
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"video root {root} is not a folder")
    device = torch.device(opts.device)
    if opts.encode_in_workers and device.type != "cpu":
        raise InputError(f"encoding in the decode workers is for CPU devices (forked workers cannot use {device})")
    todo = [manifest.video(vid) for vid in _not_done(Path(out), shard_ids(manifest, opts.shard), overwrite)]
    check_video_root(root, [v.path for v in todo], [v.split for v in todo], allow_missing=allow_missing)
    if opts.workers is None:
        opts = dataclasses.replace(opts, workers=auto_workers(str(device)))
    t_start = time.perf_counter()
    if bundle is None:
        bundle = create_clip(cfg.model, cfg.pretrained, weights=cfg.weights, device=device, seed=cfg.seed)
    elif bundle.info.model != cfg.model:
        raise InputError(f"the given backbone is {bundle.info.model!r}, the config asks for {cfg.model!r}")
    cfg = resolve_config(cfg, device, bundle.info.image_size)
    spec = build_spec(cfg, manifest, bundle.info, device)
    result = ExtractResult(store=Path(out))
    emit = on_event or (lambda kind, data: None)
    rank = opts.shard[0]
    with StoreWriter(out, spec, rank=rank, overwrite=overwrite) as writer:
        mine = shard_ids(manifest, opts.shard)
        pending = writer.pending_ids(mine)
        if opts.limit is not None:
            pending = pending[: opts.limit]
        result.assigned = len(mine)
        result.skipped = len(mine) - len(writer.pending_ids(mine))
        emit("plan", {"videos": len(pending), "skipped": result.skipped})
        if pending:
            jobs = largest_first([(vid, str(root / manifest.video(vid).path)) for vid in pending])
            with model_threads(device, opts.cpu_threads):
                _run(jobs, bundle.model, cfg, opts, device, bundle.info, writer, result, emit)
        result.finalize = writer.finalize()
    result.seconds = time.perf_counter() - t_start
    return result


def _not_done(out: Path, ids: list[str], overwrite: bool) -> list[str]:
    """``ids`` without a done record in the store ``out`` as it is now (all of them for a new
    store or ``overwrite``), read without opening it for writing: the videos whose files this
    run needs (a finished store's videos may have been deleted since)."""
    if overwrite or read_root_attrs(out) is None:
        return ids
    done = {r["id"] for r in scan_records(out).values() if r.get("status") == STATUS_DONE}
    return [vid for vid in ids if vid not in done]


def _run(
    jobs: list[Job],
    model: torch.nn.Module,
    cfg: ExtractConfig,
    opts: RunOptions,
    device: torch.device,
    info: Any,
    writer: StoreWriter,
    result: ExtractResult,
    emit: Callable[[str, dict[str, Any]], None],
) -> None:
    """All ``jobs``, surviving worker crashes and hung decoders.

    A worker process that dies (a decoder that segfaults on a corrupt file, the OOM killer) or
    that the watchdog stops (one decode call longer than ``opts.decode_timeout``) ends its
    pass: the videos done stay done; the videos in flight (taken by a worker and not finished)
    are each retried alone in a fresh worker; one that fails so again is recorded as failed
    with the reason; then the remaining videos go on.
    """
    encoder = Encoder(model, cfg, opts, device, info)
    todo = list(jobs)
    while todo:
        lost, unfinished, in_flight = _pass(todo, encoder, cfg, opts, device, writer, result, emit)
        if lost is None:
            return
        if not in_flight and len(unfinished) == len(todo):  # no video to blame, no progress
            raise DsanError(
                f"a worker process died before it took a video ({lost.reason}); the videos done "
                "so far are kept: rerun the same command to resume (with --workers 0 if it recurs)"
            )
        for job in in_flight:
            again, _, _ = _pass([job], encoder, cfg, dataclasses.replace(opts, workers=1), device, writer, result, emit)
            if again is not None:
                error = (
                    reason(DECODER_HUNG, f"{again.reason}, twice")
                    if again.hung
                    else reason(DECODER_CRASHED, f"its worker process died twice ({again.reason})")
                )
                writer.fail_video(job[0], error)
                result.failed.append((job[0], error))
                emit("video", {"id": job[0], "status": "failed", "T": 0, "error": error})
        todo = [job for job in unfinished if job not in in_flight]


@dataclass
class _Lost:
    """Why a pass ended early: a worker died (``hung``: the watchdog stopped it)."""

    reason: str
    hung: bool = False


def _pass(
    jobs: list[Job],
    encoder: Encoder,
    cfg: ExtractConfig,
    opts: RunOptions,
    device: torch.device,
    writer: StoreWriter,
    result: ExtractResult,
    emit: Callable[[str, dict[str, Any]], None],
) -> tuple[_Lost | None, list[Job], list[Job]]:
    """One DataLoader over ``jobs``. Returns ``(None, [], [])`` when all are finished, else
    ``(why, unfinished jobs, jobs in flight)`` after a worker died (``workers > 0`` only)."""
    C = len(encoder.crops)
    lanes = encode_lanes(device, opts, len(jobs))
    shared = shared_state(opts, len(jobs))
    # iter() forks the workers: before the writer and watchdog threads start
    if lanes:  # CPU: each worker decodes and encodes its videos; only rows cross processes
        workers = iter(decode_loader(jobs, cfg, opts, device, encoder, lanes, shared))
        stream: Iterator[WriterMessage] = workers
    else:
        workers = iter(decode_loader(jobs, cfg, opts, device, shared=shared))
        stream = encode_stream(workers, encoder)
    watchdog = Watchdog(shared, opts.decode_timeout) if shared is not None and opts.decode_timeout else None
    sink = StoreSink(writer)
    lengths: dict[str, int] = {}
    counts: dict[str, list[int]] = {}  # frames, rows of each video so far; counted once it is done
    finished: set[str] = set()
    lost: _Lost | None = None
    try:
        for msg in stream:
            if isinstance(msg, FeatureRows):
                sink.put(msg)
                counts[msg.id][0] += msg.frames
                counts[msg.id][1] += msg.rows.shape[1]
                emit("rows", {"rows": msg.rows.shape[1], "crops": C})
            elif isinstance(msg, VideoStart):
                lengths[msg.id] = msg.T
                counts[msg.id] = [0, 0]
                sink.put(msg)
            elif isinstance(msg, VideoEnd):  # reported once its rows are encoded, not when decoding ends
                sink.put(msg)
                finished.add(msg.id)
                result.done += 1
                result.frames += counts[msg.id][0]
                result.snippets += counts[msg.id][1]
                emit("video", {"id": msg.id, "status": "done", "T": lengths.get(msg.id), "error": None})
            elif isinstance(msg, VideoFailed):  # rows written before it are dropped with the video
                sink.put(msg)
                finished.add(msg.id)
                result.failed.append((msg.id, msg.error))
                emit("video", {"id": msg.id, "status": "failed", "T": 0, "error": msg.error})
    except Exception:
        died = exited_workers(workers, wait=2.0)  # a worker process that ended (crash, OOM killer, watchdog)
        if not died:
            raise  # an error of the code, in a worker or here
        lost = _Lost("; ".join(died))
    finally:
        if watchdog is not None:
            stalled = watchdog.stop()
            if lost is not None and stalled:
                lost = _Lost(stalled, hung=True)
        del stream, workers  # shuts the workers down
        sink.close()  # aborts the videos left open
    if lost is None:
        return None, [], []
    unfinished = [job for job in jobs if job[0] not in finished]
    n_taken = shared.taken.value if shared is not None else len(jobs)  # without shared state: any may be
    in_flight = [job for job in jobs[:n_taken] if job[0] not in finished]
    return lost, unfinished, in_flight
