"""The evaluation protocol of `dsan bench`: the three selection rules on the same seeds, the
selection gap, video-bootstrap intervals, the method-vs-method matrix, per-class AUC and the
mAP protocol, end to end on a tiny synthetic store; and the table logic on hand-made rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dsan_toolkit import keys
from dsan_toolkit.audit.bench import audit_bench
from dsan_toolkit.bench.jobs import SELECTION_RULES, BenchConfig
from dsan_toolkit.bench.protocol import (
    PairedCell,
    mark_below_best,
    paired_matrix,
    selection_table,
    with_protocol_metrics,
)
from dsan_toolkit.bench.report import render
from dsan_toolkit.bench.runner import run_bench, write_reports
from dsan_toolkit.bench.table import ResultRow, rows_frame
from dsan_toolkit.errors import InputError
from dsan_toolkit.eval import detection_config_for, evaluate_predictions, paired_bootstrap, seed_summary
from dsan_toolkit.store import open_store
from dsan_toolkit.train.predictions import load_prediction_set


def _row(method: str, seed: int, selection: str, auc: float, **kw) -> ResultRow:
    return ResultRow(
        method=method,
        dataset="ucf",
        seed=seed,
        preset="ucf",
        selection=selection,
        config_hash="h",
        features="synthetic",
        backbone="b",
        random_backbone=False,
        synthetic=True,
        metrics={keys.AUC: auc},
        **kw,
    )


def test_selection_gap_is_paired_by_seed():
    test = {0: 0.86, 1: 0.84, 2: 0.85}
    val = {0: 0.99, 1: 0.80, 2: 0.95}
    rows = [_row("dsanet", s, "best-on-test", v) for s, v in test.items()]
    rows += [_row("dsanet", s, "best-on-val", v) for s, v in val.items()]
    rows.append(_row("dsanet", 3, "best-on-test", 0.99))  # no best-on-val partner: not in the gap
    table = selection_table(rows, "ucf")
    gaps = [100 * (test[s] - val[s]) for s in test]
    s = seed_summary(gaps)
    assert table.loc[0, "gap test − val"] == f"{s.mean:.2f} ± {s.std:.2f} [{s.lo:.2f}, {s.hi:.2f}]"
    v = seed_summary([100 * x for x in val.values()])
    assert table.loc[0, "best-on-val"] == f"{v.mean:.2f} ± {v.std:.2f} [{v.lo:.2f}, {min(v.hi, 100):.2f}]"
    assert v.hi > 100  # three seeds this far apart: the t-interval passes 100 %, the table cuts it
    assert "gap test − last" not in table  # no last runs


def test_paired_matrix_marks_and_best_mark():
    cells = {("a", "b"): PairedCell((1.0, 3.0), 2), ("b", "a"): PairedCell((-1.0, -3.0), 2)}
    m = paired_matrix(cells, ["a", "b"])
    assert m.loc[0, "b"] == "+2.00 ‡ 2/2" and m.loc[1, "a"] == "-2.00 ‡ 2/2" and m.loc[0, "a"] == "·"
    head = pd.DataFrame({"method": ["a", "b"], "selection": ["last", "last"], "AUC": ["90.00", "88.00"]})
    marked = mark_below_best(head, {"b"}, "last", "ucf")
    assert list(marked["AUC"]) == ["90.00", "88.00‡"]


def test_protocol_metrics_overlay_keeps_no_fine_grained_without_class_branch():
    row = _row("mil", 0, "last", 0.8, class_branch=False)
    out = with_protocol_metrics(row, {keys.MAP_MEAN: 12.0, keys.FAR: 0.1, "videos": 5.0})
    assert out.metrics == {keys.AUC: 0.8, keys.FAR: 0.1}


def test_rows_round_trip_intervals_and_class_auc():
    row = _row("a", 0, "last", 0.8, ci={keys.AUC: (0.7, 0.9)}, class_auc={"B1": 0.75})
    back = ResultRow.from_flat(rows_frame([row]).to_dict("records")[0])
    assert back.ci == {keys.AUC: (0.7, 0.9)} and back.class_auc == {"B1": 0.75}


@pytest.fixture(scope="module")
def protocol_store(tmp_path_factory):
    """32 training videos (16 normal, 16 anomalous): the validation split leaves enough of each
    for the tiny preset's paired batches."""
    from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    cfg = SynthFeaturesConfig(num_train=32, num_test=10, crops=1, median_t=48, max_t=96, seed=5, signal=1.0)
    return write_synthetic_feature_store(tmp_path_factory.mktemp("protocol-store") / "s.zarr", cfg)


