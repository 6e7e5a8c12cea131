"""`dsan bench --jobs N` and `--executor ray` give the sequential bench's results: same run
directories, same metrics, the same checkpoint bytes (on CPU a run's bytes depend on its thread
count, so the reference runs with the workers' one thread); a failed job stops the bench with
the finished runs recorded, and the rerun resumes; bad options are refused before any work."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import queue
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dsan_toolkit.bench.executors import (
    JobCrashed,
    JobFailed,
    LocalExecutor,
    RayExecutor,
    Task,
    default_trainer,
    make_executor,
)
from dsan_toolkit.bench.jobs import BenchJob
from dsan_toolkit.bench.runner import BenchConfig, run_bench
from dsan_toolkit.errors import InputError

SEEDS = (0, 1)


def fails_on_seed_1(job: BenchJob, run_dir: Path, say) -> None:
    """A trainer (module level: worker processes import it) whose seed-1 job fails."""
    if job.seed == 1:
        raise InputError("the seed-1 job was told to fail")
    default_trainer(job, run_dir, say)


def crashes(job: BenchJob, run_dir: Path, say) -> None:
    """A trainer with a bug."""
    raise ValueError(f"a bug in job {job.seed}")


def _cfg(store) -> BenchConfig:
    return BenchConfig(
        methods=("vadclip",), datasets=("synth",), seeds=SEEDS, features={"synth": str(store)}, preset="tiny", epochs=1
    )


def _files(out: Path) -> dict[str, str]:
    """Relative path -> sha256 of the runs' checkpoints and predictions."""
    found = sorted(p for p in (out / "runs").rglob("*") if p.suffix in (".safetensors", ".npz"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in found}


def _metrics(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns=["train_time_s"])


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, xd_feature_store):
    """The reference: the sequential bench, one thread (the share a worker gets on 2 cores)."""
    out = tmp_path_factory.mktemp("seq") / "bench"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_bench(_cfg(xd_feature_store), out, figures=False)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.integration
def test_jobs_2_equals_sequential(sequential, xd_feature_store, tmp_path):
    out = tmp_path / "bench"
    lines: list[str] = []
    res = run_bench(
        _cfg(xd_feature_store), out, executor=LocalExecutor(jobs=2, threads=1), progress=lines.append, figures=False
    )
    assert res.trained == 2 and res.reused == 0
    files = _files(out)
    assert len(files) == 4 and files == _files(sequential)  # same run directories, same bytes
    pd.testing.assert_frame_equal(_metrics(out), _metrics(sequential))
    jobs = json.loads((out / "bench.json").read_text())["jobs"]
    assert jobs.keys() == json.loads((sequential / "bench.json").read_text())["jobs"].keys()
    # every line of a job carries its tag, the epoch summaries included
    for i, seed in enumerate(SEEDS, 1):
        tag = f"[{i}/2] vadclip on synth, seed {seed}: "
        mine = [ln for ln in lines if ln.startswith(tag)]
        assert any("training -> " in ln for ln in mine) and any("epoch 1/1" in ln for ln in mine)
        assert any(ln.startswith(tag + "done in") for ln in mine)


@pytest.mark.integration
def test_failed_job_stops_cleanly_and_the_bench_resumes(sequential, xd_feature_store, tmp_path):
    out = tmp_path / "bench"
    cfg = _cfg(xd_feature_store)
    with pytest.raises(JobFailed) as err:
        run_bench(cfg, out, trainer=fails_on_seed_1, executor=LocalExecutor(jobs=2, threads=1), figures=False)
    msg = str(err.value)
    assert "job [2/2] vadclip on synth, seed 1 failed: the seed-1 job was told to fail" in msg
    assert "1 run(s) finished" in msg and "Traceback" not in msg
    recorded = json.loads((out / "bench.json").read_text())["jobs"]
    assert [e["job"]["seed"] for e in recorded.values()] == [0]  # the finished job is recorded
    assert not (out / "results.csv").exists()
    res = run_bench(cfg, out, executor=LocalExecutor(jobs=2, threads=1), figures=False)
    assert res.reused == 1 and res.trained == 1
    assert _files(out) == _files(sequential)
    pd.testing.assert_frame_equal(_metrics(out), _metrics(sequential))


@pytest.mark.integration
def test_a_bug_in_a_worker_keeps_its_traceback(xd_feature_store, tmp_path):
    with pytest.raises(JobCrashed) as err:
        run_bench(_cfg(xd_feature_store), tmp_path / "b", trainer=crashes, executor=LocalExecutor(jobs=2, threads=1))
    assert "job [1/2] vadclip on synth, seed 0 failed: ValueError('a bug in job 0')" in str(err.value)
    assert "seed 1 failed: ValueError('a bug in job 1')" in str(err.value)
    remote = err.value.__cause__.__cause__  # concurrent.futures' copy of the worker's traceback
    assert "in crashes" in str(remote) and 'raise ValueError(f"a bug in job {job.seed}")' in str(remote)
    assert not (tmp_path / "b" / "bench.json").exists()  # no run finished: nothing recorded


