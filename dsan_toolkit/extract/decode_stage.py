"""The decode stage of extraction: worker processes that decode videos into frame blocks.

The workers are a DataLoader over :class:`DecodeJobs`; each opens its videos with the config's
decoder backend (decord by default; :mod:`dsan_toolkit.decode.backends`) and
yields the blocks of :mod:`dsan_toolkit.decode.messages` (at most ``block_mb`` MiB of frames;
at most ``prefetch`` blocks wait per worker, whatever the video length). Given an
:class:`~.encoder.Encoder` a worker also encodes its blocks and yields feature rows
(:func:`encode_lanes`, the CPU layout). With :class:`Shared` state (fork) a free worker takes
the next video, says when it is inside a decode call, and :class:`Watchdog` stops one stuck
there; :func:`exited_workers` tells from the worker processes themselves whether one died.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..decode.backends import DEFAULT_DECODER, resolve_decoder
from ..decode.messages import DecodeMessage
from ..decode.reader import BLOCK_BYTES, iter_video_blocks
from .config import CPU_MODEL_THREADS, ExtractConfig, RunOptions
from .encoder import Encoder, WriterMessage, encode_stream

DECODE_NICE_ON_CPU = 10  # decode workers' priority increment when the model runs on the CPU
Job = tuple[str, str]  # (video id, file path)


class DecodeJobs(torch.utils.data.IterableDataset):
    """Videos shared by the DataLoader workers; each yields its videos' blocks in order or,
    given an ``encoder``, the writer messages of its videos (see :func:`encode_lanes`).

    With :class:`Shared` state (fork start method) a free worker takes the next video in job
    order, so long videos do not leave one worker with a backlog, and each worker says when it
    is inside a decode call (for the watchdog); otherwise videos are dealt round-robin.
    """

    def __init__(
        self,
        jobs: list[Job],
        rule: str,
        snippet_len: int,
        block_frames: int | None,
        shared: Shared | None = None,
        nice: int = 0,
        encoder: Encoder | None = None,
        block_bytes: int = BLOCK_BYTES,
        decoder: str = DEFAULT_DECODER,
    ) -> None:
        self.jobs = jobs
        self.nice = nice
        self.encoder = encoder  # set: the worker also encodes (see encode_lanes)
        self.rule = rule
        self.snippet_len = snippet_len
        self.block_frames = block_frames
        self.block_bytes = block_bytes
        self.decoder = decoder
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

    def __iter__(self) -> Iterator[DecodeMessage | WriterMessage]:
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

    def _blocks(self) -> Iterator[DecodeMessage]:
        info = torch.utils.data.get_worker_info()
        watched = self.shared is not None and info is not None
        if watched:
            self.shared.pids[info.id] = os.getpid()
        for i in self._order():
            vid, path = self.jobs[i]
            blocks = iter_video_blocks(
                vid,
                path,
                rule=self.rule,
                snippet_len=self.snippet_len,
                block_frames=self.block_frames,
                block_bytes=self.block_bytes,
                decoder=self.decoder,
            )
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


def encode_lanes(device: torch.device, opts: RunOptions, n_jobs: int) -> int:
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


def decode_loader(
    jobs: list[Job],
    cfg: ExtractConfig,
    opts: RunOptions,
    device: torch.device,
    encoder: Encoder | None = None,
    workers: int | None = None,
    shared: Shared | None = None,
) -> Any:
    """The DataLoader of the workers; with ``shared`` (:func:`shared_state`) they are forked
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
    ds = DecodeJobs(
        jobs,
        cfg.snippet,
        cfg.snippet_len,
        opts.block_frames,
        shared,
        nice,
        encoder,
        block_bytes=opts.block_mb * 2**20,
        decoder=resolve_decoder(cfg.decoder),
    )
    return torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda" and encoder is None, **kwargs
    )


@dataclass
class Shared:
    """State shared with forked workers: ``taken``, the next job to take (after a crash, the
    jobs before it were taken); per worker, its ``pids`` and ``busy_since``, the monotonic
    time its current decode call started (0: not decoding)."""

    taken: Any
    pids: Any
    busy_since: Any


def shared_state(opts: RunOptions, n_jobs: int) -> Shared | None:
    """``None`` without workers or without fork (round-robin jobs, no watchdog)."""
    import multiprocessing as mp
    import sys

    workers = min(opts.workers or 0, n_jobs)
    if workers == 0 or not sys.platform.startswith("linux"):
        return None
    ctx = mp.get_context("fork")
    return Shared(ctx.Value("i", 0), ctx.Array("i", workers), ctx.Array("d", workers))


class Watchdog:
    """A thread that stops (SIGKILL) a worker whose decode call has lasted more than
    ``timeout`` seconds (decord can hang on some files); the pass then ends as if it had died."""

    def __init__(self, shared: Shared, timeout: float) -> None:
        self.shared = shared
        self.timeout = timeout
        self.stalled = ""
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dsan-decode-watchdog", daemon=True)
        self.thread.start()

    def _run(self) -> None:
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


def exited_workers(loader_iter: Any, wait: float = 0.0) -> list[str]:
    """How each worker process of a DataLoader iterator that is no longer running ended
    (``"process 123 killed by SIGKILL"``); empty while they all run (and without workers).

    Read from the processes themselves (their exit codes; the iterator keeps its
    ``multiprocessing`` worker processes in ``_workers``), not from the text of the error the
    DataLoader raises: a worker that raised a Python exception is still running. ``wait``:
    seconds to wait for an exit code to appear (the loader can see a dead worker's broken pipe
    before the process is reaped, on a loaded machine).
    """
    procs = list(getattr(loader_iter, "_workers", ()))
    deadline = time.monotonic() + wait
    while procs and all(p.is_alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    out = []
    for proc in procs:
        code = proc.exitcode
        if code is None:
            continue
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        out.append(f"process {proc.pid} {how}")
    return out


__all__ = [
    "DECODE_NICE_ON_CPU",
    "DecodeJobs",
    "Job",
    "Shared",
    "Watchdog",
    "decode_loader",
    "encode_lanes",
    "exited_workers",
    "shared_state",
]
