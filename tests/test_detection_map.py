"""Detection mAP: hand-computed cases, options, bad inputs, and equality with a straightforward
loop implementation of the official algorithm on random predictions."""

from __future__ import annotations

import numpy as np
import pytest

from dsan_toolkit.config import from_dict, to_dict
from dsan_toolkit.errors import InputError
from dsan_toolkit.eval import DetectionMapConfig, fine_grained_map, resolve_normal_class
from dsan_toolkit.manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord

UCF_CODES = [
    "Normal",
    "Abuse",
    "Arrest",
    "Arson",
    "Assault",
    "Burglary",
    "Explosion",
    "Fighting",
    "RoadAccidents",
    "Robbery",
    "Shooting",
    "Shoplifting",
    "Stealing",
    "Vandalism",
]
XD_CODES = ["A", "B1", "B2", "B4", "B5", "B6", "G"]


def make_manifest(name: str, codes: list[str], videos: list[VideoRecord]) -> Manifest:
    classes = tuple(ClassInfo(c, c.lower(), c.lower(), normal=(i == 0)) for i, c in enumerate(codes))
    return Manifest(DatasetInfo(name=name, classes=classes, fps=30.0), tuple(videos))


def video(vid: str, labels: list[str], segments: list[tuple[int, int, str]] = ()) -> VideoRecord:
    return VideoRecord(vid, f"{vid}.mp4", "test", tuple(labels), tuple(Segment(s, e, c) for s, e, c in segments))


# ----------------------------------------------------------------------------------------------
# Loop reference, written from the algorithm's description (one video, one class at a time).
# ----------------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for i, on in enumerate(list(mask) + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            out.append((start, i))
            start = None
    return out


def _nms(props: list[tuple[int, int, float]], thresh: float) -> list[tuple[int, int, float]]:
    kept: list[tuple[int, int, float]] = []
    for p in props:  # already sorted by score
        ok = True
        for q in kept:
            inter = max(0, min(p[1], q[1]) - max(p[0], q[0]))
            if inter / ((p[1] - p[0]) + (q[1] - q[0]) - inter) > thresh:
                ok = False
        if ok:
            kept.append(p)
    return kept