@pytest.fixture(scope="module")
def protocol_bench(tmp_path_factory, protocol_store):
    out = tmp_path_factory.mktemp("protocol") / "bench"
    cfg = BenchConfig(
        methods=("vadclip", "mil"),
        datasets=("synth",),
        seeds=(0, 1),
        features={"synth": str(protocol_store)},
        preset="tiny",
        epochs=2,
        selections=SELECTION_RULES,
        bootstrap=200,
    )
    result = run_bench(cfg, out, figures=True)
    write_reports(result, ("md", "html", "json", "csv"))
    return cfg, out, result, open_store(protocol_store).manifest


def test_three_rules_on_the_same_seeds(protocol_bench):
    cfg, out, result, _ = protocol_bench
    got = {(r.method, r.seed, r.selection) for r in result.rows}
    assert got == {(m, s, rule) for m in cfg.methods for s in cfg.seeds for rule in SELECTION_RULES}
    titles = [t for t, _ in result.report.protocol]
    assert any("selection rules" in t for t in titles) and any("method vs method" in t for t in titles)
    table = dict(result.report.protocol)[next(t for t in titles if "selection rules" in t)]
    assert set(table["method"]) == {"vadclip", "mil"}
    assert {"last", "best-on-val", "best-on-test (papers' protocol)", "gap test − val", "gap test − last"} <= set(
        table.columns
    )
    # the gap is best-on-test minus best-on-val of the same seed, summarised over seeds
    key = keys.AUC  # the headline metric of a dataset other than xd
    by = {(r.method, r.seed, r.selection): r.metrics[key] for r in result.rows}
    s = seed_summary([100 * (by[("vadclip", k, "best-on-test")] - by[("vadclip", k, "best-on-val")]) for k in (0, 1)])
    row = table[table["method"] == "vadclip"].iloc[0]
    assert row["gap test − val"] == f"{s.mean:.2f} ± {s.std:.2f} [{s.lo:.2f}, {s.hi:.2f}]"


def test_intervals_and_matrix_come_from_the_predictions(protocol_bench):
    cfg, out, result, manifest = protocol_bench
    for r in result.rows:
        lo, hi = r.ci[keys.AUC]
        assert lo <= r.metrics[keys.AUC] <= hi and lo < hi
    # the matrix uses the most honest rule present (best-on-val): vadclip minus mil per seed
    diffs, significant = [], 0
    for seed in cfg.seeds:
        runs = {x.method: x for x in result.rows if x.selection == "best-on-val" and x.seed == seed}
        pv, pm = (
            load_prediction_set(out / runs[m].run_dir / "eval" / "best-on-val" / "predictions.npz")
            for m in ("vadclip", "mil")
        )
        d = paired_bootstrap(
            manifest,
            pv.lengths(),
            pv.per_video("scores"),
            pm.per_video("scores"),
            metric=keys.AUC,
            video_ids=pv.video_ids,
            n_resamples=200,
        )
        assert d.diff == pytest.approx(runs["vadclip"].metrics[keys.AUC] - runs["mil"].metrics[keys.AUC], abs=1e-9)
        diffs.append(100 * d.diff)
        significant += int(d.significant)
    matrix = dict(result.report.protocol)[next(t for t, _ in result.report.protocol if "method vs method" in t)]
    cell = matrix[matrix["method"] == "vadclip"].iloc[0]["mil"]
    assert cell == f"{np.mean(diffs):+.2f}" + (f" ‡ {significant}/2" if significant else "")


def test_reports_hold_the_protocol_section(protocol_bench):
    cfg, out, result, _ = protocol_bench
    md = (out / "report.md").read_text()
    assert "## Evaluation protocol" in md and "gap test − val" in md and "per-class frame AUC" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4  # strip plot and heatmap besides the others
    rep = json.loads((out / "report.json").read_text())
    assert any("selection rules" in t for t in rep["protocol"])


def test_protocol_bench_passes_the_audit(protocol_bench):
    cfg, out, result, _ = protocol_bench
    rep = audit_bench(out)
    assert rep.ok, rep.summary()


def test_corrected_map_protocol_is_in_the_tables_not_the_records(protocol_bench, tmp_path):
    cfg, out, result, manifest = protocol_bench
    corrected = run_bench(
        BenchConfig(**{**cfg.__dict__, "map_protocol": "corrected", "selections": ("last",)}), out, figures=False
    )
    assert corrected.trained == 0
    means, official = [], []
    for r in (r for r in corrected.rows if r.method == "vadclip"):
        p = load_prediction_set(out / r.run_dir / "eval" / "last" / "predictions.npz")
        ref = evaluate_predictions(
            manifest,
            p.lengths(),
            p.per_video("scores"),
            p.per_video("align_scores"),
            p.per_video("class_probs"),
            video_ids=p.video_ids,
            detection=detection_config_for("corrected"),
        )
        recorded = json.loads((out / r.run_dir / "metrics.json").read_text())["results"]["last"]["metrics"]
        assert r.metrics[keys.MAP_MEAN] == recorded[keys.MAP_MEAN]  # rows (results.csv) keep the record
        means.append(ref[keys.MAP_MEAN])
        official.append(recorded[keys.MAP_MEAN])
    head = json.loads(render(corrected.report, "json"))["tables"]
    cells = [row["mAP avg"] for rows in head.values() for row in rows if row.get("method") == "vadclip"]
    assert cells == [f"{np.mean(means):.2f} ± {np.std(means, ddof=1):.2f}"]
    assert means != official  # the normal class counts in the official mAP of this dataset, not in the corrected
    assert "Detection mAP: corrected rules." in " ".join(corrected.report.notes)


