"""The extraction pipeline: videos -> CLIP features in a store.

Stages, overlapped with bounded queues:

1. **decode** (``workers`` processes, a DataLoader over :func:`iter_video_blocks`): each
   worker opens its videos with decord and yields blocks of at most ``block_mb`` MiB of uint8
   frames; at most ``prefetch`` blocks wait per worker, whatever the video length;
2. **preprocess + model** (on ``device``, :mod:`.encoder`): a block's frames go to the device
   as uint8 (pinned, non-blocking on CUDA) and are resized/cropped/normalised there; each
   video's frames are cut into model calls at fixed offsets from its own start (never mixed
   with another video's, so the stored bytes do not depend on scheduling or ``workers``), run
   under autocast (fp16/bf16 on GPU); per-frame features are averaged into rows by the snippet
   rule. On an accelerator this runs in the main process; on a CPU each worker runs it on its
   own blocks (:func:`_lanes`), so only rows leave the workers;
3. **write** (a thread of the main process): rows go to the :class:`StoreWriter` through a
   bounded queue; each video is committed atomically when its last row is written.

A video that fails to decode is recorded as failed and the rest go on. Sharding writes
videos ``i`` (manifest position) with ``i % N == K``; every process finalizes at its end
(under a lock), so the last one to finish marks the store complete.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..config import to_dict
from ..decode.crops import parse_crops
from ..decode.reader import BLOCK_BYTES, iter_video_blocks
from ..errors import DsanError, InputError
from ..manifest import Manifest
from ..media.failures import DECODER_CRASHED, DECODER_HUNG, reason
from ..media.root import check_video_root
from ..store import STATUS_DONE, StoreSpec, StoreWriter
from ..store.writer import FinalizeResult, VideoSink, read_root_attrs, scan_records
from .config import CPU_MODEL_THREADS, ExtractConfig, RunOptions, auto_workers
from .encoder import Encoder, encode_stream, model_threads
from .preprocess import resize_impl

DECODE_NICE_ON_CPU = 10  # decode workers' priority increment when the model runs on the CPU
ROW_RULE = "T = N // L rows (snippet t = frames [t*L, (t+1)*L), the last N % L frames dropped); one padded row when 0 < N < L"


@dataclass
class ExtractResult:
    """What one extraction run did."""

    store: Path
    assigned: int = 0
    skipped: int = 0  # already done before this run
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    snippets: int = 0
    frames: int = 0
    seconds: float = 0.0
    finalize: FinalizeResult | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


# -- configuration resolution ---------------------------------------------------------------
def resolve_config(cfg: ExtractConfig, device: torch.device, image_size: int) -> ExtractConfig:
    """Fill ``auto``/``None`` fields (precision, resize) with what this run will do."""
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
    return dataclasses.replace(cfg, precision=precision, resize=resize)


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
        extra={"weights_file": weights_file} if weights_file else {},
    )


# -- decode stage ----------------------------------------------------------------------------
class _DecodeJobs(torch.utils.data.IterableDataset):
    """Videos shared by the DataLoader workers; each yields its videos' blocks in order or,
    given an ``encoder``, the writer messages of its videos (see :func:`_lanes`).

    With :class:`_Shared` state (fork start method) a free worker takes the next video in job
    order, so long videos do not leave one worker with a backlog, and each worker says when it
    is inside a decode call (for the watchdog); otherwise videos are dealt round-robin.
    """

    def __init__(self, jobs: list[tuple[str, str]], rule: str, snippet_len: int, block_frames: int | None,
                 shared: _Shared | None = None, nice: int = 0, encoder: Encoder | None = None,
                 block_bytes: int = BLOCK_BYTES) -> None:
        self.jobs = jobs
        self.nice = nice
        self.encoder = encoder  # set: the worker also encodes (see _lanes)
        self.rule = rule
        self.snippet_len = snippet_len
        self.block_frames = block_frames
        self.block_bytes = block_bytes
        self.shared = shared

    def _order(self) -> Iterator[int]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            yield from range(len(self.jobs))
        elif self.shared is None:
            yield from range(info.id, len(self.jobs), info.num_workers)
        else:
            taken = self.shared.taken
            while True:
                with taken.get_lock():
                    i = taken.value
                    taken.value += 1
                if i >= len(self.jobs):
                    return
                yield i

    def __iter__(self) -> Iterator[Any]:
        if torch.utils.data.get_worker_info() is not None:
            # one thread: decord decodes with one; a worker that encodes runs the model with one
            # (the workers share the cores; more would also deadlock OpenMP in a forked child),
            # as every model on a CPU does (CPU_MODEL_THREADS, see extract.encoder)
            torch.set_num_threads(CPU_MODEL_THREADS)
            if self.nice:
                try:
                    os.nice(self.nice)
                except OSError:  # not permitted: run at normal priority
                    pass
        blocks = self._blocks()
        yield from blocks if self.encoder is None else encode_stream(blocks, self.encoder)

    def _blocks(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        watched = self.shared is not None and info is not None
        if watched:
            self.shared.pids[info.id] = os.getpid()
        for i in self._order():
            vid, path = self.jobs[i]
            blocks = iter_video_blocks(vid, path, rule=self.rule, snippet_len=self.snippet_len,
                                       block_frames=self.block_frames, block_bytes=self.block_bytes)
            while True:
                if watched:  # inside a decode call since now (a monotonic clock shared by processes)
                    self.shared.busy_since[info.id] = time.monotonic()
                try:
                    msg = next(blocks)
                except StopIteration:
                    break
                finally:
                    if watched:
                        self.shared.busy_since[info.id] = 0.0
                yield msg


def _lanes(device: torch.device, opts: RunOptions, n_jobs: int) -> int:
    """Worker processes that each decode *and* encode their videos (0: none).

    The default on a CPU device, where decoding, preprocessing and the model share the same
    cores: each worker runs its stages one after the other with one thread, so only rows cross
    processes (no frames through shared memory) and no thread waits for another; the workers
    together keep every core busy. On an accelerator the workers only decode and the main
    process feeds the device (``encode_in_workers`` forces either way).
    """
    workers = max(0, min(opts.workers or 0, n_jobs))
    lanes = device.type == "cpu" if opts.encode_in_workers is None else opts.encode_in_workers
    return workers if lanes else 0


def _loader(jobs: list[tuple[str, str]], cfg: ExtractConfig, opts: RunOptions, device: torch.device,
            encoder: Encoder | None = None, workers: int | None = None, shared: _Shared | None = None) -> Any:
    """The DataLoader of the workers; with ``shared`` (:func:`_shared_state`) they are forked
    and take the next job when free, otherwise they are dealt jobs round-robin."""
    import multiprocessing as mp

    workers = max(0, min(opts.workers or 0, len(jobs))) if workers is None else workers
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs = {"prefetch_factor": max(1, opts.prefetch), "in_order": False, "persistent_workers": False}
        if shared is not None:
            kwargs["multiprocessing_context"] = mp.get_context("fork")
    # Decode-only workers feeding a model on the CPU yield to it (they stay ahead through the
    # prefetch queue); lanes share the cores evenly instead.
    nice = DECODE_NICE_ON_CPU if device.type == "cpu" and encoder is None else 0
    ds = _DecodeJobs(jobs, cfg.snippet, cfg.snippet_len, opts.block_frames, shared, nice, encoder,
                     block_bytes=opts.block_mb * 2**20)
    return torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda" and encoder is None, **kwargs
    )


# -- write stage -----------------------------------------------------------------------------
class _AsyncWriter:
    """A thread applying write messages in order; the queue bounds the rows in flight."""

    def __init__(self, writer: StoreWriter, maxsize: int = 16) -> None:
        self.writer = writer
        self.q: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.sinks: dict[str, VideoSink] = {}
        self.thread = threading.Thread(target=self._run, name="dsan-store-writer", daemon=True)
        self.thread.start()

    def put(self, item: tuple[Any, ...]) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def _run(self) -> None:
        while (item := self.q.get()) is not None:
            if self.error is not None:
                continue
            try:
                self._apply(item)
            except BaseException as exc:  # re-raised in the main thread
                self.error = exc

    def _apply(self, item: tuple[Any, ...]) -> None:
        kind, vid = item[0], item[1]
        if kind == "begin":
            _, _, T, n, fps, padded = item
            self.sinks[vid] = self.writer.begin_video(vid, T, num_frames=n, fps=fps, padded=padded)
        elif kind == "rows":
            self.sinks[vid].write_rows(item[2], item[3])
        elif kind == "end":
            self.sinks.pop(vid).commit()
        elif kind == "fail":
            sink = self.sinks.pop(vid, None)
            if sink is not None:
                sink.abort()
            self.writer.fail_video(vid, item[2], num_frames=item[3], fps=item[4])

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        for sink in self.sinks.values():
            sink.abort()
        if self.error is not None:
            raise self.error


# -- the driver ------------------------------------------------------------------------------
def shard_ids(manifest: Manifest, shard: tuple[int, int]) -> list[str]:
    k, n = shard
    return [v.id for i, v in enumerate(manifest.videos) if i % n == k]


def largest_first(jobs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Jobs by decreasing file size (a proxy for length; missing files last): workers take the
    next job when free, so the longest videos start first and the run does not end with one
    worker finishing a long video while the others wait."""

    def size(job: tuple[str, str]) -> int:
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


