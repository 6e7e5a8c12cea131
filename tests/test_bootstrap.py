"""Video-level bootstrap: each vectorised resample equals evaluate_predictions on the explicitly
duplicated video list; the intervals cover a known population value at about the nominal rate;
paired differences and the summary over seeds; bad options."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from test_alarm_metrics import manifest, random_problem, vid

from dsan_toolkit import keys
from dsan_toolkit.errors import InputError
from dsan_toolkit.eval import DetectionMapConfig, detection_config_for, evaluate_predictions
from dsan_toolkit.eval.bootstrap import (
    BRANCH_METRICS,
    Interval,
    ResampledMetrics,
    bootstrap_metrics,
    counts_with_full_set,
    paired_bootstrap,
    resample_counts,
    seed_summary,
)


def draws_of(m, lengths, scores, align, probs, counts, config=DetectionMapConfig()):
    prob = ResampledMetrics(m, lengths, scores, None, "test")
    out = prob.branch("classifier scores", scores, counts)
    out.update({keys.align(k): v for k, v in prob.branch("alignment scores", align, counts).items()})
    out.update(prob.detection(probs, counts, config))
    return out


def duplicated(m, counts_row):
    ids = [v.id for v in m.videos if v.split == "test"]
    return [ids[i] for i in np.repeat(np.arange(len(ids)), counts_row.astype(int))]


@pytest.mark.parametrize("protocol", ["official", "corrected"])
@pytest.mark.parametrize("seed,quantize", [(0, False), (11, True)])
def test_every_resample_equals_the_duplicated_video_list(seed, quantize, protocol):
    m, lengths, scores, probs = random_problem(seed, n=36, quantize=quantize)
    align = {k: np.round(1 - v, 2) for k, v in scores.items()}  # ties across videos
    counts = counts_with_full_set(len(m.videos), 6, seed)
    config = detection_config_for(protocol)
    draws = draws_of(m, lengths, scores, align, probs, counts, config)
    assert set(draws) == {*BRANCH_METRICS, *map(keys.align, BRANCH_METRICS), *keys.MAP_AT, keys.MAP_MEAN}
    for r in range(counts.shape[0]):
        ids = duplicated(m, counts[r])
        assert len(ids) == len(m.videos)
        want = evaluate_predictions(
            m,
            lengths,
            {i: scores[i] for i in ids},
            {i: align[i] for i in ids},
            probs,
            video_ids=ids,
            map_protocol=protocol,
        )
        for key, d in draws.items():
            if want[key] is None:
                assert np.isnan(d[r]), key
            else:
                assert d[r] == pytest.approx(want[key], abs=1e-12, rel=1e-12), (r, key)
    assert len({tuple(c) for c in counts[1:]}) == counts.shape[0] - 1  # distinct resamples


def test_map_resample_with_a_class_losing_all_proposals():
    # one class has proposals in a single video: a resample without it zeroes the official mAP
    m, lengths, scores, probs = random_problem(5, n=24)
    probs = {k: v.copy() for k, v in probs.items()}
    first = m.videos[0].id
    for k, p in probs.items():
        if k != first:
            p[:, 3] = 0.0
    counts = counts_with_full_set(len(m.videos), 40, 2)
    for protocol in ("official", "corrected"):
        cfg = detection_config_for(protocol)
        d = ResampledMetrics(m, lengths, scores, None, "test").detection(probs, counts, cfg)[keys.MAP_MEAN]
        rows = [r for r in range(1, 41) if counts[r, 0] == 0][:2]
        assert rows, "every resample drew video 0"
        for r in rows:
            ids = duplicated(m, counts[r])
            want = evaluate_predictions(
                m, lengths, {i: scores[i] for i in ids}, None, probs, video_ids=ids, map_protocol=protocol
            )
            assert d[r] == pytest.approx(want[keys.MAP_MEAN], abs=1e-12)
            if protocol == "official":
                assert d[r] == 0.0


def test_bootstrap_metrics_values_and_intervals():
    m, lengths, scores, probs = random_problem(2, n=40)
    align = {k: np.sqrt(v) for k, v in scores.items()}
    res = bootstrap_metrics(m, lengths, scores, align, probs, n_resamples=200, seed=3)
    full = evaluate_predictions(m, lengths, scores, align, probs)
    assert set(res) == {*BRANCH_METRICS, *map(keys.align, BRANCH_METRICS), *keys.MAP_AT, keys.MAP_MEAN}
    for key, iv in res.items():
        assert isinstance(iv, Interval)
        assert iv.value == pytest.approx(full[key], abs=1e-12), key
        assert iv.lo <= iv.hi
    auc = res[keys.AUC]
    assert auc.lo < auc.value < auc.hi and auc.hi - auc.lo > 0.01
    # the interval is the percentile interval of the resampled values
    counts = counts_with_full_set(len(m.videos), 200, 3)
    d = draws_of(m, lengths, scores, align, probs, counts)[keys.AUC][1:]
    assert (auc.lo, auc.hi) == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])), abs=1e-15)
    # seeded: same seed, same interval; another seed, another; a lower level, a narrower interval
    again = bootstrap_metrics(m, lengths, scores, n_resamples=200, seed=3)[keys.AUC]
    assert again == auc
    assert bootstrap_metrics(m, lengths, scores, n_resamples=200, seed=4)[keys.AUC] != auc
    narrow = bootstrap_metrics(m, lengths, scores, n_resamples=200, seed=3, level=0.5)[keys.AUC]
    assert auc.lo < narrow.lo < narrow.hi < auc.hi


def test_resample_counts():
    c = resample_counts(7, 500, 0)
    assert c.shape == (500, 7) and (c.sum(axis=1) == 7).all()
    assert np.array_equal(c, resample_counts(7, 500, 0))
    assert abs(c.mean() - 1.0) < 0.05  # every video is drawn once on average


def test_metric_undefined_on_the_full_set_is_left_out():
    m, lengths, scores, _ = random_problem(4)
    keep = [v for v in m.videos if m.is_anomalous(v)]
    res = bootstrap_metrics(manifest(keep), lengths, {v.id: scores[v.id] for v in keep}, n_resamples=20)
    assert keys.FAR not in res and keys.AUC in res


def test_coverage_of_a_known_population_auc():
    """A population of 3000 videos (correlated frames within a video); its pooled frame AUC is
    computed exactly. 200 samples of 60 videos: the 95% intervals cover it at about 95%."""
    rng = np.random.default_rng(12345)
    videos, lengths, scores = [], {}, {}
    for k in range(3000):
        t = int(rng.integers(4, 12))
        anomalous = k % 2 == 0
        vid_id = f"p{k}"
        effect = rng.normal(0, 0.8)  # a video-level shift: frames of one video are not independent
        s = rng.normal(effect, 1.0, t)
        if anomalous:
            a = int(rng.integers(0, t - 2))
            b = int(rng.integers(a + 1, t + 1))
            s[a:b] += 1.2
            videos.append(vid(vid_id, ["A"], [(a * 16, b * 16, "A")]))
        else:
            videos.append(vid(vid_id, ["N"]))
        lengths[vid_id], scores[vid_id] = t, s
    pop = manifest(videos)
    from dsan_toolkit.eval import frame_gt

    gt = frame_gt(pop, pop.videos, lengths)[::16]  # one label per snippet (whole snippets annotated)
    truth = roc_auc_score(gt, np.concatenate([scores[v.id] for v in pop.videos]))
    ids = [v.id for v in pop.videos]
    covered, n_draws = 0, 200
    for _ in range(n_draws):
        sample = list(rng.choice(ids, 60, replace=False))
        iv = bootstrap_metrics(
            pop,
            lengths,
            {i: scores[i] for i in sample},
            video_ids=sample,
            n_resamples=300,
            seed=int(rng.integers(1 << 30)),
        )[keys.AUC]
        covered += iv.lo <= truth <= iv.hi
    assert 0.88 <= covered / n_draws <= 0.99, covered / n_draws


# ----------------------------------------------------------------------------------------------
# paired differences, seeds


def test_paired_bootstrap():
    m, lengths, scores, probs = random_problem(8, n=48)
    rng = np.random.default_rng(0)
    worse = {k: v + rng.normal(0, 0.4, v.size) for k, v in scores.items()}
    same = paired_bootstrap(m, lengths, scores, scores, n_resamples=200)
    assert (same.diff, same.lo, same.hi, same.p_value, same.significant) == (0.0, 0.0, 0.0, 1.0, False)
    d = paired_bootstrap(m, lengths, scores, worse, metric=keys.AUC, n_resamples=300, seed=1)
    a = evaluate_predictions(m, lengths, scores)[keys.AUC]
    b = evaluate_predictions(m, lengths, worse)[keys.AUC]
    assert d.diff == pytest.approx(a - b, abs=1e-12) and d.diff > 0
    counts = counts_with_full_set(len(m.videos), 300, 1)
    da = ResampledMetrics(m, lengths, scores, None, "test").branch("a", scores, counts)[keys.AUC][1:]
    db = ResampledMetrics(m, lengths, worse, None, "test").branch("b", worse, counts)[keys.AUC][1:]
    diffs = da - db  # the same resamples for both
    assert (d.lo, d.hi) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-15)
    assert d.p_value == pytest.approx(min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))
    assert d.significant == (d.lo > 0)
    # the reverse comparison mirrors it
    r = paired_bootstrap(m, lengths, worse, scores, n_resamples=300, seed=1)
    assert (r.diff, r.lo, r.hi) == pytest.approx((-d.diff, -d.hi, -d.lo), abs=1e-12)
    # mAP needs both class probabilities
    with pytest.raises(InputError, match="class probabilities"):
        paired_bootstrap(m, lengths, scores, worse, metric=keys.MAP_MEAN)
    pm = paired_bootstrap(
        m, lengths, scores, scores, metric=keys.MAP_MEAN, class_probs_a=probs, class_probs_b=probs, n_resamples=50
    )
    assert pm.diff == 0.0 and not pm.significant
    with pytest.raises(InputError, match="no paired bootstrap for metric"):
        paired_bootstrap(m, lengths, scores, worse, metric=keys.CLASS_AUC)


def test_seed_summary():
    s = seed_summary([0.80, 0.82, 0.79, 0.85])
    v = np.array([0.80, 0.82, 0.79, 0.85])
    half = stats.t.ppf(0.975, 3) * v.std(ddof=1) / 2
    assert (s.n, s.mean, s.std) == (4, pytest.approx(v.mean()), pytest.approx(v.std(ddof=1)))
    assert (s.lo, s.hi) == pytest.approx((v.mean() - half, v.mean() + half))
    one = seed_summary([0.8])
    assert one.n == 1 and one.mean == 0.8 and np.isnan([one.std, one.lo, one.hi]).all()
    with pytest.raises(InputError, match="no values"):
        seed_summary([])
    with pytest.raises(InputError, match="NaN"):
        seed_summary([0.8, float("nan")])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_resamples": 0}, "positive integer"),
        ({"n_resamples": 2.5}, "positive integer"),
        ({"level": 1.5}, r"\(0, 1\)"),
        ({"level": 0}, r"\(0, 1\)"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_options(kwargs, match):
    m, lengths, scores, _ = random_problem(1)
    with pytest.raises(InputError, match=match):
        bootstrap_metrics(m, lengths, scores, **kwargs)


def test_bad_predictions():
    m, lengths, scores, probs = random_problem(1)
    first = m.videos[0].id
    with pytest.raises(InputError, match="no classifier scores"):
        bootstrap_metrics(m, lengths, {k: v for k, v in scores.items() if k != first})
    bad = dict(scores)
    bad[first] = np.full(lengths[first], np.nan)
    with pytest.raises(InputError, match="NaN"):
        bootstrap_metrics(m, lengths, bad)
    short = dict(probs)
    short[first] = probs[first][:-1]
    with pytest.raises(InputError, match=first):
        bootstrap_metrics(m, lengths, scores, class_probs=short)