def loop_map(probs, gts, n_classes, *, semantics="numpy2", evaluated=None, iou_list=(0.1, 0.2, 0.3, 0.4, 0.5)):
    """probs: list of (T, C) float32 snippet arrays; gts: list per video of (start, end, class)."""
    evaluated = list(range(n_classes)) if evaluated is None else evaluated
    frames = [np.repeat(p, 16, axis=0) for p in probs]
    cscore, masked = [], []
    for f in frames:
        top = -np.sort(-f, axis=0)[: f.shape[0] // 16]
        cs = np.mean(top, axis=0)
        cscore.append(cs)
        masked.append(f * (cs > 0.0))
    proposals = {c: [] for c in range(n_classes)}  # (video, start, end, score)
    for c in range(n_classes):
        for i, f in enumerate(masked):
            col = f[:, c]
            hi, lo = col.max(), col.min()
            thr = hi - (hi - lo) * np.float64(0.6)
            above = col > (np.float32(thr) if semantics == "numpy1" else thr)
            mine = []
            for s, e in _runs(above):
                if e - s >= 2:
                    if semantics == "numpy1":
                        score = float(col[s:e].max()) + 0.7 * float(cscore[i][c])
                    else:
                        score = float(col[s:e].max() + 0.7 * cscore[i][c])
                    mine.append((s, e, score))
            mine.sort(key=lambda p: -p[2])
            proposals[c].extend((i, s, e, sc) for s, e, sc in _nms(mine, 0.6))
    maps = []
    for th in iou_list:
        aps, empty = [], False
        for c in evaluated:
            props = sorted(proposals[c], key=lambda p: -p[3])
            if not props:
                empty = True
            remaining = [(i, s, e) for i, g in enumerate(gts) for s, e, k in g if k == c]
            n_gt = len(remaining)
            tp = []
            for vi, ps, pe, _ in props:
                best, best_j = 0.0, None
                for j, (gi, gs, ge) in enumerate(remaining):
                    if gi != vi:
                        continue
                    a, b = set(range(ps, pe)), set(range(gs, ge))
                    iou = len(a & b) / len(a | b)
                    if iou >= th and iou > best:
                        best, best_j = iou, j
                if best_j is not None:
                    del remaining[best_j]
                tp.append(1.0 if best_j is not None else 0.0)
            hits, precision_at_tp = 0, []
            for k, t in enumerate(tp):
                hits += t
                precision_at_tp.append(hits / (k + 1) if t else 0.0)
            # np.sum (pairwise), as the official code sums: a Python sum differs in the last bit
            aps.append(float(np.sum(precision_at_tp)) / n_gt if hits else 0.0)
        maps.append(0.0 if empty else 100 * float(np.mean(aps)))
    return maps


def random_case(codes, n_videos, seed, *, multi_label, craft=True):
    """Random predictions with some signal, ground truth with (for XD) overlapping segments."""
    rng = np.random.default_rng(seed)
    c = len(codes)
    videos, probs, lengths = [], {}, {}
    for n in range(n_videos):
        t = int(rng.integers(3, 60))
        logits = rng.normal(size=(t, c)).astype(np.float32)
        if rng.random() < 0.4:
            videos.append(video(f"v{n}", [codes[0]]))
            logits[:, 0] += 1.0
        else:
            labels = list(
                rng.choice(np.arange(1, c), size=int(rng.integers(1, 3)) if multi_label else 1, replace=False)
            )
            segs = []
            for _ in range(int(rng.integers(1, 4))):
                lab = int(rng.choice(labels))
                s = int(rng.integers(0, t * 16))
                e = int(min(s + rng.integers(5, 400), t * 16 + 40))  # some run past T*16
                segs.append((s, e, codes[lab]))
                logits[s // 16 : min(t, e // 16 + 1), lab] += 2.0
            videos.append(video(f"v{n}", sorted({codes[k] for k in labels}), segs))
        e = np.exp(logits - logits.max(1, keepdims=True))
        p = (e / e.sum(1, keepdims=True)).astype(np.float32)
        if craft:
            _put_value_at_threshold(p)
        probs[f"v{n}"] = p
        lengths[f"v{n}"] = t
    return videos, probs


def _put_value_at_threshold(p: np.ndarray) -> None:
    """Set one middle value of each column to float32(threshold): whether it counts as above
    the threshold depends on numpy's promotion rules (numpy 1: no; numpy 2: iff it rounded up)."""
    for c in range(p.shape[1]):
        col = p[:, c]
        thr = col.max() - (col.max() - col.min()) * np.float64(0.6)
        j = int(np.argsort(col)[col.size // 2])
        if col.min() < col[j] < col.max():
            col[j] = np.float32(thr)


def gts_for(manifest: Manifest, probs, mode: str):
    idx = manifest.class_index()
    out = []
    for v in manifest.videos:
        g = [(s.start, s.end, idx[s.label]) for s in v.segments]
        if mode == "whole-video" and not manifest.is_anomalous(v):
            g.append((0, len(probs[v.id]) * 16, 0))
        out.append(g)
    return out


@pytest.mark.parametrize("semantics", ["numpy1", "numpy2"])
@pytest.mark.parametrize(
    "name,codes,multi,mode",
    [("ucf", UCF_CODES, False, "no-gt"), ("xd", XD_CODES, True, "whole-video"), ("ucf", UCF_CODES, False, "exclude")],
)
def test_equals_loop_reference(name, codes, multi, mode, semantics):
    for seed in range(2):
        videos, probs = random_case(codes, 24, seed, multi_label=multi)
        m = make_manifest(name, codes, videos)
        cfg = DetectionMapConfig(normal_class=mode if mode == "exclude" else "official", float_semantics=semantics)
        res = fine_grained_map(m, probs, config=cfg)
        probs_list = [probs[v.id] for v in videos]
        evaluated = list(range(1, len(codes))) if mode == "exclude" else None
        ref = loop_map(probs_list, gts_for(m, probs, mode), len(codes), semantics=semantics, evaluated=evaluated)
        assert res.normal_class == mode
        assert list(res.map) == ref  # bit-identical, not approximately equal
        assert res.mean == sum(ref) / 5
        assert any(v > 0 for v in ref)  # the case is not degenerate


def test_float_semantics_matter_near_the_threshold():
    """The crafted values make numpy-1 and numpy-2 promotion give different numbers (both
    checked against the official code under numpy 1.26.4 and 2.4 while developing)."""
    videos, probs = random_case(UCF_CODES, 40, 1, multi_label=False)
    m = make_manifest("ucf", UCF_CODES, videos)
    one = fine_grained_map(m, probs, config=DetectionMapConfig(float_semantics="numpy1"))
    two = fine_grained_map(m, probs, config=DetectionMapConfig(float_semantics="numpy2"))
    assert one.map != two.map


def test_float64_input_equals_loop_reference():
    videos, probs = random_case(XD_CODES, 16, 7, multi_label=True)
    probs = {k: v.astype(np.float64) for k, v in probs.items()}
    m = make_manifest("xd", XD_CODES, videos)
    res = fine_grained_map(m, probs)
    assert list(res.map) == loop_map([probs[v.id] for v in videos], gts_for(m, probs, "whole-video"), 7)


# ----------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------


def hand_case():
    # classes [N, A]; video a (anomalous): A-GT frames [16, 48); video n (normal), T = 2.
    m = make_manifest("toy", ["N", "A"], [video("a", ["A"], [(16, 48, "A")]), video("n", ["N"])])
    a_col = np.array([0.1, 0.9, 0.8, 0.1])
    n_col = np.array([0.9, 0.1, 0.2, 0.8])
    probs = {
        "a": np.stack([n_col, a_col], 1).astype(np.float32),
        "n": np.array([[0.7, 0.3], [0.6, 0.4]], np.float32),
    }
    return m, probs


def test_hand_computed_modes():
    # A: proposals [16,48) in a (score 0.9+0.7*0.9, exact match) and [16,32) in n (FP, lower): AP 1.
    # N: proposals [0,16) and [48,64) in a (FP, scores 1.53 / 1.43), [0,16) in n (1.19) whose
    #    IoU with the whole-video GT [0,32) is 0.5: TP at rank 3 -> AP 1/3 (for IoU <= 0.5).
    m, probs = hand_case()
    whole = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="whole-video"))
    assert whole.map == pytest.approx([100 * (1 / 3 + 1) / 2] * 5)
    assert whole.class_ap[:, 0] == pytest.approx([100 / 3] * 5)
    assert whole.class_ap[:, 1] == pytest.approx([100] * 5)
    no_gt = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="no-gt"))
    assert no_gt.map == pytest.approx([50.0] * 5)
    excl = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="exclude"))
    assert excl.map == pytest.approx([100.0] * 5)
    assert np.isnan(excl.class_ap[:, 0]).all()
    # with IoU 0.6 the normal proposal (IoU 0.5) no longer matches
    strict = fine_grained_map(
        m, probs, config=DetectionMapConfig(normal_class="whole-video", iou_thresholds=(0.5, 0.6))
    )
    assert strict.map == pytest.approx([100 * (1 / 3 + 1) / 2, 50.0])
    assert strict.mean == pytest.approx((100 * (1 / 3 + 1) / 2 + 50.0) / 2)