def _worker_died(exc: BaseException) -> bool:
    """Whether the DataLoader raised because a worker process died (a decoder crash, the OOM
    killer), as opposed to an error raised by Python code in a worker."""
    msg = str(exc)
    return isinstance(exc, RuntimeError) and "DataLoader worker" in msg and (
        "exited unexpectedly" in msg or "killed by signal" in msg)


def _run(jobs: list[tuple[str, str]], model: torch.nn.Module, cfg: ExtractConfig, opts: RunOptions,
         device: torch.device, info: Any, writer: StoreWriter, result: ExtractResult,
         emit: Callable[[str, dict[str, Any]], None]) -> None:
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
            raise DsanError(f"a worker process died before it took a video ({lost.reason}); the videos done "
                            "so far are kept: rerun the same command to resume (with --workers 0 if it recurs)")
        for job in in_flight:
            again, _, _ = _pass([job], encoder, cfg, dataclasses.replace(opts, workers=1), device, writer, result, emit)
            if again is not None:
                error = (reason(DECODER_HUNG, f"{again.reason}, twice") if again.hung
                         else reason(DECODER_CRASHED, f"its worker process died twice ({again.reason})"))
                writer.fail_video(job[0], error)
                result.failed.append((job[0], error))
                emit("video", {"id": job[0], "status": "failed", "T": 0, "error": error})
        todo = [job for job in unfinished if job not in in_flight]


