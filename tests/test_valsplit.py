"""Validation splits (dsan_toolkit.manifest.valsplit): determinism, stratification, size and
rounding, the committed built-in files, the split file's checks, `dsan manifest val-split`,
and the video-level metrics a best-on-val run selects on."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.manifest.valsplit import (
    builtin_val_split_path,
    default_val_split,
    derive_val_split,
    read_val_split,
    stratum_of,
    stratum_size,
    val_split_from_ids,
    write_val_split,
)
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, synthetic_manifest


@pytest.fixture(scope="module")
def ucf():
    return load_builtin_manifest("ucf")


@pytest.mark.parametrize(
    "n, fraction, k",
    [(1, 0.1, 0), (2, 0.1, 1), (4, 0.1, 1), (14, 0.1, 1), (15, 0.1, 2), (25, 0.1, 3), (45, 0.1, 5), (10, 0.5, 5)],
)
def test_rounding_rule(n, fraction, k):
    # floor(fraction * n + 0.5), at least 1 for n >= 2, at most n - 1; a lone video stays in training
    assert stratum_size(n, fraction) == k


def test_never_the_whole_stratum():
    assert stratum_size(2, 0.9) == 1 and stratum_size(3, 0.99) == 2


@pytest.mark.parametrize("name", ["ucf", "xd"])
def test_committed_builtin_split_is_the_derived_one(name):
    m = load_builtin_manifest(name)
    split = derive_val_split(m, 0.1, 0)
    path = builtin_val_split_path(name)
    assert path.read_text() == split.to_json()  # regenerate with `dsan manifest val-split -d NAME -o PATH`
    assert read_val_split(path, m).hash == split.hash
    assert default_val_split(m) == (split, "builtin")


def test_ucf_split_is_stratified_by_class(ucf):
    split = derive_val_split(ucf, 0.1, 0)
    train = {v.id: v for v in ucf.split("train")}
    assert set(split.ids) <= set(train)
    per_class = Counter(stratum_of(ucf, train[i]) for i in split.ids)
    all_train = Counter(stratum_of(ucf, v) for v in train.values())
    assert per_class["Normal"] == 80 and all_train["Normal"] == 800
    assert per_class["Explosion"] == 3 and all_train["Explosion"] == 29  # 2.9 -> 3
    assert per_class["Abuse"] == 5 and all_train["Abuse"] == 48  # 4.8 -> 5
    assert {k: v["val"] for k, v in split.strata.items()} == dict(per_class)
    assert split.size == sum(per_class.values()) == 165
    assert list(split.ids) == sorted(split.ids)


def test_same_inputs_same_ids_other_seed_other_ids(ucf):
    a, b = derive_val_split(ucf, 0.1, 0), derive_val_split(ucf, 0.1, 0)
    assert a.ids == b.ids and a.hash == b.hash
    c = derive_val_split(ucf, 0.1, 1)
    assert c.ids != a.ids and c.hash != a.hash and c.size == a.size  # the sizes follow the rule, not the seed
    d = derive_val_split(ucf, 0.2, 0)
    assert d.size == 321 and d.hash != a.hash
    # derived from the manifest alone: the order of the videos in the manifest does not matter
    from dsan_toolkit.manifest.schema import Manifest

    shuffled = Manifest(ucf.info, tuple(reversed(ucf.videos)))
    assert derive_val_split(shuffled, 0.1, 0).ids == a.ids


def test_primary_class_of_a_multi_label_video():
    xd = load_builtin_manifest("xd")
    multi = next(v for v in xd.split("train") if len(v.labels) > 1)
    assert stratum_of(xd, multi) == multi.labels[0] != xd.normal_class
    normal = next(v for v in xd.split("train") if not xd.is_anomalous(v))
    assert stratum_of(xd, normal) == xd.normal_class


@pytest.mark.parametrize(
    "fraction, seed, message",
    [(0.0, 0, "in (0, 1)"), (1.0, 0, "in (0, 1)"), ("x", 0, "must be a number"), (0.1, -1, "non-negative")],
)
def test_bad_fraction_or_seed(ucf, fraction, seed, message):
    with pytest.raises(InputError, match=re.escape(message)):
        derive_val_split(ucf, fraction, seed)


def test_a_split_without_anomalous_videos_is_refused():
    # 16 training videos: 8 normal, 8 anomalous of 8 different classes (one video per stratum)
    m, _ = synthetic_manifest(SynthFeaturesConfig(num_train=16, num_test=4))
    with pytest.raises(InputError, match="no anomalous video"):
        derive_val_split(m, 0.1, 0)


def test_split_file_round_trip_and_checks(ucf, tmp_path):
    split = derive_val_split(ucf, 0.1, 3)
    path = write_val_split(split, tmp_path / "v.json")
    assert read_val_split(path, ucf) == split
    data = json.loads(path.read_text())
    assert data["hash"] == split.hash and data["seed"] == 3 and data["size"] == 165
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_val_split(split, path)
    # another manifest
    xd = load_builtin_manifest("xd")
    with pytest.raises(InputError, match="made from another manifest"):
        read_val_split(path, xd)
    # edited ids: the recorded hash no longer fits
    data["ids"] = data["ids"][1:]
    (tmp_path / "edited.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="recorded hash"):
        read_val_split(tmp_path / "edited.json", ucf)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a validation split file"):
        read_val_split(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        read_val_split(tmp_path / "missing.json")


def test_explicit_ids(ucf):
    test_video = ucf.split("test").videos[0].id
    with pytest.raises(InputError, match="not training videos"):
        val_split_from_ids(ucf, [test_video])
    normals = [v.id for v in ucf.split("train") if not ucf.is_anomalous(v)][:3]
    with pytest.raises(InputError, match="no anomalous video"):
        val_split_from_ids(ucf, normals)
    anomalous = [v.id for v in ucf.split("train") if ucf.is_anomalous(v)][:2]
    split = val_split_from_ids(ucf, normals + anomalous)
    assert split.seed is None and split.size == 5 and split.fraction == pytest.approx(5 / 1610)
    assert split.strata["Normal"] == {"train": 800, "val": 3}


def test_cli_writes_the_split(cli, tmp_path):
    code, out = cli("manifest", "val-split", "-d", "ucf", "-o", tmp_path / "u.json")
    assert code == 0, out
    assert (tmp_path / "u.json").read_text() == builtin_val_split_path("ucf").read_text()
    assert "165 of 1610" in out
    code, out = cli("manifest", "val-split", "-d", "ucf", "-o", tmp_path / "u.json")
    assert code == 2 and "--overwrite" in out
    code, out = cli("manifest", "val-split", "-d", "ucf", "--fraction", "0.2", "-o", tmp_path / "u.json", "--overwrite")
    assert code == 0 and read_val_split(tmp_path / "u.json").size == 321
    code, out = cli("manifest", "val-split", "-d", "ucf", "--fraction", "2", "-o", tmp_path / "x.json")
    assert code == 2 and "in (0, 1)" in out and not (tmp_path / "x.json").exists()
    code, out = cli("manifest", "val-split", "-d", "ucf")  # default name, in the current folder
    assert code == 0 and Path("ucf.val-split.json").is_file()


# -- video-level metrics -----------------------------------------------------------------------


def test_bag_scores_are_the_topk_mean():
    from dsan_toolkit.models.common.losses import topk_counts
    from dsan_toolkit.train.videometrics import bag_scores

    rng = np.random.default_rng(0)
    videos = [rng.random(t) for t in (5, 16, 40, 300)]
    k = topk_counts(__import__("torch").tensor([len(v) for v in videos])).numpy()
    assert list(k) == [1, 2, 3, 19]
    got = bag_scores(videos, k)
    want = [np.sort(v)[::-1][:kk].mean() for v, kk in zip(videos, k)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    probs = [rng.random((t, 3)) for t in (4, 20)]
    got = bag_scores(probs, [1, 2])
    np.testing.assert_allclose(got[1], np.sort(probs[1], axis=0)[::-1][:2].mean(axis=0), rtol=1e-12)


def test_video_metrics_values():
    from dsan_toolkit.train.videometrics import video_metrics

    y = np.array([False, True, False, True])
    m = video_metrics(
        {"scores": np.array([0.1, 0.9, 0.2, 0.8]), "align_scores": np.array([0.9, 0.1, 0.2, 0.8])},
        y,
        class_bags=np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]),
        true_classes=[[0], [1], [0], [1]],
    )
    assert m["video_auc"] == 1.0 and m["video_ap"] == 1.0
    assert m["video_auc_align"] == 0.25  # pairs: 0.1 loses to 0.9 and 0.2, 0.8 loses to 0.9, beats 0.2
    assert m["video_class_accuracy"] == 0.5
    assert m["videos"] == 4 and m["anomalous_videos"] == 2
    only = video_metrics({"scores": np.array([0.1, 0.2])}, np.array([False, False]))
    assert only["video_auc"] is None and only["video_ap"] is None