def test_official_normal_class_per_dataset():
    assert resolve_normal_class("official", "ucf") == "no-gt"
    assert resolve_normal_class("official", "xd") == "whole-video"
    assert resolve_normal_class("official", "my-cams") == "whole-video"
    assert resolve_normal_class("exclude", "ucf") == "exclude"


def test_class_without_proposal_zeroes_the_map_unless_asked():
    m, probs = hand_case()
    probs["a"][:, 1] = 0.5  # class A constant everywhere -> no proposal at all
    probs["n"][:, 1] = 0.5
    res = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="whole-video"))
    assert res.map == (0.0,) * 5 and res.classes_without_proposals == ("A",)
    lenient = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="whole-video", empty_class="zero-ap"))
    assert lenient.map == pytest.approx([100 / 3 / 2] * 5)


def test_partial_overlap_and_greedy_matching():
    # one class; two GTs in one video; the best proposal overlaps both, the better IoU wins.
    m = make_manifest("toy", ["N", "A"], [video("a", ["A"], [(0, 64, "A"), (64, 96, "A")])])
    a_col = np.array([0.2, 0.2, 0.9, 0.95, 0.9, 0.9, 0.1, 0.1], np.float32)  # run = snippets 2..5 = [32, 96)
    probs = {"a": np.stack([1 - a_col, a_col], 1)}
    res = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="exclude", iou_thresholds=(0.3, 0.5, 0.7)))
    # IoU([32,96), [0,64)) = 32/96, IoU([32,96), [64,96)) = 32/64 -> matches the second: AP = 1/2
    assert res.map == pytest.approx([50.0, 50.0, 0.0])