@dataclass
class _Lost:
    """Why a pass ended early: a worker died (``hung``: the watchdog stopped it)."""

    reason: str
    hung: bool = False


def _pass(jobs: list[tuple[str, str]], encoder: Encoder, cfg: ExtractConfig, opts: RunOptions,
          device: torch.device, writer: StoreWriter, result: ExtractResult,
          emit: Callable[[str, dict[str, Any]], None]) -> tuple[_Lost | None, list[tuple[str, str]], list[tuple[str, str]]]:
    """One DataLoader over ``jobs``. Returns ``(None, [], [])`` when all are finished, else
    ``(why, unfinished jobs, jobs in flight)`` after a worker died (``workers > 0`` only)."""
    C = len(encoder.crops)
    lanes = _lanes(device, opts, len(jobs))
    shared = _shared_state(opts, len(jobs))
    # iter() forks the workers: before the writer and watchdog threads start
    if lanes:  # CPU: each worker decodes and encodes its videos; only rows cross processes
        stream: Iterator[tuple[Any, ...]] = iter(_loader(jobs, cfg, opts, device, encoder, lanes, shared))
    else:
        stream = encode_stream(iter(_loader(jobs, cfg, opts, device, shared=shared)), encoder)
    watchdog = _Watchdog(shared, opts.decode_timeout) if shared is not None and opts.decode_timeout else None
    sink = _AsyncWriter(writer)
    lengths: dict[str, int] = {}
    counts: dict[str, list[int]] = {}  # frames, rows of each video so far; counted once it is done
    finished: set[str] = set()
    lost: _Lost | None = None
    try:
        for ev in stream:
            kind, vid = ev[0], ev[1]
            if kind == "begin":
                lengths[vid] = ev[2]
                counts[vid] = [0, 0]
                sink.put(ev)
            elif kind == "rows":
                block = ev[3].numpy() if isinstance(ev[3], torch.Tensor) else ev[3]
                sink.put(("rows", vid, ev[2], block))
                counts[vid][0] += int(ev[4])
                counts[vid][1] += block.shape[1]
                emit("rows", {"rows": block.shape[1], "crops": C})
            elif kind == "end":  # reported once its rows are encoded, not when decoding ends
                sink.put(ev)
                finished.add(vid)
                result.done += 1
                result.frames += counts[vid][0]
                result.snippets += counts[vid][1]
                emit("video", {"id": vid, "status": "done", "T": lengths.get(vid), "error": None})
            elif kind == "fail":  # rows written before it are dropped with the video
                sink.put(ev)
                finished.add(vid)
                result.failed.append((vid, ev[2]))
                emit("video", {"id": vid, "status": "failed", "T": 0, "error": ev[2]})
    except RuntimeError as exc:
        if not _worker_died(exc):
            raise
        lost = _Lost(str(exc).strip())
    finally:
        if watchdog is not None:
            stalled = watchdog.stop()
            if lost is not None and stalled:
                lost = _Lost(stalled, hung=True)
        del stream  # shuts the workers down
        sink.close()  # aborts the videos left open
    if lost is None:
        return None, [], []
    unfinished = [job for job in jobs if job[0] not in finished]
    n_taken = shared.taken.value if shared is not None else len(jobs)  # without shared state: any may be
    in_flight = [job for job in jobs[:n_taken] if job[0] not in finished]
    return lost, unfinished, in_flight


