"""Training data: official resampling, batch composition, test chunking, resume state encoding."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch

from dsan_toolkit.models.sampling import resample_uniform, split_chunks
from dsan_toolkit.store import open_store
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store
from dsan_toolkit.train.batching import BatchPlan, shard
from dsan_toolkit.train.checkpoint import decode_state, encode_state, rng_state, set_rng_state
from dsan_toolkit.train.samples import build_train_samples, resample_video
from dsan_toolkit.train.testset import build_test_set


def _official_uniform_extract(feat: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """The official training resampling written as a plain loop (test oracle)."""
    if feat.shape[0] <= length:
        out = np.zeros((length, feat.shape[1]), np.float32)
        out[: feat.shape[0]] = feat
        return out, feat.shape[0]
    r = np.linspace(0, len(feat), length + 1, dtype=np.int32)
    out = np.zeros((length, feat.shape[1]), np.float32)
    for i in range(length):
        out[i] = np.mean(feat[r[i] : r[i + 1]], 0) if r[i] != r[i + 1] else feat[r[i]]
    return out, length


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s.zarr"
    write_synthetic_feature_store(
        path, SynthFeaturesConfig(num_train=12, num_test=6, crops=3, median_t=80, max_t=600, min_t=3, seed=3)
    )
    return open_store(path)


def test_resample_video_matches_official_loop():
    rng = np.random.default_rng(0)
    length = 32
    for t in [1, 5, 31, 32, 33, 63, 64, 65, 100, 257, 1000]:
        f = rng.standard_normal((t, 6)).astype(np.float32)
        crops = np.stack([f, -f, 2 * f])  # all crops of a video at once (what the training cache uses)
        got = resample_video(crops, length)
        ref, n = _official_uniform_extract(f, length)
        theirs, n2 = resample_uniform(f, length)
        assert got.shape == (3, n, 6) and n2 == n
        np.testing.assert_allclose(got[0], ref[:n], rtol=0, atol=2e-6)
        np.testing.assert_allclose(got[0], theirs[:n], rtol=0, atol=2e-6)
        for c in range(3):
            ref, _ = _official_uniform_extract(crops[c], length)
            np.testing.assert_allclose(got[c], ref[:n], rtol=0, atol=2e-6)
        if t <= length:  # short videos are copied bit for bit
            np.testing.assert_array_equal(got, crops)


def test_resample_video_refuses_empty_video():
    with pytest.raises(Exception, match="at least one"):
        resample_video(np.zeros((2, 0, 4), np.float32), 8)


def test_train_samples_every_crop_of_every_video(store):
    m = store.manifest
    train_ids = [v.id for v in m.split("train")]
    s = build_train_samples(store, m, train_ids, store.crop_ids, m.info.classes, 32)
    assert len(s) == len(train_ids) * 3
    lengths = store.lengths()
    normal = m.normal_class
    for i in range(len(s)):
        vid = train_ids[int(s.video[i])]
        crop = int(s.crop[i])
        b = s.batch(torch.tensor([i]))
        ref, n = _official_uniform_extract(store.read(vid, crop), 32)
        assert int(b.lengths[0]) == n == min(lengths[vid], 32)
        np.testing.assert_allclose(b.feats[0].numpy(), ref, atol=2e-6)
        labels = m.video(vid).labels
        assert bool(b.anomalous[0]) == any(c != normal for c in labels)
        hot = {m.class_codes[j] for j in torch.nonzero(b.labels[0]).flatten().tolist()}
        assert hot == set(labels)


def test_paired_plan_composition_and_determinism(store):
    m = store.manifest
    s = build_train_samples(store, m, [v.id for v in m.split("train")], store.crop_ids, m.info.classes, 16)
    plan = BatchPlan.create(s, "paired", 4, seed=7)
    n_norm, n_anom = int((~s.anomalous).sum()), int(s.anomalous.sum())
    assert plan.steps_per_epoch() == min(n_norm // 4, n_anom // 4)
    e0 = plan.epoch(0)
    assert len(e0) == plan.steps_per_epoch()
    seen_n: list[int] = []
    for normal, anomalous in e0:
        assert len(normal) == len(anomalous) == 4
        assert not s.anomalous[normal].any() and s.anomalous[anomalous].all()
        seen_n += normal.tolist()
        batch = s.batch(torch.cat([normal, anomalous]))
        assert batch.anomalous.tolist() == [False] * 4 + [True] * 4  # normal half first
    assert len(set(seen_n)) == len(seen_n)  # sampling without replacement
    again = plan.epoch(0)
    assert all(torch.equal(a, b) for x, y in zip(e0, again) for a, b in zip(x, y))
    e1 = plan.epoch(1)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(e0, e1))


def test_mixed_plan_keeps_last_partial_batch(store):
    m = store.manifest
    s = build_train_samples(store, m, [v.id for v in m.split("train")], store.crop_ids, m.info.classes, 16)
    plan = BatchPlan.create(s, "mixed", 5, seed=0)
    batches = plan.epoch(0)
    assert len(batches) == -(-len(s) // 5)
    flat = torch.cat([b[0] for b in batches])
    assert sorted(flat.tolist()) == list(range(len(s)))
    dropped = BatchPlan.create(s, "mixed", 5, seed=0, drop_last=True)
    assert dropped.steps_per_epoch() == len(s) // 5


def test_paired_plan_refuses_too_few_samples(store):
    m = store.manifest
    s = build_train_samples(store, m, [v.id for v in m.split("train")], store.crop_ids, m.info.classes, 16)
    with pytest.raises(Exception, match="paired batches of 1000"):
        BatchPlan.create(s, "paired", 1000, seed=0)
    with pytest.raises(Exception, match="unknown batch composition"):
        BatchPlan.create(s, "random", 4, seed=0)


def test_shard_splits_each_half_alike():
    normal, anomalous = torch.arange(0, 4), torch.arange(10, 14)
    parts = [shard((normal, anomalous), r, 2) for r in range(2)]
    assert parts[0][0].tolist() == [0, 2, 10, 12] and parts[1][0].tolist() == [1, 3, 11, 13]
    assert parts[0][1] == parts[1][1] == 0.5
    odd = [shard((torch.arange(5),), r, 2) for r in range(2)]
    assert odd[0][1] == pytest.approx(0.6) and odd[1][1] == pytest.approx(0.4)


def test_test_chunks_match_official_split(store):
    m = store.manifest
    ids = [v.id for v in m.split("test")]
    test = build_test_set(store, ids, crop=m.info.test_crop)
    length = 16
    index, chunk_len, owner = test.chunks(length)
    sentinel = test.table.shape[0] - 1
    for i, vid in enumerate(ids):
        feats = store.read(vid, m.info.test_crop)
        ref_chunks, ref_lens = split_chunks(feats, length)
        mine = index[owner == i]
        got = test.table[mine.reshape(-1)].view(mine.shape[0], length, -1).numpy()
        np.testing.assert_array_equal(got, ref_chunks)
        assert chunk_len[owner == i].tolist() == ref_lens.tolist()
    # the valid rows of the flattened index are every video's rows, in order
    flat = index.reshape(-1)
    assert torch.equal(flat[flat != sentinel], torch.arange(int(test.offsets[-1])))


def test_state_encoding_round_trip_without_pickle():
    state = {
        "opt": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0]}],
        },
        "sched": {
            "milestones": Counter({4: 1, 8: 1}),
            "schedule": np.linspace(0, 1, 5),
            "last_epoch": 2,
            "inf": float("inf"),
        },
        "none": None,
    }
    tensors, skeleton = encode_state(state)
    back = decode_state(tensors, skeleton)
    assert isinstance(back["sched"]["milestones"], Counter) and back["sched"]["milestones"][4] == 1
    assert back["sched"]["milestones"][5] == 0
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], state["opt"]["state"][0]["exp_avg"])
    np.testing.assert_array_equal(back["sched"]["schedule"], state["sched"]["schedule"])
    assert back["sched"]["inf"] == float("inf") and back["none"] is None
    shared = torch.randn(3)
    t2, _ = encode_state({"a": shared, "b": shared})
    assert len(t2) == 1  # shared tensors are stored once
    with pytest.raises(TypeError):
        encode_state({"x": object()})


def test_rng_state_round_trip():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    tensors, skeleton = encode_state(rng_state())
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(decode_state(tensors, skeleton))
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_prefetched_batches_equal_direct_ones(store):
    """The training loop's path (background assembly into a ring of reused buffers) yields the
    same batches as direct assembly, as long as a batch is used before two more are asked for."""
    from dsan_toolkit.train.batching import iterate_batches

    m = store.manifest
    s = build_train_samples(store, m, [v.id for v in m.split("train")], store.crop_ids, m.info.classes, 16)
    plan = BatchPlan.create(s, "paired", 2, seed=1)
    batches = plan.epoch(0) + plan.epoch(1)
    direct = [s.batch(torch.cat(p)) for p in batches]
    for (b, share), ref in zip(iterate_batches(s, batches), direct):
        assert share == 1.0
        assert torch.equal(b.feats, ref.feats) and torch.equal(b.lengths, ref.lengths)
        assert torch.equal(b.labels, ref.labels) and torch.equal(b.anomalous, ref.anomalous)
    for rank in range(2):
        for (b, share), parts in zip(iterate_batches(s, batches, rank, 2), batches):
            idx, sh = shard(parts, rank, 2)
            assert share == sh and torch.equal(b.feats, s.batch(idx).feats)


def test_a_ring_buffer_is_not_rewritten_before_its_copy_has_run(store):
    """Training does not wait for the device after a step, so an asynchronous host-to-GPU copy
    of a batch may still be queued when the host is batches further. Here each copy is deferred
    until its fence is waited on (what a CUDA event models): the background thread must wait on
    a buffer's fence before it writes the buffer again, so every copy sees its own batch, the
    batch that direct assembly gives."""
    from dsan_toolkit.train.batching import iterate_batches

    m = store.manifest
    s = build_train_samples(store, m, [v.id for v in m.split("train")], store.crop_ids, m.info.classes, 16)
    plan = BatchPlan.create(s, "paired", 2, seed=1)
    batches = plan.epoch(0) + plan.epoch(1)
    seen: list = []  # the yielded batches, still in the ring's buffers
    copies: dict[int, torch.Tensor] = {}  # the deferred "device copies"
    waited: list[int] = []

    class Fence:
        def __init__(self, i: int) -> None:
            self.i = i

        def synchronize(self) -> None:  # the copy of batch i runs now
            waited.append(self.i)
            copies[self.i] = seen[self.i].feats.clone()

    made: list[Fence] = []

    def fence() -> Fence:
        made.append(Fence(len(made)))
        return made[-1]

    for b, _share in iterate_batches(s, batches, device="cpu", fence=fence):
        seen.append(b)
    for i, b in enumerate(seen):  # the copies nobody had to wait for
        copies.setdefault(i, b.feats.clone())
    assert len(made) == len(batches) and waited == list(range(len(batches) - 3))
    for i, parts in enumerate(batches):
        assert torch.equal(copies[i], s.batch(torch.cat(parts)).feats), f"batch {i}"


def test_streaming_samples_give_the_cached_batches(store):
    from dsan_toolkit.train.samples import StreamingSamples, make_train_samples

    m = store.manifest
    ids = [v.id for v in m.split("train")]
    cached = build_train_samples(store, m, ids, store.crop_ids, m.info.classes, 16)
    streamed = make_train_samples(store, m, ids, store.crop_ids, m.info.classes, 16, cache="none")
    assert isinstance(streamed, StreamingSamples) and len(streamed) == len(cached)
    assert torch.equal(streamed.anomalous, cached.anomalous) and torch.equal(streamed.lengths, cached.lengths)
    idx = torch.randperm(len(cached), generator=torch.Generator().manual_seed(0))[:10]
    a, b = cached.batch(idx), streamed.batch(idx, out=torch.full((10 * 16 * 512,), 7.0))
    assert torch.equal(a.feats, b.feats) and torch.equal(a.labels, b.labels)
    with pytest.raises(Exception, match="unknown --cache"):
        make_train_samples(store, m, ids, store.crop_ids, m.info.classes, 16, cache="disk")


def test_available_memory_reads_memavailable(tmp_path):
    from dsan_toolkit.train.samples import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:          100000 kB\nMemAvailable:    8000000 kB\n")
    assert available_memory(meminfo) == 8000000 * 1024  # not MemFree: the page cache is reclaimable


def test_cache_auto_streams_what_does_not_fit(store, monkeypatch):
    from dsan_toolkit.train import samples

    m = store.manifest
    ids = [v.id for v in m.split("train")]
    monkeypatch.setattr(samples, "available_memory", lambda: 10**12)
    assert isinstance(
        samples.make_train_samples(store, m, ids, store.crop_ids, m.info.classes, 16), samples.TrainSamples
    )
    monkeypatch.setattr(samples, "available_memory", lambda: 1000)
    streamed = samples.make_train_samples(store, m, ids, store.crop_ids, m.info.classes, 16)
    assert isinstance(streamed, samples.StreamingSamples)
