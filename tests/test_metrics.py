"""Frame ground truth, frame AUC/AP and evaluate_predictions: hand-computed cases, equality with
the official computation (scikit-learn on scores repeated 16 times), bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dsan_toolkit.errors import InputError, UndefinedMetric
from dsan_toolkit.eval import (
    DetectionMapConfig,
    evaluate_predictions,
    fine_grained_map,
    frame_ap,
    frame_auc,
    frame_gt,
    snippet_gt,
    video_frame_gt,
)
from dsan_toolkit.manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord
from dsan_toolkit.manifest.builtin import load_builtin_manifest

CODES = ["N", "A", "B"]


def manifest(videos: list[VideoRecord]) -> Manifest:
    classes = tuple(ClassInfo(c, c, c, normal=(i == 0)) for i, c in enumerate(CODES))
    return Manifest(DatasetInfo(name="toy", classes=classes, fps=30.0), tuple(videos))


def vid(i: str, labels, segs=(), split="test") -> VideoRecord:
    return VideoRecord(i, f"{i}.mp4", split, tuple(labels), tuple(Segment(s, e, c) for s, e, c in segs))


def official_gt(segments: list[tuple[int, int]], t: int) -> np.ndarray:
    """The official construction: zeros((T+1)*16), [s:e] = 1, drop the last 16."""
    g = np.zeros((t + 1) * 16, np.float32)
    for s, e in segments:
        g[s:e] = 1.0
    return g[:-16]


# ----------------------------------------------------------------------------------------------
# ground truth
# ----------------------------------------------------------------------------------------------


def test_frame_gt_by_hand():
    m = manifest([vid("a", ["A"], [(5, 20, "A"), (40, 100, "A")]), vid("n", ["N"])])
    g = frame_gt(m, m.videos, {"a": 3, "n": 2})
    assert g.dtype == np.float32 and g.size == 3 * 16 + 2 * 16
    expect_a = np.zeros(48, np.float32)
    expect_a[5:20] = 1
    expect_a[40:48] = 1  # the second interval is cut at T*16 = 48
    assert np.array_equal(g[:48], expect_a)
    assert not g[48:].any()
    assert np.array_equal(video_frame_gt(m, "a", 3), expect_a)


def test_frame_gt_equals_official_construction():
    rng = np.random.default_rng(0)
    videos, lengths, expect = [], {}, []
    for n in range(40):
        t = int(rng.integers(1, 30))
        segs = []
        for _ in range(int(rng.integers(0, 4))):
            s = int(rng.integers(0, t * 16 + 30))
            segs.append((s, s + int(rng.integers(1, 200)), "A"))
        videos.append(vid(f"v{n}", ["A"] if segs else ["N"], segs))
        lengths[f"v{n}"] = t
        expect.append(official_gt([(s, e) for s, e, _ in segs], t))
    m = manifest(videos)
    assert np.array_equal(frame_gt(m, m.videos, lengths), np.concatenate(expect))


def test_snippet_gt():
    f = np.zeros(48, np.float32)
    f[8:32] = 1
    assert snippet_gt(f).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(InputError, match="whole number"):
        snippet_gt(np.zeros(20))


def test_missing_or_bad_lengths():
    m = manifest([vid("a", ["A"], [(0, 4, "A")])])
    with pytest.raises(InputError, match="no length"):
        frame_gt(m, m.videos, {})
    with pytest.raises(InputError, match="at least 1"):
        frame_gt(m, m.videos, {"a": 0})


# ----------------------------------------------------------------------------------------------
# frame AUC / AP
# ----------------------------------------------------------------------------------------------


def test_auc_ap_by_hand():
    # snippet 0 (score 0.2): 8 anomalous + 8 normal frames; snippet 1 (score 0.8): 16 anomalous
    gt = np.zeros(32, np.float32)
    gt[8:] = 1
    s = np.array([0.2, 0.8])
    # AUC: (16*8 wins + 8*8 ties/2) / (24*8) ; AP: 16/24 * 1 + 8/24 * 24/32
    assert frame_auc(s, gt) == pytest.approx((128 + 32) / 192)
    assert frame_ap(s, gt) == pytest.approx(16 / 24 + (8 / 24) * 0.75)
    assert frame_auc(np.array([0.1, 0.9]), np.r_[np.zeros(16), np.ones(16)]) == 1.0
    assert frame_auc(np.array([0.9, 0.1]), np.r_[np.zeros(16), np.ones(16)]) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_auc_ap_equal_official_repeat(seed):
    rng = np.random.default_rng(seed)
    n = 500
    s = np.round(rng.random(n), 2).astype(np.float32)  # many ties
    gt = np.zeros(n * 16, np.float32)
    for _ in range(30):
        a = int(rng.integers(0, n * 16))
        gt[a : a + int(rng.integers(1, 300))] = 1
    rep = np.repeat(s.tolist(), 16)
    assert frame_auc(s, gt) == roc_auc_score(gt, rep)  # identical, not close
    assert frame_ap(s, gt) == average_precision_score(gt, rep)
    assert frame_auc(rep, gt, snippet_len=1) == roc_auc_score(gt, rep)


def test_auc_bad_inputs():
    with pytest.raises(InputError, match="frames"):
        frame_auc(np.zeros(3), np.zeros(40))
    with pytest.raises(UndefinedMetric, match="only one class"):
        frame_auc(np.zeros(2), np.zeros(32))
    with pytest.raises(InputError, match="NaN"):
        frame_ap(np.array([np.nan, 1.0]), np.r_[np.zeros(16), np.ones(16)])


# ----------------------------------------------------------------------------------------------
# evaluate_predictions
# ----------------------------------------------------------------------------------------------


def toy_predictions(seed: int = 0):
    rng = np.random.default_rng(seed)
    videos = [
        vid("a1", ["A"], [(20, 90, "A")]),
        vid("a2", ["B"], [(0, 40, "B"), (100, 160, "B")]),
        vid("a3", ["A", "B"], [(30, 80, "A"), (60, 120, "B")]),
        vid("n1", ["N"]),
        vid("n2", ["N"]),
        vid("t1", ["A"], split="train"),
    ]
    m = manifest(videos)
    lengths = {"a1": 8, "a2": 12, "a3": 9, "n1": 5, "n2": 7, "t1": 4}
    scores = {k: rng.random(t) for k, t in lengths.items() if k != "t1"}
    align = {k: rng.random(t).astype(np.float32) for k, t in lengths.items() if k != "t1"}
    probs = {k: rng.dirichlet(np.ones(3), size=t).astype(np.float32) for k, t in lengths.items() if k != "t1"}
    return m, lengths, scores, align, probs


def test_evaluate_predictions_matches_the_parts():
    m, lengths, scores, align, probs = toy_predictions()
    out = evaluate_predictions(m, lengths, scores, align, probs)
    test = [v for v in m.videos if v.split == "test"]
    gt = np.concatenate([official_gt([(s.start, s.end) for s in v.segments], lengths[v.id]) for v in test])
    rep = np.repeat(np.concatenate([scores[v.id] for v in test]).tolist(), 16)
    assert out["videos"] == 5 and out["anomalous_videos"] == 3 and out["frames"] == gt.size
    assert out["auc"] == roc_auc_score(gt, rep)
    assert out["ap"] == average_precision_score(gt, rep)
    n_anom = sum(lengths[k] for k in ("a1", "a2", "a3")) * 16
    assert out["auc_anomalous"] == roc_auc_score(gt[:n_anom], rep[:n_anom])
    assert out["ap_anomalous"] == pytest.approx(average_precision_score(gt[:n_anom], rep[:n_anom]), abs=1e-12)
    rep2 = np.repeat(np.concatenate([align[v.id] for v in test]).tolist(), 16)
    assert out["auc_align"] == roc_auc_score(gt, rep2)
    assert out["ap_align"] == average_precision_score(gt, rep2)
    dm = fine_grained_map(m, probs)
    assert [out[f"map@{t}"] for t in (0.1, 0.2, 0.3, 0.4, 0.5)] == list(dm.map)
    assert out["map_mean"] == dm.mean and out["map_normal_class"] == "whole-video"


def test_evaluate_predictions_perfect_scores():
    m, lengths, _, _, _ = toy_predictions()
    test = [v for v in m.videos if v.split == "test"]
    gt = frame_gt(m, test, lengths)
    offsets = np.cumsum([0] + [lengths[v.id] for v in test])
    perfect = snippet_gt(gt)
    scores = {v.id: perfect[offsets[i] : offsets[i + 1]] + 0.01 for i, v in enumerate(test)}
    out = evaluate_predictions(m, lengths, scores)
    assert "auc_align" not in out and "map_mean" not in out
    assert out["auc"] > 0.97 and out["ap"] > 0.95
    flipped = evaluate_predictions(m, lengths, {k: -v for k, v in scores.items()})
    assert flipped["auc"] < 0.05


def test_evaluate_predictions_undefined_metric_is_none():
    m = manifest([vid("n1", ["N"]), vid("n2", ["N"])])
    out = evaluate_predictions(m, {"n1": 3, "n2": 2}, {"n1": np.zeros(3), "n2": np.ones(2)})
    assert out["auc"] is None and out["ap"] is None and out["auc_anomalous"] is None and out["ap_anomalous"] is None


def test_evaluate_predictions_bad_inputs():
    m, lengths, scores, align, probs = toy_predictions()
    with pytest.raises(InputError, match="no classifier scores"):
        evaluate_predictions(m, lengths, {k: v for k, v in scores.items() if k != "a2"})
    with pytest.raises(InputError, match="not evaluated"):
        evaluate_predictions(m, lengths, {**scores, "t1": np.zeros(4)})
    with pytest.raises(InputError, match="has 3 values"):
        evaluate_predictions(m, lengths, {**scores, "n1": np.zeros(3)})
    with pytest.raises(InputError, match="alignment scores"):
        evaluate_predictions(m, lengths, scores, {**align, "n1": np.zeros(2)})
    with pytest.raises(InputError, match="class probabilities of video 'n2'"):
        evaluate_predictions(m, lengths, scores, None, {**probs, "n2": probs["n1"]})
    with pytest.raises(InputError, match="no videos"):
        evaluate_predictions(m, lengths, scores, split="val")


def test_evaluate_on_the_builtin_ucf_protocol():
    """The real UCF test split (290 videos, real segments) with random predictions."""
    m = load_builtin_manifest("ucf")
    rng = np.random.default_rng(1)
    test = m.split("test").videos
    lengths = {
        v.id: max(max((s.end for s in v.segments), default=0) // 16 + 1, int(rng.integers(30, 120))) for v in test
    }
    scores = {k: rng.random(t) for k, t in lengths.items()}
    probs = {k: rng.dirichlet(np.ones(14), size=t).astype(np.float32) for k, t in lengths.items()}
    out = evaluate_predictions(m, lengths, scores, scores, probs)
    assert out["videos"] == 290 and out["anomalous_videos"] == 140
    assert 0.4 < out["auc"] < 0.6  # random scores
    assert out["map_normal_class"] == "no-gt"
    honest = evaluate_predictions(
        m, lengths, scores, None, probs, detection=DetectionMapConfig(normal_class="whole-video")
    )
    assert honest["map_normal_class"] == "whole-video" and honest["map_mean"] >= out["map_mean"]
