"""How a bench trains its jobs: one after the other in this process, in N worker processes of
this machine (``--jobs N``, one device per worker with ``--devices``), or as Ray tasks on a
cluster (``--executor ray``).

An executor gets the jobs that still need training (:class:`Task`, in grid order) and calls
``on_done(task, device)`` in the calling process as each one finishes, so that the driver alone
records ``bench.json``; the rows and tables are built by the driver afterwards, in grid order,
whatever order the jobs finished in. A job that fails stops the bench cleanly: jobs not started
are cancelled, running ones finish and are recorded, then :class:`JobFailed` names the job and
its error (a user error keeps its short message; a bug keeps its traceback as the cause).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import queue
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DsanError, InputError
from .jobs import BenchJob
from .rows import is_trainable

Say = Callable[[str], None]
Trainer = Callable[[BenchJob, Path, Say], None]
EXECUTORS: tuple[str, ...] = ("local", "ray")
RAY_INSTALL = "pip install 'dsan_toolkit[ray]'  (or: pip install 'ray>=2.9')"
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|mps)$")


def default_trainer(job: BenchJob, run_dir: Path, progress: Say) -> None:
    """Train and evaluate one job into ``run_dir`` with the library's training loop (which
    evaluates training-free methods into a run directory of the same layout)."""
    from ..progress import DONE
    from ..train.run import TrainOptions, train

    def forward(ev: Any) -> None:  # the epochs' summaries, as bench lines
        if ev.kind == DONE and ev.text:
            progress(f"    {ev.text}")

    res = train(
        on_event=forward,
        opts=TrainOptions(
            method=job.method,
            features=Path(job.features),
            out=run_dir,
            preset=job.preset,
            seed=job.seed,
            epochs=job.epochs,
            device=job.device,
            select=job.select if is_trainable(job.method) else "last",
            overrides=dict(job.overrides),
            progress=True,
            clip_weights=Path(job.clip_weights) if job.clip_weights else None,
            precision=job.precision,
        ),
    )
    if not res.finished:
        raise InputError(f"training of {run_dir} stopped before the end; run the bench again to resume")


@dataclass(frozen=True)
class Task:
    """One job to train: its position in the grid (1-based), run directory and progress tag."""

    index: int
    job: BenchJob
    run_dir: Path
    tag: str


OnDone = Callable[[Task, str], None]  # (task, the device it ran on)


class JobFailed(DsanError):
    """A bench job failed on a user error (or its worker died); the jobs that finished are
    recorded and a rerun resumes."""


class JobCrashed(RuntimeError):
    """A bench job raised something that is no user error: a bug, reported with its traceback
    (the worker's, as the cause)."""


def check_devices(devices: Sequence[str]) -> tuple[str, ...]:
    """``--devices`` names, checked against this machine (CUDA present, index in range)."""
    out = tuple(d.strip() for d in devices if d.strip())
    if not out:
        raise InputError("--devices: empty list (e.g. --devices cuda:0,cuda:1)")
    for d in out:
        if not _DEVICE.match(d):
            raise InputError(f"--devices: {d!r} is not a device name (cpu, cuda, cuda:N, mps)")
    if any(d.startswith("cuda") for d in out):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not n:
            raise InputError(f"--devices {','.join(out)}: CUDA is not available on this machine")
        bad = [d for d in out if d.startswith("cuda:") and int(d[5:]) >= n]
        if bad:
            raise InputError(f"--devices: {', '.join(bad)} not on this machine (it has cuda:0..cuda:{n - 1})")
    return out


def _failure(task: Task, exc: BaseException) -> str:
    return f"job {task.tag} failed: {exc if isinstance(exc, DsanError) else repr(exc)}"


def _raise_failures(failures: list[tuple[Task, BaseException]], finished: int) -> None:
    if not failures:
        return
    lines = "\n".join(_failure(t, e) for t, e in failures)
    msg = (
        f"{lines}\nthe bench stopped; {finished} run(s) finished in this pass are recorded in bench.json: "
        "run the same command again to resume"
    )
    bugs = [e for _, e in failures if not isinstance(e, DsanError)]
    if bugs:
        raise JobCrashed(msg) from bugs[0]
    raise JobFailed(msg)


# -- this machine: in this process, or in N worker processes ----------------------------------------------------
@dataclass(frozen=True)
class LocalExecutor:
    """``jobs`` worker processes (spawned) on this machine; ``jobs=1`` trains in this process.
    ``devices``: one device per worker, round robin over the workers (else the jobs' own).
    ``threads``: CPU threads per worker (default: this machine's cores // workers). On CPU a run's
    bytes depend on its thread count: a worker's run equals a one-process run with as many threads."""

    jobs: int = 1
    devices: tuple[str, ...] = ()
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise InputError(f"--jobs must be 1 or more (jobs run at once), not {self.jobs}")
        if self.devices:
            object.__setattr__(self, "devices", check_devices(self.devices))

    def run(self, tasks: Sequence[Task], trainer: Trainer, say: Say, on_done: OnDone) -> None:
        if self.jobs == 1:
            self._sequential(tasks, trainer, say, on_done)
        elif tasks:
            self._processes(tasks, trainer, say, on_done)

    def _sequential(self, tasks: Sequence[Task], trainer: Trainer, say: Say, on_done: OnDone) -> None:
        for t in tasks:
            job = dataclasses.replace(t.job, device=self.devices[0]) if self.devices else t.job
            say(f"{t.tag}: {'resuming' if t.run_dir.exists() else 'training'} -> {t.run_dir}")
            t0 = time.perf_counter()
            trainer(job, t.run_dir, say)
            say(f"{t.tag}: done in {time.perf_counter() - t0:.1f} s")
            on_done(t, job.device)

    def _processes(self, tasks: Sequence[Task], trainer: Trainer, say: Say, on_done: OnDone) -> None:
        ctx = mp.get_context("spawn")
        events, slots = ctx.Queue(), ctx.Queue()
        n = min(self.jobs, len(tasks))
        for s in range(n):
            slots.put(s)
        threads = self.threads or max(1, len(os.sched_getaffinity(0)) // n)
        failures: list[tuple[Task, BaseException]] = []
        finished = 0
        by_index = {t.index: t for t in tasks}

        def drain() -> None:
            while True:
                try:
                    index, msg = events.get_nowait()
                except queue.Empty:
                    return
                say(f"{by_index[index].tag}: {msg.lstrip()}")

        with cf.ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_init_worker, initargs=(slots, self.devices, threads, events)
        ) as pool:
            pending = {pool.submit(_run_in_worker, t, trainer): t for t in tasks}
            while pending:
                done, _ = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                drain()
                for fut in done:
                    t = pending.pop(fut)
                    if fut.cancelled():
                        continue
                    try:
                        device, seconds = fut.result()
                    except cf.process.BrokenProcessPool:
                        if not any(isinstance(e, _WorkerDied) for _, e in failures):
                            failures.append((t, _WorkerDied()))
                        continue
                    except Exception as exc:  # noqa: BLE001 - reported with the job, below
                        failures.append((t, exc))
                        for other in pending:
                            other.cancel()  # not started yet: dropped; running ones finish
                        continue
                    say(f"{t.tag}: done in {seconds:.1f} s on {device}")
                    on_done(t, device)
                    finished += 1
            drain()
        _raise_failures(failures, finished)


class _WorkerDied(JobFailed):
    def __init__(self) -> None:
        super().__init__("a worker process died (killed, or out of memory?); the jobs it held did not finish")


_WORKER: dict[str, Any] = {}


def _init_worker(slots: Any, devices: tuple[str, ...], threads: int, events: Any) -> None:
    """A worker's share of the CPU threads and its device (slot k: ``devices[k % len]``)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    slot = slots.get()
    _WORKER.update(device=devices[slot % len(devices)] if devices else None, events=events)


def _run_in_worker(task: Task, trainer: Trainer) -> tuple[str, float]:
    job = task.job
    if _WORKER.get("device"):
        job = dataclasses.replace(job, device=_WORKER["device"])
    events = _WORKER["events"]

    def say(msg: str) -> None:
        events.put((task.index, msg))

    say(f"{'resuming' if task.run_dir.exists() else 'training'} -> {task.run_dir} on {job.device} (pid {os.getpid()})")
    t0 = time.perf_counter()
    try:
        trainer(job, task.run_dir, say)
    except DsanError as exc:  # its class may not survive pickling (extra init arguments): the message does
        raise InputError(str(exc)) from None
    return job.device, time.perf_counter() - t0


# -- Ray ------------------------------------------------------------------------------------------------
def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def check_address(address: str | None) -> None:
    """A Ray address the driver can reach (a TCP connection to HOST:PORT, 5 s at most): Ray's own
    connection attempts to an unreachable address retry for minutes."""
    if address in (None, "auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--address must be HOST:PORT, ray://HOST:PORT or auto, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class RayExecutor:
    """One Ray task per job: one GPU when the job's device is CUDA, else ``cpus_per_job`` CPUs.
    ``address``: the cluster (``ray.init(address=...)``); None connects to ``RAY_ADDRESS`` or
    starts a local instance. An already initialised Ray is used as it is (and left running).
    The bench directory and the feature stores must be at the same paths on every node."""

    address: str | None = None
    cpus_per_job: int = 1

    def __post_init__(self) -> None:
        import_ray()
        check_address(self.address)

    def run(self, tasks: Sequence[Task], trainer: Trainer, say: Say, on_done: OnDone) -> None:
        if not tasks:
            return
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(
                    f"cannot reach the Ray cluster at {self.address or 'RAY_ADDRESS/local'}: {exc}"
                ) from None
        try:
            self._run(ray, tasks, trainer, say, on_done)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, tasks: Sequence[Task], trainer: Trainer, say: Say, on_done: OnDone) -> None:
        remote = ray.remote(_ray_task)
        refs: dict[Any, Task] = {}
        for t in tasks:
            cuda = t.job.device.startswith("cuda")
            opts = {"num_gpus": 1, "num_cpus": 1} if cuda else {"num_cpus": self.cpus_per_job}
            refs[remote.options(max_retries=0, **opts).remote(t, trainer)] = t
            say(f"{t.tag}: submitted ({'1 GPU' if cuda else f'{self.cpus_per_job} CPU'}) -> {t.run_dir}")
        failures: list[tuple[Task, BaseException]] = []
        finished = 0
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            t = refs.pop(ready[0])
            try:
                kind, device, seconds, lines, message = ray.get(ready[0])
            except ray.exceptions.TaskCancelledError:
                continue
            except Exception as exc:  # noqa: BLE001 - a bug in the task: reported with the job
                kind, device, seconds, lines, message = "bug", "", 0.0, [], exc
            for line in lines:
                say(f"{t.tag}: {line.lstrip()}")
            if kind == "ok":
                say(f"{t.tag}: done in {seconds:.1f} s on {device}")
                on_done(t, device)
                finished += 1
                continue
            failures.append((t, InputError(message) if kind == "user" else message))
            for other in refs:
                ray.cancel(other)  # queued tasks are dropped; running ones are not forced
        _raise_failures(failures, finished)


def _ray_task(task: Task, trainer: Trainer) -> tuple[str, str, float, list[str], str]:
    """Runs on a Ray worker: Ray's CUDA_VISIBLE_DEVICES leaves the task its GPU as ``cuda``."""
    import ray
    import torch

    job = task.job
    if job.device.startswith("cuda"):
        job = dataclasses.replace(job, device="cuda")
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
    torch.set_num_threads(cpus)
    lines: list[str] = [f"training on {ray.util.get_node_ip_address()} ({job.device}, pid {os.getpid()})"]
    t0 = time.perf_counter()
    try:
        trainer(job, task.run_dir, lines.append)
    except DsanError as exc:
        return "user", job.device, 0.0, lines, str(exc)
    return "ok", job.device, time.perf_counter() - t0, lines, ""


def make_executor(
    name: str, *, jobs: int = 1, devices: Sequence[str] | None = None, address: str | None = None
) -> LocalExecutor | RayExecutor:
    """The executor the CLI options name, checked before any work."""
    if name not in EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, not {name!r}")
    if name == "local":
        if address:
            raise InputError("--address names a Ray cluster: it goes with --executor ray")
        return LocalExecutor(jobs=jobs, devices=tuple(devices or ()))
    if jobs != 1:
        raise InputError("--jobs is for --executor local; with Ray the cluster's free GPUs/CPUs decide how many run")
    if devices:
        raise InputError("--devices is for --executor local; Ray gives each task its GPU (use --device cuda)")
    return RayExecutor(address=address)
