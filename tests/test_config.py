"""Configs: runtime fields are recorded but not hashed, decided once on the field."""

from __future__ import annotations

from dataclasses import dataclass, replace

from dsan_toolkit.config import (
    config_hash,
    from_dict,
    identity_dict,
    recorded_config_hash,
    register_config,
    runtime_field,
    to_dict,
)


@register_config
@dataclass(frozen=True)
class _Inner:
    size: int
    cache_dir: str = runtime_field("/tmp")


@register_config
@dataclass(frozen=True)
class _Outer:
    name: str
    inner: _Inner
    device: str = runtime_field("cpu")


def test_runtime_fields_are_recorded_but_not_hashed():
    a = _Outer("x", _Inner(3, "/a"), device="cuda:0")
    b = _Outer("x", _Inner(3, "/b"), device="cpu")
    assert to_dict(a)["device"] == "cuda:0" and to_dict(a)["inner"]["cache_dir"] == "/a"  # recorded
    assert "device" not in identity_dict(a) and "cache_dir" not in identity_dict(a)["inner"]  # not identity
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(replace(a, inner=_Inner(4, "/a")))
    # a recorded config is rebuilt before hashing, so the record's runtime fields do not count
    assert recorded_config_hash(to_dict(a)) == config_hash(a)
    assert recorded_config_hash({**to_dict(a), "name": "y"}) != config_hash(a)
    assert recorded_config_hash({"type": "_Outer", "bogus": 1}) is None
    assert from_dict(to_dict(a)) == a


def test_bench_job_key_is_its_identity_hash():
    """The bench job key is the hash of the job without its path and device fields (the same
    value as before these fields were marked, so existing bench directories are reused)."""
    from dsan_toolkit.bench.jobs import BenchJob

    job = BenchJob(method="vadclip", dataset="synth", features="/s.zarr", preset="tiny", seed=0, store_hash="ab")
    d = to_dict(job)
    for k in ("features", "device", "clip_weights"):
        d.pop(k)
    assert job.key == config_hash(d)
    assert replace(job, features="/other.zarr", device="cuda", clip_weights="/w.pt").key == job.key
    assert replace(job, store_hash="cd").key != job.key
