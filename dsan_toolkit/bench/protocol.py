"""The evaluation protocol of a bench: what each selection rule is worth, with uncertainty.

For every finished run the bench computes, from the run's stored test predictions,

- its metrics under the bench's detection-mAP protocol (``official`` or ``corrected``:
  :mod:`dsan_toolkit.eval`), the false alarm rate, TPR at FPR 1 % / 5 % and per-class AUC;
- video-level bootstrap intervals of every scalar metric (:func:`~dsan_toolkit.eval.bootstrap_metrics`).

Across runs it gives, per dataset:

- the selection rules side by side (``last``, ``best-on-val``, ``best-on-test`` = the papers'
  protocol): mean ± std over seeds with a Student-t interval;
- the **selection gap**: best-on-test minus best-on-val (and minus last), paired by seed, mean
  and interval over seeds: how much of a test-selected number is the selection;
- a method-vs-method matrix of the main metric (paired video bootstrap of the difference on the
  same test videos, per seed; a difference counts as significant in a seed when its interval
  excludes 0);
- per-class frame AUC (macro next to micro).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from ..manifest.schema import Manifest
from ..train.predictions import CI_LEVEL, PredictionSet
from .jobs import PAPER_RULE, SELECTION_RULES, BenchConfig
from .table import MAIN_METRIC, METRICS, ResultRow

# the rule whose runs the per-class table and the method matrix use, most honest first
PREFERRED_RULES: tuple[str, ...] = ("best-on-val", "last", "best-on-test", "none")
RULE_LABELS: dict[str, str] = {
    "last": "last",
    "best-on-val": "best-on-val",
    "best-on-test": "best-on-test (papers' protocol)",
    "none": "none (training-free)",
}
SIGNIFICANT = "‡"


@dataclass(frozen=True)
class RunStats:
    """What the bench computes from one run's predictions (stored units: fractions; mAP in %)."""

    metrics: dict[str, float]  # every scalar metric under the bench's mAP protocol
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # bootstrap interval per metric
    class_auc: dict[str, float] = field(default_factory=dict)


def _metric_args(preds: PredictionSet, manifest: Manifest) -> tuple[Any, ...]:
    """(manifest, lengths, scores, align_scores, class_probs) as the metric functions take them."""
    probs = None if preds.class_probs is None else preds.per_video("class_probs")
    return manifest, preds.lengths(), preds.per_video("scores"), preds.per_video("align_scores"), probs


def _statistics_of(met: dict[str, Any], ci: dict[str, tuple[float, float]]) -> RunStats:
    scalars = {
        k: float(v) for k, v in met.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
    }
    class_auc = {str(c): float(v) for c, v in (met.get(keys.CLASS_AUC) or {}).items() if v is not None}
    return RunStats(metrics=scalars, ci=ci, class_auc=class_auc)


def recorded_statistics(record: dict[str, Any], cfg: BenchConfig) -> RunStats | None:
    """The statistics an evaluation record (``eval/<label>/metrics.json``) already holds, when
    they are what the bench would compute: metrics of the same generation (with the alarm
    metrics), the bench's mAP protocol, and, with ``cfg.bootstrap``, a ``ci`` block of the same
    resamples, seed and level. None otherwise (older records, other settings)."""
    met = record.get(keys.METRICS) or {}
    if keys.FAR not in met:
        return None
    protocol = met.get(keys.MAP_PROTOCOL, "official" if keys.MAP_MEAN in met else cfg.map_protocol)
    if protocol != cfg.map_protocol:
        return None
    ci: dict[str, tuple[float, float]] = {}
    if cfg.bootstrap:
        block = record.get(keys.CI) or {}
        same = (block.get(keys.CI_RESAMPLES), block.get(keys.CI_SEED), block.get(keys.CI_LEVEL)) == (
            cfg.bootstrap,
            cfg.bootstrap_seed,
            CI_LEVEL,
        )
        if not same:
            return None
        ci = {k: (float(lo), float(hi)) for k, (lo, hi) in (block.get(keys.CI_INTERVALS) or {}).items()}
    return _statistics_of(met, ci)


