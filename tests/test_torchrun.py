"""torchrun's environment, read in one place for extraction and training."""

from __future__ import annotations

import pytest

from dsan_toolkit.errors import InputError
from dsan_toolkit.extract import RunOptions, torchrun_options
from dsan_toolkit.utils.torchrun import TorchrunEnv, torchrun_env


def test_a_plain_process_is_rank_0_of_1():
    env = torchrun_env({})
    assert env == TorchrunEnv(0, 1, 0) and not env.enabled
    assert env.device("cuda") == "cuda"


def test_torchrun_variables():
    env = torchrun_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1) and env.enabled
    assert env.device("cuda") == "cuda:1"
    assert env.device("cuda:0") == "cuda:0" and env.device("cpu") == "cpu"
    assert torchrun_env({"RANK": "1", "WORLD_SIZE": "2"}).local_rank == 1  # one machine: local rank = rank


@pytest.mark.parametrize(
    "environ",
    [
        {"RANK": "x", "WORLD_SIZE": "2"},
        {"WORLD_SIZE": "2"},
        {"RANK": "2", "WORLD_SIZE": "2"},
    ],
)
def test_bad_torchrun_variables_are_refused(environ):
    with pytest.raises(InputError):
        torchrun_env(environ)


def test_extraction_options_under_torchrun():
    single = RunOptions(device="cuda", shard=(1, 3))
    assert torchrun_options(single, TorchrunEnv()) is single
    env = TorchrunEnv(rank=2, world_size=4, local_rank=0)
    opts = torchrun_options(RunOptions(device="cuda", batch_size=8), env)
    assert (opts.shard, opts.device, opts.batch_size) == ((2, 4), "cuda:0", 8)
    with pytest.raises(InputError, match="--shard"):
        torchrun_options(RunOptions(shard=(0, 2)), env)


def test_training_device_follows_the_local_rank(monkeypatch):
    from dsan_toolkit.train.setup import resolve_device

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert str(resolve_device("cpu")) == "cpu"


def test_one_torchrun_process_is_launched_and_gets_its_local_gpu():
    env = torchrun_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert env.launched and not env.enabled
    assert env.device("cuda") == "cuda:0" and env.device("cpu") == "cpu"
    assert not torchrun_env({}).launched


def test_a_process_group_needs_torchrun_rendezvous_variables(monkeypatch):
    import torch

    from dsan_toolkit.train.distributed import DistInfo, init_distributed

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert init_distributed(torch.device("cpu")) == DistInfo()  # a plain process: no group
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(InputError, match="MASTER_ADDR and MASTER_PORT"):
        init_distributed(torch.device("cpu"))