def test_a_second_bench_on_the_same_directory_is_refused(xd_feature_store, tmp_path):
    from filelock import FileLock

    out = tmp_path / "b"
    out.mkdir()
    with FileLock(str(out / ".bench.json.lock")):  # as a running bench holds it
        with pytest.raises(InputError, match="another dsan bench is running in .*; wait for it or use another --out"):
            run_bench(_cfg(xd_feature_store), out, trainer=lambda *a: pytest.fail("trained"))
    assert sorted(p.name for p in out.iterdir()) == [".bench.json.lock"]


def test_workers_take_devices_round_robin(monkeypatch):
    """Worker slot k runs its jobs on devices[k % len(devices)]; the job hash does not change."""
    from dsan_toolkit.bench import executors as ex

    job = BenchJob(method="vadclip", dataset="synth", features="/s.zarr", preset="tiny", seed=0)
    seen: list[str] = []
    before = torch.get_num_threads()
    monkeypatch.setattr(ex, "_WORKER", {})
    monkeypatch.setattr(ex.os, "environ", dict(ex.os.environ))  # a worker's thread variables stay in the test
    try:
        for slot, want in [(0, "cuda:0"), (1, "cuda:1"), (2, "cuda:0")]:
            slots, events = queue.Queue(), queue.Queue()
            slots.put(slot)
            ex._init_worker(slots, ("cuda:0", "cuda:1"), 1, events)
            task = Task(index=1, job=job, run_dir=Path("/nowhere"), tag="[1/1]")
            device, _ = ex._run_in_worker(task, lambda j, d, say: seen.append((j.device, j.key)))
            assert device == want and seen[-1] == (want, job.key)
            assert "on " + want in events.get_nowait()[1]
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.integration
def test_ray_equals_sequential(ray_local, sequential, xd_feature_store, tmp_path):
    out = tmp_path / "bench"
    lines: list[str] = []
    res = run_bench(_cfg(xd_feature_store), out, executor=RayExecutor(), progress=lines.append, figures=False)
    assert res.trained == 2 and ray_local.is_initialized()  # a session it did not start stays up
    assert _files(out) == _files(sequential)
    pd.testing.assert_frame_equal(_metrics(out), _metrics(sequential))
    assert any(ln.startswith("[2/2] vadclip on synth, seed 1: done in") for ln in lines)


def test_bad_executor_options(cli, tmp_path, xd_feature_store, monkeypatch):
    base = ("bench", "--methods", "vadclip", "--datasets", "synth", "--features", f"synth={xd_feature_store}")
    base += ("--preset", "tiny", "--out", str(tmp_path / "b"))
    cases = [
        (("--jobs", "0"), "--jobs must be 1 or more"),
        (("--jobs", "-2"), "--jobs must be 1 or more"),
        (("--devices", "gpu0"), "--devices: 'gpu0' is not a device name"),
        (("--devices", ","), "--devices: empty list"),
        (("--executor", "spark"), "--executor must be one of local, ray, not 'spark'"),
        (("--address", "10.0.0.1:6379"), "--address names a Ray cluster: it goes with --executor ray"),
        (("--executor", "ray", "--jobs", "2"), "--jobs is for --executor local"),
        (("--executor", "ray", "--devices", "cuda:0"), "--devices is for --executor local"),
    ]
    if importlib.util.find_spec("ray") is not None:  # checked before anything starts (Ray itself retries for minutes)
        cases.append((("--executor", "ray", "--address", "127.0.0.1:1"), "cannot reach the Ray cluster at 127.0.0.1:1"))
        cases.append((("--executor", "ray", "--address", "head"), "--address must be HOST:PORT"))
    if not torch.cuda.is_available():
        cases.append((("--devices", "cuda:0,cuda:1"), "CUDA is not available on this machine"))
    for extra, want in cases:
        code, text = cli(*base, *extra)
        assert code == 2 and want in text, (extra, text)
        assert "Traceback" not in text
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, text = cli(*base, "--executor", "ray")
    assert code == 2 and "needs Ray, which is not installed" in text and "dsan_toolkit[ray]" in text
    assert not (tmp_path / "b").exists()  # nothing was started
    assert make_executor("local", jobs=3, devices=["cpu", "cpu"]).devices == ("cpu", "cpu")