def test_bad_rules_and_protocols_are_refused(xd_feature_store, tmp_path):
    base = dict(methods=("vadclip",), datasets=("synth",), seeds=(0,), features={"synth": str(xd_feature_store)})
    with pytest.raises(InputError, match="--select takes distinct rules"):
        run_bench(BenchConfig(**base, selections=("best-on-train",)), tmp_path / "b")
    with pytest.raises(InputError, match="--map-protocol"):
        run_bench(BenchConfig(**base, map_protocol="paper"), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_bench_json_of_an_earlier_version_still_audits(protocol_bench, tmp_path):
    """A bench.json written before the selection rules became a list (one ``select`` field, no
    bootstrap options) keeps its recorded hash: the audit accepts it, and still catches an edit."""
    import shutil

    from dsan_toolkit.config import canonical_json, sha256_text

    cfg, out, result, _ = protocol_bench
    old = tmp_path / "old"
    shutil.copytree(out, old)
    rec = json.loads((old / "bench.json").read_text())
    conf = {
        k: v for k, v in rec["config"].items() if k not in ("selections", "map_protocol", "bootstrap", "bootstrap_seed")
    }
    conf["select"] = "last"
    runtime = ("features", "device", "lock", "clip_weights")
    rec["config"] = conf
    rec["config_hash"] = sha256_text(canonical_json({k: v for k, v in conf.items() if k not in runtime}))
    (old / "bench.json").write_text(json.dumps(rec))
    rep = audit_bench(old)
    assert rep.ok, rep.summary()
    rec["config"]["epochs"] = 7  # edited by hand
    (old / "bench.json").write_text(json.dumps(rec))
    assert not audit_bench(old).ok


def test_precision_is_a_job_of_its_own_and_marked(xd_feature_store, tmp_path):
    from dsan_toolkit.bench.jobs import BenchJob
    from dsan_toolkit.config import to_dict

    base = dict(
        methods=("vadclip",), datasets=("synth",), seeds=(0,), features={"synth": str(xd_feature_store)}, preset="tiny"
    )
    result = run_bench(BenchConfig(**base, epochs=1, precision="bf16", bootstrap=0), tmp_path / "b", figures=False)
    (row,) = result.rows
    assert row.precision == "bf16"
    cfg = json.loads((tmp_path / "b" / row.run_dir / "config.json").read_text())["config"]
    assert cfg["precision"] == "bf16"
    head = dict(result.report.tables)
    (table,) = head.values()
    assert list(table["precision"]) == ["bf16"]
    runs = next(df for t, df in result.report.details if "runs and protocol" in t)
    assert "precision bf16 (paper: fp32)" in runs.loc[0, "protocol"]
    # an fp32 job records no precision: its hash is the one it had before the option existed
    job = BenchJob(method="vadclip", dataset="synth", features="x", preset="tiny", seed=0)
    assert "precision" not in to_dict(job) and job.key != BenchJob(**{**job.__dict__, "precision": "bf16"}).key
    with pytest.raises(InputError, match="--precision must be one of"):
        run_bench(BenchConfig(**base, precision="int8"), tmp_path / "c")


def test_recorded_statistics_are_those_the_bench_would_compute(protocol_bench):
    """The bench takes a run's metrics and intervals from its evaluation record when the record
    holds the same settings: they equal a fresh computation from the predictions."""
    from dsan_toolkit.bench.protocol import recorded_statistics, run_statistics

    cfg, out, result, manifest = protocol_bench
    for r in result.rows[:4]:
        ev = out / r.run_dir / "eval" / r.selection
        record = json.loads((ev / "metrics.json").read_text())
        preds = load_prediction_set(ev / "predictions.npz")
        fresh = run_statistics(preds, manifest, cfg)
        for c in (cfg, BenchConfig(**{**cfg.__dict__, "bootstrap": 1000})):  # 1000: the record's own resamples
            got = recorded_statistics(record, c)
            if c.bootstrap != 1000:
                assert got is None  # other resamples than the record's: computed afresh
                continue
            want = run_statistics(preds, manifest, c)
            assert got.metrics == pytest.approx(want.metrics, abs=1e-12) and got.class_auc == want.class_auc
            assert got.ci.keys() <= want.ci.keys()
            assert all(got.ci[k] == pytest.approx(want.ci[k], abs=1e-12) for k in got.ci)
        assert fresh.metrics.keys() == got.metrics.keys()