def run_statistics(
    preds: PredictionSet, manifest: Manifest, cfg: BenchConfig, record: dict[str, Any] | None = None
) -> RunStats:
    """Metrics (under ``cfg.map_protocol``), per-class AUC and bootstrap intervals of one run:
    those of its evaluation ``record`` when it holds them already (:func:`recorded_statistics`;
    training computed them from the same predictions), else computed from ``preds``."""
    from ..eval import bootstrap_metrics, detection_config_for, evaluate_predictions

    recorded = recorded_statistics(record, cfg) if record else None
    if recorded is not None:
        return recorded
    detection = detection_config_for(cfg.map_protocol)
    args = _metric_args(preds, manifest)
    met = evaluate_predictions(*args, video_ids=preds.video_ids, detection=detection)
    ci: dict[str, tuple[float, float]] = {}
    if cfg.bootstrap:
        intervals = bootstrap_metrics(
            *args,
            video_ids=preds.video_ids,
            n_resamples=cfg.bootstrap,
            seed=cfg.bootstrap_seed,
            level=CI_LEVEL,
            detection=detection,
        )
        ci = {k: (float(iv.lo), float(iv.hi)) for k, iv in intervals.items()}
    return _statistics_of(met, ci)


# -- across runs -----------------------------------------------------------------------------------
def _pct(key: str) -> float:
    return METRICS[key].to_percent if key in METRICS else 100.0


def _fmt_summary(values: Sequence[float], bounds: tuple[float, float] = (0.0, 100.0), digits: int = 2) -> str:
    """``mean ± std [lo, hi]`` (Student-t interval over seeds, cut to the values' possible
    range ``bounds``) of values already in percent."""
    from ..eval import seed_summary

    v = [x for x in values if x == x]
    if not v:
        return "–"
    s = seed_summary(v)
    if s.n == 1:
        return f"{s.mean:.{digits}f}"
    lo, hi = max(s.lo, bounds[0]), min(s.hi, bounds[1])
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _main_values(rows: Sequence[ResultRow], key: str) -> dict[int, float]:
    return {r.seed: r.metrics[key] * _pct(key) for r in rows if key in r.metrics}


def _dataset_rows(rows: Sequence[ResultRow], dataset: str) -> list[ResultRow]:
    return [r for r in rows if r.dataset == dataset and r.ablation == "all"]


def _methods(rows: Sequence[ResultRow]) -> list[str]:
    return list(dict.fromkeys(r.method for r in rows))


def _rule_of(rows: Sequence[ResultRow], method: str) -> dict[str, list[ResultRow]]:
    out: dict[str, list[ResultRow]] = {}
    for r in rows:
        if r.method == method:
            out.setdefault(r.selection, []).append(r)
    return out


def selection_table(rows: Sequence[ResultRow], dataset: str) -> pd.DataFrame:
    """The selection rules side by side (main metric, %, mean ± std [95 % t-interval] over
    seeds) and the selection gaps (paired by seed)."""
    key = MAIN_METRIC.get(dataset, keys.AUC)
    sub = _dataset_rows(rows, dataset)
    recs = []
    for m in _methods(sub):
        by_rule = _rule_of(sub, m)
        rec: dict[str, Any] = {"method": m}
        for rule in (*SELECTION_RULES, "none"):
            if rule in by_rule:
                rec[RULE_LABELS[rule]] = _fmt_summary(list(_main_values(by_rule[rule], key).values()))
        test = _main_values(by_rule.get(PAPER_RULE, []), key)
        for other in ("best-on-val", "last"):
            base = _main_values(by_rule.get(other, []), key)
            seeds = sorted(set(test) & set(base))
            if seeds:
                rec[f"gap test − {other.split('-')[-1]}"] = _fmt_summary(
                    [test[s] - base[s] for s in seeds], bounds=(-100.0, 100.0)
                )
        recs.append(rec)
    return pd.DataFrame.from_records(recs).fillna("–")