def test_ground_truth_past_the_end_is_not_cut():
    # the official mAP ground truth keeps raw intervals: GT [0, 64) on a 2-snippet video
    m = make_manifest("toy", ["N", "A"], [video("a", ["A"], [(0, 64, "A")]), video("n", ["N"])])
    probs = {"a": np.array([[0.9, 0.1], [0.1, 0.9]], np.float32), "n": np.array([[0.8, 0.2], [0.9, 0.1]], np.float32)}
    res = fine_grained_map(m, probs, config=DetectionMapConfig(normal_class="exclude", iou_thresholds=(0.25, 0.3)))
    # proposal [16, 32) vs GT [0, 64): IoU 0.25
    assert res.map == pytest.approx([100.0, 0.0])


def test_video_order_does_not_matter_without_ties():
    videos, probs = random_case(XD_CODES, 20, 3, multi_label=True)
    a = fine_grained_map(make_manifest("xd", XD_CODES, videos), probs)
    b = fine_grained_map(make_manifest("xd", XD_CODES, videos[::-1]), probs)
    assert a.map == b.map


def test_config_round_trip_and_bad_values():
    cfg = DetectionMapConfig(normal_class="exclude", iou_thresholds=(0.5,))
    assert from_dict(to_dict(cfg)) == cfg
    with pytest.raises(InputError, match="normal_class"):
        DetectionMapConfig(normal_class="skip")
    with pytest.raises(InputError, match="IoU"):
        DetectionMapConfig(iou_thresholds=(0.0,))
    with pytest.raises(InputError, match="float_semantics"):
        DetectionMapConfig(float_semantics="numpy3")


def test_bad_inputs():
    m, probs = hand_case()
    with pytest.raises(InputError, match="columns"):
        fine_grained_map(m, {"a": np.ones((4, 3), np.float32), "n": np.ones((2, 3), np.float32)})
    with pytest.raises(InputError, match="NaN"):
        fine_grained_map(m, {**probs, "n": np.full((2, 2), np.nan, np.float32)})
    with pytest.raises(InputError, match="not in manifest"):
        fine_grained_map(m, {**probs, "zzz": probs["n"]})
    bigger = Manifest(m.info, m.videos + (video("x", ["N"]),))
    with pytest.raises(InputError, match="no class probabilities"):
        fine_grained_map(bigger, probs, video_ids=["a", "n", "x"])
    with pytest.raises(InputError, match="at least 1"):
        fine_grained_map(m, {**probs, "n": np.zeros((0, 2), np.float32)})
