"""Bench tables and reports: aggregation over seeds, deltas against the published rows,
protocol marks, renderers and figures computed from prediction arrays."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from dsan_toolkit.bench.published import load_published, published_for
from dsan_toolkit.bench.report import (
    BenchReport,
    PredictionSet,
    VideoPrediction,
    confusion,
    frame_gt,
    markdown_table,
    render,
    snippet_classes,
)
from dsan_toolkit.bench.table import (
    ResultRow,
    aggregate,
    format_ablation_table,
    format_dataset_table,
    protocol_marks,
    rows_frame,
)
from dsan_toolkit.errors import InputError


def _row(method="dsanet", dataset="ucf", seed=0, auc=0.9, ap=0.5, mmean=10.0, **kw):
    base = dict(
        method=method,
        dataset=dataset,
        seed=seed,
        preset=dataset,
        selection="best-on-test",
        config_hash=f"{seed:064x}",
        features="vadclip-release",
        backbone="ViT-B-16/openai",
        random_backbone=False,
        synthetic=False,
        metrics={"auc": auc, "ap": ap, "map_mean": mmean},
        train_time_s=10.0 + seed,
        params_trainable=44_100_000,
    )
    base.update(kw)
    return ResultRow(**base)


def test_published_rows_are_data_with_sources():
    rows = load_published()
    d_ucf = published_for("dsanet", "ucf", rows)
    assert d_ucf is not None and d_ucf.metrics["auc"] == pytest.approx(89.44)
    assert published_for("dsanet", "xd", rows).metrics["ap"] == pytest.approx(86.95)
    assert published_for("vadclip", "ucf", rows).metrics["auc"] == pytest.approx(88.02)
    assert published_for("vadclip", "xd", rows).metrics["ap"] == pytest.approx(84.51)
    for r in rows:
        assert r.source and r.table and r.backbone
        assert set(r.confirmed) <= set(r.metrics)
    assert published_for("mil", "ucf", rows) is None


def test_aggregate_mean_std_over_seeds_matches_numpy():
    aucs = [0.81, 0.85, 0.86]
    rows = [_row(seed=s, auc=a) for s, a in enumerate(aucs)] + [_row(method="vadclip", seed=0, auc=0.7)]
    agg = aggregate(rows)
    d = agg[agg.method == "dsanet"].iloc[0]
    assert d["auc_mean"] == pytest.approx(100 * np.mean(aucs))
    assert d["auc_std"] == pytest.approx(100 * np.std(aucs, ddof=1))
    assert d["auc_n"] == 3 and d["n_seeds"] == 3 and d["seeds"] == "0,1,2"
    assert d["map_mean_mean"] == pytest.approx(10.0)  # mAP is already in percent
    assert d["train_time_s"] == pytest.approx(11.0)
    v = agg[agg.method == "vadclip"].iloc[0]
    assert v["auc_std"] == 0.0 and v["n_seeds"] == 1


def test_delta_only_where_protocol_matches():
    rows = [_row(seed=s, auc=0.9) for s in range(2)]
    rows += [
        _row(
            method="vadclip",
            seed=0,
            auc=0.85,
            synthetic=True,
            random_backbone=True,
            features="synthetic",
            preset="tiny",
            selection="last",
        )
    ]
    agg = aggregate(rows)
    t = format_dataset_table(agg, "ucf")
    d = t[t.method == "dsanet"].iloc[0]
    assert d["Δ AUC"] == f"{90.0 - 89.44:+.2f}"
    assert d["protocol"] == "same as paper"
    assert d["AUC"] == "90.00 ± 0.00"
    v = t[t.method == "vadclip"].iloc[0]
    assert v["Δ AUC"] == "n/c"
    for mark in ("synthetic data", "random backbone", "selection last", "preset tiny"):
        assert mark in v["protocol"]


def test_protocol_marks_name_each_difference():
    paper = published_for("dsanet", "xd")
    g = dict(synthetic=False, random_backbone=False, features="ViT-B-16/openai:center", selection="last", preset="xd")
    marks = protocol_marks(g, paper)
    assert any("features" in m for m in marks) and any("selection last" in m for m in marks)
    assert protocol_marks(dict(g, features="vadclip-release", selection="best-on-test"), paper) == []
    assert protocol_marks(dict(g, method="mil", dataset="xd"), None)[0] == "no published row for mil on xd"


def test_ablation_table_in_paper_form():
    comps = ["normality", "event_background", "text_adapter", "refinement"]
    rows = [_row(seed=0, ablation="all", components={c: True for c in comps}, auc=0.9)]
    for i, c in enumerate(comps):
        rows.append(_row(seed=0, ablation=f"no-{c}", components={k: k != c for k in comps}, auc=0.8 + 0.01 * i))
    t = format_ablation_table(aggregate(rows), "ucf")
    assert list(t["ablation"])[-1] == "all"  # all-on row last
    assert (t.iloc[-1][comps] == "✓").all()
    off = t[t.ablation == "no-text_adapter"].iloc[0]
    assert off["text_adapter"] == "✗" and off["normality"] == "✓"


def test_markdown_and_csv_json_renderers_round_trip():
    rows = [_row(seed=s, auc=0.8 + 0.01 * s) for s in range(3)]
    agg = aggregate(rows)
    table = format_dataset_table(agg, "ucf")
    rep = BenchReport(title="t", tables=[("UCF", table)], notes=["synthetic"], rows=rows_frame(rows))
    md = render(rep, "md")
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 3  # header, separator, one method
    assert all(ln.count("|") == lines[0].count("|") for ln in lines)
    assert re.search(r"\| 81\.00 ± 1\.00 \|", md)
    csv = render(rep, "csv")
    back = pd.read_csv(__import__("io").StringIO(csv))
    assert sorted(back["auc"]) == pytest.approx([0.8, 0.81, 0.82])
    js = json.loads(render(rep, "json"))
    assert js["tables"]["UCF"][0]["method"] == "dsanet" and len(js["runs"]) == 3
    with pytest.raises(InputError):
        render(rep, "pdf")
    assert markdown_table(pd.DataFrame({"a|b": ["x|y"]})).count("\\|") == 2


def test_frame_gt_cuts_past_the_end_and_snippet_classes():
    gt = frame_gt(4, [(10, 40, "B"), (60, 100, "C")])
    assert gt.shape == (64,) and gt[10:40].all() and gt[60:].all() and gt[:10].sum() == 0 and gt[40:60].sum() == 0
    p = PredictionSet("m", "d", ("N", "B", "C"))
    half = VideoPrediction("v", np.zeros(4), ((0, 24, "B"), (48, 64, "C")))  # snippet 1: 8 of 16 frames
    assert snippet_classes(p, half).tolist() == [1, 1, 0, 2]
    less = VideoPrediction("v", np.zeros(4), ((0, 23, "B"), (48, 64, "C")))  # snippet 1: 7 of 16 frames
    assert snippet_classes(p, less).tolist() == [1, 0, 0, 2]


def _pset(method: str, rng: np.random.Generator) -> PredictionSet:
    classes = ("N", "B", "C")
    vids = []
    for i in range(4):
        T = 10
        segs = ((32, 96, "B" if i % 2 else "C"),) if i < 3 else ()
        gt = frame_gt(T, segs).reshape(T, 16).max(1)
        scores = np.clip(0.7 * gt + 0.3 * rng.random(T), 0, 1)
        probs = rng.random((T, 3)) * 0.1
        probs[np.arange(T), np.where(gt > 0, 1 if i % 2 else 2, 0)] += 1
        vids.append(VideoPrediction(f"v{i}", scores, segs, probs / probs.sum(1, keepdims=True)))
    return PredictionSet(method, "synth", classes, vids)


def test_confusion_counts_each_snippet_once():
    p = _pset("m", np.random.default_rng(0))
    mat = confusion(p)
    assert mat.sum() == 40
    assert np.trace(mat) == 40  # the constructed probabilities put the true class on top


def test_html_report_is_self_contained_with_figures():
    rng = np.random.default_rng(1)
    rows = [_row(seed=0)]
    rep = BenchReport(
        title="bench",
        tables=[("UCF", format_dataset_table(aggregate(rows), "ucf"))],
        predictions={"synth": [_pset("dsanet", rng), _pset("vadclip", rng)]},
    )
    page = render(rep, "html")
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(imgs) == 4  # scores, ROC/PR, two confusions
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert "http://" not in page and "https://" not in page
    assert "<table" in page


def test_cli_prints_published_rows(cli):
    code, out = cli("bench", "--published")
    assert code == 0
    dsanet = [ln for ln in out.splitlines() if ln.startswith("| DSANet | ucf |")]
    assert dsanet and "89.44" in dsanet[0] and "arXiv:2511.10334" in dsanet[0]
    assert "6.68†" in out  # unconfirmed values carry the mark