ALARM_METRICS: tuple[str, ...] = (keys.AUC_ANOMALOUS, keys.FAR, *keys.TPR_AT_FPR, keys.AUC_MACRO)


def uncertainty_table(rows: Sequence[ResultRow], dataset: str) -> pd.DataFrame:
    """Per method and rule: the main metric with its video-bootstrap interval (mean over seeds of
    each run's interval), and the alarm metrics (mean ± std over seeds), all in %."""
    key = MAIN_METRIC.get(dataset, keys.AUC)
    sub = _dataset_rows(rows, dataset)
    recs = []
    for m in _methods(sub):
        for rule, rs in _rule_of(sub, m).items():
            vals = [r.metrics[key] * _pct(key) for r in rs if key in r.metrics]
            cis = [r.ci[key] for r in rs if key in r.ci]
            rec: dict[str, Any] = {"method": m, "selection": rule, "seeds": len(rs)}
            label = METRICS[key].label
            rec[label] = f"{np.mean(vals):.2f}" if vals else "–"
            rec[f"{label} video 95% CI"] = (
                f"[{np.mean([c[0] for c in cis]) * _pct(key):.2f}, {np.mean([c[1] for c in cis]) * _pct(key):.2f}]"
                if cis
                else "–"
            )
            for k in ALARM_METRICS:
                v = [r.metrics[k] * _pct(k) for r in rs if k in r.metrics]
                rec[METRICS[k].label] = (
                    "–" if not v else (f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else f"{v[0]:.2f}")
                )
            recs.append(rec)
    return pd.DataFrame.from_records(recs)


def preferred_rule(rows: Sequence[ResultRow]) -> str:
    present = {r.selection for r in rows}
    return next((r for r in PREFERRED_RULES if r in present), "last")


def _rule_rows(rows: Sequence[ResultRow], dataset: str) -> list[ResultRow]:
    """One dataset's runs under the preferred rule (training-free methods with theirs)."""
    sub = _dataset_rows(rows, dataset)
    rule = preferred_rule([r for r in sub if r.selection != "none"])
    return [r for r in sub if r.selection in (rule, "none")]


