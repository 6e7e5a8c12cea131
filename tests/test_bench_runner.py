"""`dsan bench` end to end on a tiny synthetic feature store: an interrupted bench resumes,
finished runs are reused, the tables and reports come out, and the bench directory passes
`dsan audit` until one of its artifacts is tampered with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsan_toolkit.audit.bench import audit_bench
from dsan_toolkit.bench.runner import BenchConfig, BenchJob, _default_trainer, run_bench, write_reports
from dsan_toolkit.errors import InputError


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def bench(tmp_path_factory, xd_feature_store):
    root = tmp_path_factory.mktemp("bench")
    store = xd_feature_store
    cfg = BenchConfig(
        methods=("vadclip",), datasets=("synth",), seeds=(0, 1), features={"synth": str(store)}, preset="tiny", epochs=1
    )
    out = root / "bench"
    calls: list[int] = []

    def interrupted(job: BenchJob, run_dir: Path, say) -> None:
        calls.append(job.seed)
        if job.seed == 1:
            raise Interrupt  # the bench is killed while the second job runs
        _default_trainer(job, run_dir, say)

    with pytest.raises(Interrupt):
        run_bench(cfg, out, trainer=interrupted)
    first = json.loads((out / "bench.json").read_text())
    trained: list[int] = []

    def counting(job: BenchJob, run_dir: Path, say) -> None:
        trained.append(job.seed)
        _default_trainer(job, run_dir, say)

    result = run_bench(cfg, out, trainer=counting)
    write_reports(result, ("md", "html", "csv", "json"))
    return root, store, out, cfg, calls, first, trained, result


def test_interrupted_bench_resumes_and_reuses(bench):
    root, store, out, cfg, calls, first, trained, result = bench
    assert calls == [0, 1]
    assert len(first["jobs"]) == 1  # the finished job was recorded before the interruption
    assert trained == [1] and result.reused == 1 and result.trained == 1
    again = run_bench(cfg, out, trainer=lambda *a: pytest.fail("a finished run was retrained"), figures=False)
    assert again.reused == 2 and again.trained == 0
    assert [r.metrics for r in again.rows] == [r.metrics for r in result.rows]


def test_tables_and_reports(bench):
    root, store, out, cfg, *_, result = bench
    md = (out / "report.md").read_text()
    assert "SYNTHETIC DATA, RANDOM BACKBONE" in md
    tables = md.split("## Evaluation protocol")[0]  # the protocol section follows the tables
    headline, metrics, runs = [ln for ln in tables.splitlines() if ln.startswith("| vadclip")]
    assert "| 2 |" in headline and " ± " in headline and "synthetic data" not in headline
    assert "synthetic data" in runs and "random backbone" in runs
    assert md.index("## synth: results (%") < md.index("## synth: further metrics (%") < md.index("## synth: runs")
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["seed"]) == [0, 1] and df["auc"].between(0, 1).all() and df["map_mean"].notna().all()
    runs = {r.seed: r for r in result.rows}
    assert df.set_index("seed").loc[0, "auc"] == pytest.approx(runs[0].metrics["auc"])
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    js = json.loads((out / "report.json").read_text())
    assert len(js["runs"]) == 2


def test_bench_dir_passes_audit_then_catches_tampering(bench, tmp_path):
    root, store, out, *_ = bench
    rep = audit_bench(out)
    assert rep.ok, rep.problems
    copy = tmp_path / "bench"
    shutil.copytree(out, copy)
    df = pd.read_csv(copy / "results.csv")
    df.loc[0, "auc"] = df.loc[0, "auc"] + 0.05
    df.to_csv(copy / "results.csv", index=False)
    rep = audit_bench(copy)
    assert not rep.ok and any(p.startswith("results.csv[") and ": auc recorded" in p for p in rep.problems)
    df.loc[0, "auc"] = float("nan")  # a blank cell for a metric the run has
    df.to_csv(copy / "results.csv", index=False)
    rep = audit_bench(copy)
    assert not rep.ok and any(p.startswith("results.csv[") and ": auc recorded" in p for p in rep.problems)
    shutil.rmtree(copy)
    shutil.copytree(out, copy)
    rec = json.loads((copy / "bench.json").read_text())
    rec["config"]["epochs"] = 5
    (copy / "bench.json").write_text(json.dumps(rec))
    rep = audit_bench(copy)
    assert any(p.startswith("bench config hash") for p in rep.problems)


def test_method_without_class_branch_reports_no_fine_grained_map(bench):
    """mil has no class branch: it predicts no class probabilities, so its run has no detection
    mAP and no confusion (n/a in the tables), and the bench still passes the audit."""
    root, store, *_ = bench
    cfg = BenchConfig(
        methods=("vadclip", "mil"),
        datasets=("synth",),
        seeds=(0,),
        features={"synth": str(store)},
        preset="tiny",
        epochs=1,
    )
    result = run_bench(cfg, root / "bench-mil")
    paths = write_reports(result, ("md", "html", "csv"))
    rows = {r.method: r for r in result.rows}
    assert not rows["mil"].class_branch and rows["vadclip"].class_branch
    assert not any(k.startswith("map") for k in rows["mil"].metrics) and "map_mean" in rows["vadclip"].metrics
    df = pd.read_csv(paths["csv"]).set_index("method")
    assert pd.isna(df.loc["mil", "map_mean"]) and df.loc["vadclip", "map_mean"] >= 0
    md = paths["md"].read_text()
    mil_lines = [ln for ln in md.splitlines() if ln.startswith("| mil |")]
    assert mil_lines[0].rstrip(" |").endswith("n/a")  # headline: mAP avg
    assert mil_lines[1].count("n/a") == 5  # details: mAP@0.1 ... mAP@0.5
    assert "- n/a: the method has no class branch" in md
    page = paths["html"].read_text()
    assert "vadclip: fine-grained confusion" in page and "mil: fine-grained confusion" not in page
    assert "No confusion for mil: no class branch" in page
    assert audit_bench(root / "bench-mil").ok
    mil_dir = root / "bench-mil" / rows["mil"].run_dir
    recorded = json.loads((mil_dir / "metrics.json").read_text())["results"]["last"]["metrics"]
    assert not any(k.startswith("map") for k in recorded) and "auc" in recorded  # not computed at all
    with np.load(mil_dir / "eval" / "last" / "predictions.npz", allow_pickle=False) as z:
        assert "class_probs" not in z.files and "scores" in z.files


def test_cli_bench_prints_markdown_and_reuses(bench, cli):
    root, store, out, *_ = bench
    code, text = cli(
        "bench",
        "--methods",
        "vadclip",
        "--datasets",
        "synth",
        "--seeds",
        "0,1",
        "--features",
        f"synth={store}",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-figures",
    )
    assert code == 0, text
    assert "| vadclip | tiny |" in text and "0 run(s) trained, 2 reused" in text


def test_cli_bench_bad_inputs(tmp_path, cli, bench):
    root, store, *_ = bench
    code, text = cli("bench", "--datasets", "ucf", "--features", "ucf=/nonexistent.zarr")
    assert code == 2 and "feature store for 'ucf' not found" in text
    code, text = cli("bench", "--datasets", "ucf", "--features", "ucfstore")
    assert code == 2 and "DATASET=PATH" in text
    code, text = cli(
        "bench", "--methods", "nosuch", "--datasets", "synth", "--features", f"synth={store}", "--preset", "tiny"
    )
    assert code == 2 and "unknown method 'nosuch'" in text
    code, text = cli("bench", "--methods", "vadclip", "--datasets", "synth", "--features", f"synth={store}")
    assert code == 2 and "--preset" in text
    code, text = cli("bench", "--report", "pdf", "--features", f"synth={store}", "--datasets", "synth")
    assert code == 2 and "--report must be one of" in text
    code, text = cli("bench", "--seeds", "a,b", "--features", f"synth={store}", "--datasets", "synth")
    assert code == 2 and "--seeds must be integers" in text
    code, text = cli(
        "bench", "--methods", "vadclip", "--datasets", "xd", "--features", f"xd={store}", "--preset", "tiny"
    )
    assert code == 2 and "holds dataset 'synth'" in text
    # paths checked before any work: a lock or weight file that is not there, outputs in the way
    base = ("bench", "--methods", "vadclip", "--datasets", "synth", "--features", f"synth={store}", "--preset", "tiny")
    code, text = cli(*base, "--lock", f"synth={tmp_path / 'none.lock.json'}")
    assert code == 2 and "none.lock.json: file not found" in text
    code, text = cli(*base, "--clip-weights", str(tmp_path / "none.pt"))
    assert code == 2 and "--clip-weights" in text and "file not found" in text
    (tmp_path / "taken").write_text("x")
    code, text = cli(*base, "--out", str(tmp_path / "taken"))
    assert code == 2 and "taken is a file, not a folder" in text and "training" not in text
    code, text = cli(*base, "--report-file", str(tmp_path))
    assert code == 2 and "--report-file" in text and "is a folder" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_ablation_grid_is_each_component_off_then_all():
    from dsan_toolkit.bench.jobs import ablation_overrides

    rows = ablation_overrides("dsanet")
    assert rows[0][0] == "all" and all(v for _, v in rows[0][1])
    assert [n for n, _ in rows[1:]] == ["no-normality", "no-event_background", "no-text_adapter", "no-refinement"]
    for _name, ov in rows[1:]:
        assert sum(not v for _, v in ov) == 1
    with pytest.raises(InputError):
        ablation_overrides("mil")
