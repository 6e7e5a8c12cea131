"""False alarm rate, TPR at a target FPR, per-class frame AUC and the named mAP protocols:
checked against scikit-learn on repeated frame scores and plain loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from dsan_toolkit import keys
from dsan_toolkit.errors import InputError
from dsan_toolkit.eval import (
    DetectionMapConfig,
    detection_config_for,
    evaluate_predictions,
    false_alarm_rate,
    fine_grained_map,
    list_map_protocols,
    tpr_at_fpr,
)
from dsan_toolkit.manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord

CODES = ["N", "A", "B", "C"]


def manifest(videos: list[VideoRecord], name: str = "toy") -> Manifest:
    classes = tuple(ClassInfo(c, c, c, normal=(i == 0)) for i, c in enumerate(CODES))
    return Manifest(DatasetInfo(name=name, classes=classes, fps=30.0), tuple(videos))


def vid(i: str, labels, segs=(), split="test") -> VideoRecord:
    return VideoRecord(i, f"{i}.mp4", split, tuple(labels), tuple(Segment(s, e, c) for s, e, c in segs))


def random_problem(seed: int, n: int = 30, quantize: bool = False):
    """Videos of classes A, B (one of them also C), normal ones; scores correlated with the gt."""
    rng = np.random.default_rng(seed)
    videos, lengths, scores, probs = [], {}, {}, {}
    for k in range(n):
        t = int(rng.integers(3, 25))
        kind = k % 4
        if kind == 3:
            labels, segs = ["N"], []
        else:
            labels = [["A"], ["B"], ["A", "C"]][kind]
            s = int(rng.integers(0, t * 16 - 8))
            segs = [(s, min(t * 16, s + int(rng.integers(8, 120))), labels[-1])]
        vid_id = f"v{k:03d}"
        videos.append(vid(vid_id, labels, segs))
        lengths[vid_id] = t
        base = rng.random(t) * 0.6
        for s0, e0, _ in segs:
            base[s0 // 16 : -(-e0 // 16)] += 0.4 * rng.random()
        scores[vid_id] = np.round(base, 1) if quantize else base
        p = rng.random((t, len(CODES))).astype(np.float32)
        probs[vid_id] = p / p.sum(1, keepdims=True)
    return manifest(videos), lengths, scores, probs


def repeated(m, lengths, scores, ids=None):
    ids = ids or [v.id for v in m.videos]
    from dsan_toolkit.eval import frame_gt

    gt = frame_gt(m, [m.video(i) for i in ids], lengths)
    s = np.concatenate([np.repeat(scores[i], 16) for i in ids])
    return s, gt


# ----------------------------------------------------------------------------------------------


def test_far_by_hand_and_strict_threshold():
    # 5 snippets of normal videos; 0.5 exactly is not an alarm (strict >)
    assert false_alarm_rate(np.array([0.1, 0.5, 0.51, 0.9, 0.2])) == pytest.approx(2 / 5)
    assert false_alarm_rate(np.array([0.5, 0.5])) == 0.0
    assert false_alarm_rate(np.array([0.7]), threshold=0.6) == 1.0
    with pytest.raises(InputError, match="normal video"):
        false_alarm_rate(np.zeros(0))
    with pytest.raises(InputError, match="NaN"):
        false_alarm_rate(np.array([0.1, np.nan]))


def test_far_in_evaluate_predictions_counts_normal_frames_only():
    m, lengths, scores, _ = random_problem(1)
    got = evaluate_predictions(m, lengths, scores)
    normal = [v.id for v in m.videos if not m.is_anomalous(v)]
    frames = np.concatenate([np.repeat(scores[i], 16) for i in normal])  # the classic frame loop
    assert got[keys.FAR] == pytest.approx(np.mean(frames > 0.5), abs=0)
    assert 0 < got[keys.FAR] < 1


@pytest.mark.parametrize("seed,quantize", [(0, False), (1, True), (2, True)])
@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_tpr_at_fpr_equals_sklearn_roc_curve(seed, quantize, target):
    m, lengths, scores, _ = random_problem(seed, quantize=quantize)
    s, gt = repeated(m, lengths, scores)
    fpr, tpr, _ = roc_curve(gt, s, drop_intermediate=False)
    expect = tpr[fpr <= target].max()
    got = tpr_at_fpr(np.concatenate([scores[v.id] for v in m.videos]), gt, target)
    assert got == pytest.approx(expect, abs=1e-12)
    if target in keys.FPR_TARGETS:
        assert evaluate_predictions(m, lengths, scores)[keys.tpr_at_fpr(target)] == pytest.approx(expect, abs=1e-12)


def test_tpr_at_fpr_by_hand_and_bad_target():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    gt = np.array([1, 0, 1, 0], np.float32)  # snippet_len=1: frame scores
    assert tpr_at_fpr(scores, gt, 0.0, snippet_len=1) == 0.5
    assert tpr_at_fpr(scores, gt, 0.5, snippet_len=1) == 1.0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match=r"\[0, 1\]"):
            tpr_at_fpr(scores, gt, bad, snippet_len=1)


def test_class_auc_equals_sklearn_per_class_subset():
    m, lengths, scores, _ = random_problem(3, n=40)
    got = evaluate_predictions(m, lengths, scores)
    normal = [v.id for v in m.videos if not m.is_anomalous(v)]
    per = {}
    for code in ("A", "B", "C"):  # A includes the videos labelled A and C (several labels: every class)
        ids = [v.id for v in m.videos if code in v.labels] + normal
        ids = [v.id for v in m.videos if v.id in ids]
        s, gt = repeated(m, lengths, scores, ids)
        per[code] = roc_auc_score(gt, s)
    assert set(got[keys.CLASS_AUC]) == {"A", "B", "C"}
    for code, v in per.items():
        assert got[keys.CLASS_AUC][code] == pytest.approx(v, abs=1e-12)
    assert got[keys.AUC_MACRO] == pytest.approx(np.mean(list(per.values())), abs=1e-12)
    assert got[keys.AUC_MACRO] != pytest.approx(got[keys.AUC], abs=1e-6)  # macro is not the micro AUC


def test_class_without_test_video_is_left_out():
    m, lengths, scores, _ = random_problem(4)
    keep = [v for v in m.videos if "B" not in v.labels]
    m2 = manifest(keep)
    got = evaluate_predictions(m2, lengths, {v.id: scores[v.id] for v in keep})
    assert set(got[keys.CLASS_AUC]) == {"A", "C"}


def test_far_undefined_without_normal_video():
    m, lengths, scores, _ = random_problem(5)
    keep = [v for v in m.videos if m.is_anomalous(v)]
    got = evaluate_predictions(manifest(keep), lengths, {v.id: scores[v.id] for v in keep})
    assert got[keys.FAR] is None
    assert keys.align(keys.FAR) not in got  # no alignment scores given: no key
    assert got[keys.AUC] is not None  # the normal frames of anomalous videos still define the AUC


# ----------------------------------------------------------------------------------------------
# mAP protocols


def test_protocol_registry():
    assert list_map_protocols() == ("official", "corrected")
    assert detection_config_for("official") == DetectionMapConfig()
    c = detection_config_for("corrected")
    assert (c.normal_class, c.empty_class) == ("exclude", "zero-ap")
    with pytest.raises(InputError, match="official, corrected"):
        detection_config_for("honest")


def test_official_protocol_identical_and_labelled():
    m, lengths, scores, probs = random_problem(6)
    default = evaluate_predictions(m, lengths, scores, class_probs=probs)
    named = evaluate_predictions(m, lengths, scores, class_probs=probs, map_protocol="official")
    assert named == default
    assert default[keys.MAP_PROTOCOL] == "official"
    official = fine_grained_map(m, probs).to_dict()
    for k in (*keys.MAP_AT, keys.MAP_MEAN):
        assert default[k] == official[k]  # bit-identical


def test_corrected_protocol_excludes_normal_and_scores_empty_class_alone():
    m, lengths, scores, probs = random_problem(7)
    probs = {k: v.copy() for k, v in probs.items()}
    for p in probs.values():  # class B never has a proposal: its column is constant
        p[:, 2] = 0.0
    off = evaluate_predictions(m, lengths, scores, class_probs=probs)
    cor = evaluate_predictions(m, lengths, scores, class_probs=probs, map_protocol="corrected")
    assert off[keys.MAP_MEAN] == 0.0  # official: one empty class zeroes the mAP
    assert cor[keys.MAP_PROTOCOL] == "corrected" and cor[keys.MAP_NORMAL_CLASS] == "exclude"
    r = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="exclude", empty_class="zero-ap"))
    assert np.isnan(r.class_ap[:, 0]).all()  # the normal class is left out
    assert (r.class_ap[:, 2] == 0).all()  # the empty class scores 0 alone
    expect = [float(100 * np.mean(r.class_ap[i, 1:] / 100)) for i in range(5)]
    assert [cor[keys.map_at(t)] for t in keys.IOU_THRESHOLDS] == pytest.approx(expect, abs=1e-9)
    assert cor[keys.MAP_MEAN] > 0


def test_protocol_given_twice_is_refused():
    m, lengths, scores, probs = random_problem(8)
    custom = DetectionMapConfig(normal_class="whole-video")
    with pytest.raises(InputError, match="not both"):
        evaluate_predictions(m, lengths, scores, class_probs=probs, detection=custom, map_protocol="official")
    got = evaluate_predictions(m, lengths, scores, class_probs=probs, detection=custom)
    assert got[keys.MAP_PROTOCOL] == "custom"
    with pytest.raises(InputError, match="unknown mAP protocol"):
        evaluate_predictions(m, lengths, scores, class_probs=probs, map_protocol="nope")