def class_auc_means(rows: Sequence[ResultRow], dataset: str, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """method -> class -> per-class frame AUC (%, mean over seeds) under the preferred rule."""
    sub = _rule_rows(rows, dataset)
    out: dict[str, dict[str, float]] = {}
    for m in _methods(sub):
        rs = [r for r in sub if r.method == m]
        out[m] = {
            c: 100 * float(np.mean([r.class_auc[c] for r in rs if c in r.class_auc]))
            for c in classes
            if any(c in r.class_auc for r in rs)
        }
    return out


def class_auc_table(rows: Sequence[ResultRow], dataset: str, classes: Sequence[str]) -> pd.DataFrame:
    """Per-class frame AUC (%, mean over seeds) of each method under the preferred rule, with
    the macro mean and the micro (pooled) AUC."""
    sub = _rule_rows(rows, dataset)
    recs = []
    for m, per_class in class_auc_means(rows, dataset, classes).items():
        rs = [r for r in sub if r.method == m]
        rec: dict[str, Any] = {"method": m, "selection": rs[0].selection}
        rec.update({c: f"{v:.1f}" for c, v in per_class.items()})
        for k in (keys.AUC_MACRO, keys.AUC):
            v = [r.metrics[k] for r in rs if k in r.metrics]
            rec[METRICS[k].label] = f"{100 * np.mean(v):.1f}" if v else "–"
        recs.append(rec)
    return pd.DataFrame.from_records(recs).fillna("–")


@dataclass(frozen=True)
class PairedCell:
    diffs: tuple[float, ...]  # row minus column, per seed, in %
    significant: int  # seeds in which the paired interval excludes 0


def paired_comparisons(
    rows: Sequence[ResultRow],
    dataset: str,
    manifest: Manifest,
    cfg: BenchConfig,
    preds: dict[str, PredictionSet],
) -> dict[tuple[str, str], PairedCell]:
    """Paired video bootstrap of the main metric between every two methods (same rule, same
    seed, same test videos); ``preds`` maps a run directory to its predictions."""
    from ..eval import paired_bootstrap

    key = MAIN_METRIC.get(dataset, keys.AUC)
    sub = _rule_rows(rows, dataset)
    by = {(r.method, r.seed): r for r in sub}
    out: dict[tuple[str, str], PairedCell] = {}
    for a, b in itertools.permutations(_methods(sub), 2):
        diffs, sig = [], 0
        for seed in sorted({s for (m, s) in by if m == a} & {s for (m, s) in by if m == b}):
            pa, pb = preds[by[(a, seed)].run_dir], preds[by[(b, seed)].run_dir]
            res = paired_bootstrap(
                manifest,
                pa.lengths(),
                pa.per_video("scores"),
                pb.per_video("scores"),
                metric=key,
                video_ids=pa.video_ids,
                n_resamples=cfg.bootstrap,
                seed=cfg.bootstrap_seed,
            )
            diffs.append(float(res.diff) * _pct(key))
            sig += int(bool(res.significant))
        if diffs:
            out[(a, b)] = PairedCell(tuple(diffs), sig)
    return out


def paired_matrix(cells: dict[tuple[str, str], PairedCell], methods: Sequence[str]) -> pd.DataFrame:
    """Method-vs-method matrix: row minus column (mean over seeds, %), with ``‡ k/n`` when the
    difference is significant in k of n seeds."""
    recs = []
    for a in methods:
        rec: dict[str, Any] = {"method": a}
        for b in methods:
            c = cells.get((a, b))
            if a == b or c is None:
                rec[b] = "·"
            else:
                mark = f" {SIGNIFICANT} {c.significant}/{len(c.diffs)}" if c.significant else ""
                rec[b] = f"{np.mean(c.diffs):+.2f}{mark}"
        recs.append(rec)
    return pd.DataFrame.from_records(recs)


def below_best(cells: dict[tuple[str, str], PairedCell], rows: Sequence[ResultRow], dataset: str) -> set[str]:
    """Methods significantly below the best method (highest mean main metric under the
    preferred rule) in every seed."""
    key = MAIN_METRIC.get(dataset, keys.AUC)
    sub = _rule_rows(rows, dataset)
    means = {
        m: np.mean([r.metrics[key] for r in sub if r.method == m and key in r.metrics] or [np.nan])
        for m in _methods(sub)
    }
    means = {m: v for m, v in means.items() if v == v}
    if not means:
        return set()
    best = max(means, key=lambda m: means[m])
    out = set()
    for m in means:
        c = cells.get((best, m))
        if m != best and c is not None and c.significant == len(c.diffs) and np.mean(c.diffs) > 0:
            out.add(m)
    return out


def with_protocol_metrics(row: ResultRow, metrics: dict[str, float] | None) -> ResultRow:
    """``row`` with the table metrics the bench computed (under its mAP protocol) laid over the
    recorded ones; a method without a class branch keeps no fine-grained metric."""
    if not metrics:
        return row
    extra = {k: v for k, v in metrics.items() if k in METRICS and (row.class_branch or not METRICS[k].fine_grained)}
    return dataclasses.replace(row, metrics={**row.metrics, **extra})


def mark_below_best(table: pd.DataFrame, below: set[str], rule: str, dataset: str) -> pd.DataFrame:
    """The headline table with :data:`SIGNIFICANT` after the main metric of each row (under
    ``rule``) whose method is significantly below the best method."""
    label = METRICS[MAIN_METRIC.get(dataset, keys.AUC)].label
    if table.empty or not below or label not in table.columns:
        return table
    out = table.copy()
    hit = out["method"].isin(below) & (out["selection"].isin((rule, "none")) if "selection" in out else True)
    out.loc[hit, label] = out.loc[hit, label].astype(str) + SIGNIFICANT
    return out


@dataclass
class ProtocolSection:
    tables: list[tuple[str, pd.DataFrame]]
    notes: list[str]
    figures: list[tuple[str, bytes]]
    below_best: dict[str, set[str]]  # dataset -> methods significantly below the best
    rule: dict[str, str]  # dataset -> the rule of the per-class table and the method matrix


PROTOCOL_NOTES: tuple[str, ...] = (
    "Selection rules: 'last' = the model after the last epoch; 'best-on-val' = best video-level "
    "score on a validation split carved from training; 'best-on-test' = the papers' protocol (test-set selection).",
    "Values are mean ± std over seeds with a 95 % Student-t interval [lo, hi] (cut to the metric's range); 'gap test − val' is, per "
    "seed, best-on-test minus best-on-val (then summarised over seeds): how much of a test-selected "
    "number is the selection itself.",
    "Video 95 % CI: percentile interval of a video-level bootstrap (test videos resampled with "
    "replacement), averaged over seeds; FAR = false alarm rate on normal videos at score 0.5; "
    "TPR@FPR = detection rate at 1 % / 5 % false positives.",
    "Method matrix: row minus column on the same test videos (paired bootstrap); '‡ k/n' = the "
    "difference's 95 % interval excludes 0 in k of n seeds.",
)


def protocol_section(
    rows: Sequence[ResultRow],
    cfg: BenchConfig,
    stores: dict[str, Any],
    preds: dict[str, PredictionSet],
    *,
    figures: bool = True,
) -> ProtocolSection | None:
    """The protocol tables (and figures) of every dataset of a bench (None for an ablation)."""
    from .figures import figure_class_auc, figure_seed_spread

    if cfg.ablation:
        return None
    sec = ProtocolSection([], list(PROTOCOL_NOTES), [], {}, {})
    for ds in cfg.datasets:
        sub = _dataset_rows(rows, ds)
        if not sub:
            continue
        manifest = stores[ds].manifest
        key = MAIN_METRIC.get(ds, keys.AUC)
        rule = preferred_rule([r for r in sub if r.selection != "none"])
        sec.rule[ds] = rule
        sec.tables.append((f"{ds}: selection rules ({METRICS[key].label}, %)", selection_table(rows, ds)))
        sec.tables.append((f"{ds}: uncertainty and alarms (%)", uncertainty_table(rows, ds)))
        anomaly = [c for c in manifest.class_codes if c != manifest.normal_class]
        cls = class_auc_table(rows, ds, anomaly)
        sec.tables.append((f"{ds}: per-class frame AUC (%, selection {rule})", cls))
        if cfg.bootstrap:
            cells = paired_comparisons(rows, ds, manifest, cfg, preds)
            methods = _methods(_rule_rows(rows, ds))
            if len(methods) > 1:
                sec.tables.append(
                    (
                        f"{ds}: method vs method ({METRICS[key].label}, row − column, %, selection {rule})",
                        paired_matrix(cells, methods),
                    )
                )
            sec.below_best[ds] = below_best(cells, rows, ds)
        if figures:
            points = [(r.method, r.selection, r.metrics[key] * _pct(key)) for r in sub if key in r.metrics]
            spread = figure_seed_spread(points, METRICS[key].label)
            if spread is not None:
                sec.figures.append((f"{ds}: {METRICS[key].label} of every seed", spread))
            heat = figure_class_auc(class_auc_means(rows, ds, anomaly), anomaly)
            if heat is not None:
                sec.figures.append((f"{ds}: per-class frame AUC (selection {rule})", heat))
    return sec