@dataclass
class _Shared:
    """State shared with forked workers: ``taken``, the next job to take (after a crash, the
    jobs before it were taken); per worker, its ``pids`` and ``busy_since``, the monotonic
    time its current decode call started (0: not decoding)."""

    taken: Any
    pids: Any
    busy_since: Any


def _shared_state(opts: RunOptions, n_jobs: int) -> _Shared | None:
    """``None`` without workers or without fork (round-robin jobs, no watchdog)."""
    import multiprocessing as mp
    import sys

    workers = min(opts.workers or 0, n_jobs)
    if workers == 0 or not sys.platform.startswith("linux"):
        return None
    ctx = mp.get_context("fork")
    return _Shared(ctx.Value("i", 0), ctx.Array("i", workers), ctx.Array("d", workers))


class _Watchdog:
    """A thread that stops (SIGKILL) a worker whose decode call has lasted more than
    ``timeout`` seconds (decord can hang on some files); the pass then ends as if it had died."""

    def __init__(self, shared: _Shared, timeout: float) -> None:
        self.shared = shared
        self.timeout = timeout
        self.stalled = ""
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dsan-decode-watchdog", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import signal

        while not self._stop.wait(min(1.0, self.timeout / 4)):
            now = time.monotonic()
            for wid, since in enumerate(self.shared.busy_since[:]):
                pid = self.shared.pids[wid]
                if since > 0 and now - since > self.timeout and pid > 0:
                    self.stalled = f"one decode call took more than {self.timeout:g} s (worker stopped)"
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.shared.busy_since[wid] = 0.0

    def stop(self) -> str:
        """Stops the thread; what it did ('' when nothing stalled)."""
        self._stop.set()
        self.thread.join()
        return self.stalled
