"""Benchmark tables: flat result rows -> pandas tables of mean ± std over seeds.

A *result row* is one finished run (one method, dataset, configuration and seed) as a flat
dict (:class:`ResultRow`). :func:`aggregate` groups rows that differ only by seed and gives
mean, std and the number of seeds per metric; :func:`format_dataset_table` turns one dataset's
groups into the table printed by ``dsan bench`` with the published number of each method, a
delta where our run followed the paper's protocol on the same features, and the reasons
(``protocol`` column) where it did not. :func:`headline_table` and :func:`details_tables` cut
that table into what a report shows first (one line per row on a laptop screen) and the rest.

Metrics are stored as computed (AUC/AP as fractions in [0, 1], detection mAP in percent as
the official code prints it) and every table shows them in percent (:data:`TABLE_UNIT`).
A method without a class branch (``Method.has_class_branch`` False) has no fine-grained
detection mAP: its rows carry ``class_branch=False`` and the tables show ``n/a``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from .published import REFERENCE_FEATURES, PublishedRow, load_published, published_for

IOUS: tuple[float, ...] = keys.IOU_THRESHOLDS


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    to_percent: float  # factor from the stored value to percent
    fine_grained: bool = False  # computed from the class probabilities (needs a class branch)

    @property
    def stored_unit(self) -> str:
        """The unit of the raw value (results.csv, report.json ``runs``)."""
        return "percent" if self.to_percent == 1.0 else "fraction"


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec(keys.AUC, "AUC", 100.0),
        MetricSpec(keys.AP, "AP", 100.0),
        MetricSpec(keys.AUC_ALIGN, "AUC (align)", 100.0),
        MetricSpec(keys.AP_ALIGN, "AP (align)", 100.0),
        MetricSpec(keys.AUC_ANOMALOUS, "AUC anom.", 100.0),
        MetricSpec(keys.AP_ANOMALOUS, "AP anom.", 100.0),
        MetricSpec(keys.AUC_MACRO, "AUC macro", 100.0),
        MetricSpec(keys.FAR, "FAR@0.5", 100.0),
        *(MetricSpec(k, f"TPR@FPR{100 * f:g}%", 100.0) for k, f in zip(keys.TPR_AT_FPR, keys.FPR_TARGETS)),
        *(MetricSpec(keys.map_at(t), f"mAP@{t:g}", 1.0, fine_grained=True) for t in IOUS),
        MetricSpec(keys.MAP_MEAN, "mAP avg", 1.0, fine_grained=True),
    )
}


def table_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation's ``metrics`` dict that the tables show (keys of
    :data:`METRICS`, spelled as :mod:`dsan_toolkit.keys`); labels and undefined (None) metrics left out."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k in METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


# Every formatted table shows metrics in this unit (titles say so; raw rows keep MetricSpec units).
TABLE_UNIT = "%"

# The metrics of the headline table (the papers' comparison columns); the rest go to the details.
HEADLINE_METRICS: tuple[str, ...] = (keys.AUC, keys.AP, keys.AUC_ANOMALOUS, keys.MAP_MEAN)

# What a mark in a table cell (or header) means; a report prints only the marks its tables use.
FOOTNOTES: dict[str, str] = {
    "†": "† published value not confirmed against a public copy of the paper (see dsan_toolkit/bench/published.json).",
    "Δ": "Δ: our mean minus the paper's value, shown only where the protocol and features match.",
    "n/c": "n/c: not comparable with the paper's value (the protocol column says why).",
    "‡": "‡: significantly below the best method of the table under the same rule (paired video "
    "bootstrap of the difference, 95 %, in every seed; see the method matrix).",
    "n/a": "n/a: the method has no class branch (one anomaly score per snippet, no class "
    "probabilities), so it has no fine-grained detection mAP.",
}

# The headline metric of each dataset in the papers' comparison tables.
MAIN_METRIC: dict[str, str] = {"ucf": keys.AUC, "xd": keys.AP}

# Fields that identify a configuration (everything but the seed and the outcomes).
GROUP_KEYS: tuple[str, ...] = (
    "dataset",
    "method",
    "preset",
    "selection",
    "ablation",
    "features",
    "backbone",
    "random_backbone",
    "synthetic",
    "precision",
)


@dataclass(frozen=True)
class ResultRow:
    """One finished run, flat. ``metrics`` keys are those of :data:`METRICS`."""

    method: str
    dataset: str
    seed: int
    preset: str
    selection: str  # "last" | "best-on-test" | "none" (training-free)
    config_hash: str
    features: str  # "vadclip-release", "synthetic", or "<model>/<weights>" of our extraction
    backbone: str
    random_backbone: bool
    synthetic: bool
    metrics: dict[str, float]
    ablation: str = "all"
    components: dict[str, bool] = field(default_factory=dict)
    train_time_s: float | None = None
    params_trainable: int | None = None
    params_total: int | None = None
    run_dir: str = ""
    official_preset: bool = True
    class_branch: bool = True  # False: no fine-grained metrics (see Method.has_class_branch)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # video-bootstrap interval per metric
    class_auc: dict[str, float] = field(default_factory=dict)  # per-class frame AUC, fraction
    precision: str = "fp32"  # training precision (fp32 reproduces the official numbers)

    def to_flat(self) -> dict[str, Any]:
        """One flat record: metrics by key, ``component:<name>``, ``ci_lo:<metric>`` /
        ``ci_hi:<metric>`` and ``class_auc:<code>`` columns."""
        d = asdict(self)
        metrics, comps, ci, class_auc = d.pop("metrics"), d.pop("components"), d.pop("ci"), d.pop("class_auc")
        d.update({k: float(v) for k, v in metrics.items() if v is not None})
        d.update({f"component:{k}": bool(v) for k, v in comps.items()})
        for k, (lo, hi) in ci.items():
            d[f"ci_lo:{k}"], d[f"ci_hi:{k}"] = float(lo), float(hi)
        d.update({f"class_auc:{k}": float(v) for k, v in class_auc.items()})
        return d

    @classmethod
    def from_flat(cls, d: dict[str, Any]) -> ResultRow:
        def prefixed(prefix: str) -> dict[str, Any]:
            return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix) and not _isnan(v)}

        metrics = {k: float(d[k]) for k in METRICS if k in d and d[k] is not None and not _isnan(d[k])}
        comps = {k: bool(v) for k, v in prefixed("component:").items()}
        lo, hi = prefixed("ci_lo:"), prefixed("ci_hi:")
        ci = {k: (float(lo[k]), float(hi[k])) for k in lo if k in hi}
        class_auc = {k: float(v) for k, v in prefixed("class_auc:").items()}
        names = {f for f in cls.__dataclass_fields__ if f not in ("metrics", "components", "ci", "class_auc")}
        kw = {k: d[k] for k in names if k in d}
        return cls(metrics=metrics, components=comps, ci=ci, class_auc=class_auc, **kw)


def _isnan(v: Any) -> bool:
    try:
        return bool(np.isnan(float(v)))
    except (TypeError, ValueError):
        return False


def rows_frame(rows: Iterable[ResultRow | dict[str, Any]]) -> pd.DataFrame:
    """Result rows -> one flat DataFrame (one line per run)."""
    flat = [r.to_flat() if isinstance(r, ResultRow) else dict(r) for r in rows]
    df = pd.DataFrame.from_records(flat)
    for k in METRICS:
        if k not in df:
            df[k] = np.nan
    return df


def aggregate(rows: Iterable[ResultRow | dict[str, Any]]) -> pd.DataFrame:
    """Group runs that differ only by seed: ``<metric>_mean``, ``<metric>_std`` (sample std,
    0 for one seed) and ``<metric>_n`` in percent, plus seeds, mean training time and
    parameter counts."""
    df = rows_frame(rows)
    if df.empty:
        return pd.DataFrame()
    keys = [k for k in GROUP_KEYS if k in df]
    comp_cols = [c for c in df.columns if c.startswith("component:")]
    for c in comp_cols:
        df[c] = df[c].fillna(True).astype(bool)
    df[keys] = df[keys].astype(object).where(df[keys].notna(), "")
    pct = df[list(METRICS)].astype(float) * np.array([METRICS[k].to_percent for k in METRICS])
    pct[keys] = df[keys]
    g = pct.groupby(keys, sort=False, dropna=False)
    mean, std, count = g.mean(), g.std(ddof=1).fillna(0.0), g.count()
    out = pd.DataFrame(index=mean.index)
    for k in METRICS:
        out[f"{k}_mean"] = mean[k]
        out[f"{k}_std"] = np.where(count[k] > 1, std[k], 0.0)
        out[f"{k}_n"] = count[k]
    extra = df.groupby(keys, sort=False, dropna=False)
    out["seeds"] = extra["seed"].agg(lambda s: ",".join(str(int(x)) for x in sorted(s)))
    out["n_seeds"] = extra["seed"].nunique()
    for col in ("train_time_s", "params_trainable", "params_total", "official_preset"):
        if col in df:
            out[col] = (
                extra[col].agg(lambda s: s.dropna().iloc[0] if s.notna().any() else np.nan)
                if col == "official_preset"
                else extra[col].mean()
            )
    out["class_branch"] = (
        extra["class_branch"].agg(lambda s: bool(s.fillna(True).astype(bool).all())) if "class_branch" in df else True
    )
    for c in comp_cols:
        out[c] = extra[c].first()
    out["config_hashes"] = extra["config_hash"].agg(lambda s: ",".join(sorted({str(x)[:12] for x in s})))
    return out.reset_index()


def protocol_marks(group: dict[str, Any], paper: PublishedRow | None) -> list[str]:
    """Why a group of runs is not comparable with the paper's number (empty = comparable)."""
    marks: list[str] = []
    if paper is None:
        marks.append(f"no published row for {group.get('method')} on {group.get('dataset')}")
    if bool(group.get("synthetic")):
        marks.append("synthetic data")
    if bool(group.get("random_backbone")):
        marks.append("random backbone")
    feats = str(group.get("features", ""))
    ref_feats = paper.features if paper else REFERENCE_FEATURES
    if not bool(group.get("synthetic")) and feats not in (REFERENCE_FEATURES, ref_feats):
        marks.append(f"features {feats} (paper: {ref_feats})")
    sel = str(group.get("selection", ""))
    if paper is not None and paper.selection not in ("unknown", sel):
        marks.append(f"selection {sel} (paper: {paper.selection})")
    if group.get("official_preset") is False or str(group.get("preset")) not in ("ucf", "xd", "official", ""):
        marks.append(f"preset {group.get('preset')} (not official)")
    if str(group.get("ablation", "all")) not in ("all", ""):
        marks.append(f"ablation {group.get('ablation')}")
    if str(group.get("precision") or "fp32") != "fp32":
        marks.append(f"precision {group.get('precision')} (paper: fp32)")
    return marks


def _pm(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or _isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _metric_cell(g: Any, m: str) -> str:
    """One metric of an aggregated group in percent; ``n/a`` for a fine-grained metric of a
    method without a class branch."""
    if METRICS[m].fine_grained and not _class_branch(g):
        return "n/a"
    return _pm(g[f"{m}_mean"], g[f"{m}_std"], int(g[f"{m}_n"]))


def _class_branch(g: Any) -> bool:
    v = g.get("class_branch", True)
    return True if v is None or _isnan(v) else bool(v)


def format_dataset_table(
    agg: pd.DataFrame,
    dataset: str,
    *,
    metrics: Sequence[str] | None = None,
    published: tuple[PublishedRow, ...] | None = None,
) -> pd.DataFrame:
    """One dataset's full table of strings (metrics in percent): mean ± std per metric, seeds,
    time, parameters, config hashes, the published main metric and mean mAP, their deltas
    (only where comparable) and the protocol marks."""
    pub = published if published is not None else load_published()
    main = MAIN_METRIC.get(dataset, "auc")
    sub = agg[agg["dataset"] == dataset] if not agg.empty else agg
    metrics = list(metrics or [m for m in METRICS if not sub.empty and (sub[f"{m}_n"] > 0).any()])
    out_rows: list[dict[str, Any]] = []
    for _, g in sub.iterrows():
        paper = published_for(str(g["method"]), dataset, pub)
        marks = protocol_marks(g.to_dict(), paper)
        rec: dict[str, Any] = {
            "method": g["method"],
            "preset": g.get("preset", ""),
            "ablation": g.get("ablation", "all"),
            "selection": g.get("selection", ""),
            "precision": g.get("precision") or "fp32",
            "seeds": int(g["n_seeds"]),
        }
        for m in metrics:
            rec[METRICS[m].label] = _metric_cell(g, m)
        rec["train s"] = "–" if _isnan(g.get("train_time_s", np.nan)) else f"{g['train_time_s']:.1f}"
        p = g.get("params_trainable", np.nan)
        rec["params"] = "–" if _isnan(p) else _human(int(p))
        for key, label in ((main, METRICS[main].label), ("map_mean", "mAP avg")):
            pv = paper.metrics.get(key) if paper else None
            rec[f"paper {label}"] = "–" if pv is None else (f"{pv:.2f}" + ("" if paper.is_confirmed(key) else "†"))
            ours = g.get(f"{key}_mean", np.nan)
            if METRICS[key].fine_grained and not _class_branch(g):
                rec[f"Δ {label}"] = "n/a"
            elif pv is None or _isnan(ours):
                rec[f"Δ {label}"] = "–"
            elif marks:
                rec[f"Δ {label}"] = "n/c"
            else:
                rec[f"Δ {label}"] = f"{ours - pv:+.2f}"
        rec["config hashes"] = ", ".join(h for h in str(g.get("config_hashes", "")).split(",") if h) or "–"
        rec["protocol"] = "; ".join(marks) if marks else "same as paper"
        out_rows.append(rec)
    return pd.DataFrame.from_records(out_rows)


# Columns of the full table that identify a row (kept in every view of it).
_ID_COLUMNS: tuple[str, ...] = ("method", "preset", "ablation", "precision")
# an identifying column shown only when some row differs from this value
_SHOWN_UNLESS: dict[str, tuple[str, ...]] = {"ablation": ("all", ""), "precision": ("fp32", "")}


def _id_columns(full: pd.DataFrame) -> list[str]:
    """method and preset, plus ablation (precision) only when some row is not the all-on
    (fp32) model."""
    cols = [c for c in _ID_COLUMNS if c in full.columns]
    return [c for c in cols if c not in _SHOWN_UNLESS or not full[c].astype(str).isin(_SHOWN_UNLESS[c]).all()]


def headline_table(full: pd.DataFrame) -> pd.DataFrame:
    """The compact view of :func:`format_dataset_table`: method, preset, selection, seeds, the
    headline metrics (:data:`HEADLINE_METRICS`), and the published values with their deltas
    when any row of the dataset has a published value."""
    if full.empty:
        return full
    cols = _id_columns(full) + [c for c in ("selection", "seeds") if c in full.columns]
    cols += [METRICS[m].label for m in HEADLINE_METRICS if METRICS[m].label in full.columns]
    paper = [c for c in full.columns if c.startswith("paper ")]
    if any((full[c] != "–").any() for c in paper):
        for c in paper:
            label = c[len("paper ") :]
            cols += [c] + ([f"Δ {label}"] if f"Δ {label}" in full.columns else [])
    return full[cols].reset_index(drop=True)


def details_tables(full: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rest of :func:`format_dataset_table` as (kind, table): ``metrics`` (every metric
    not in the headline, in percent) and ``runs`` (seeds, time, parameters, config hashes,
    protocol). Tables without a column to show are left out."""
    if full.empty:
        return []
    ids = _id_columns(full)
    headline = {METRICS[m].label for m in HEADLINE_METRICS}
    metric_cols = [s.label for s in METRICS.values() if s.label in full.columns and s.label not in headline]
    run_cols = [
        c for c in ("selection", "seeds", "train s", "params", "config hashes", "protocol") if c in full.columns
    ]
    out = []
    if metric_cols:
        out.append(("metrics", full[ids + metric_cols].reset_index(drop=True)))
    out.append(("runs", full[ids + run_cols].reset_index(drop=True)))
    return out


def footnotes_for(tables: Iterable[pd.DataFrame], notes: dict[str, str] | None = None) -> list[str]:
    """The footnotes (:data:`FOOTNOTES`) whose mark a header or cell of ``tables`` uses: a cell
    that is the mark (``n/c``), ends with it (``6.68†``) or starts with it and a space
    (``Δ AUC``); a mark inside prose (a protocol note) does not count."""
    notes = FOOTNOTES if notes is None else notes
    cells: set[str] = set()
    for df in tables:
        cells.update(str(c) for c in df.columns)
        cells.update(str(v) for v in df.to_numpy().ravel())
    return [
        note
        for mark, note in notes.items()
        if any(c == mark or c.endswith(mark) or c.startswith(mark + " ") for c in cells)
    ]


def format_ablation_table(agg: pd.DataFrame, dataset: str, method: str = "dsanet") -> pd.DataFrame:
    """The paper's ablation form: one column per component (✓ on, ✗ off), then the metrics."""
    sub = agg[(agg["dataset"] == dataset) & (agg["method"] == method)] if not agg.empty else agg
    comp_cols = [c for c in sub.columns if c.startswith("component:")]  # the components' own order
    main = MAIN_METRIC.get(dataset, "auc")
    recs = []
    for _, g in sub.iterrows():
        rec: dict[str, Any] = {"ablation": g.get("ablation", "all")}
        for c in comp_cols:
            rec[c.split(":", 1)[1]] = "✓" if bool(g[c]) else "✗"
        for m in (main, "map_mean"):
            rec[METRICS[m].label] = _metric_cell(g, m)
        rec["seeds"] = int(g["n_seeds"])
        recs.append(rec)
    df = pd.DataFrame.from_records(recs)
    if not df.empty:  # all-on row last, as in the paper
        df["_order"] = (df["ablation"] == "all").astype(int)
        df = df.sort_values(["_order", "ablation"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return df


def _human(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k"
    return str(n)


def published_table(dataset: str | None = None) -> Any:
    """The published rows as a DataFrame (one row per method and dataset)."""
    recs = []
    for r in load_published():
        if dataset and r.dataset != dataset:
            continue
        rec: dict[str, Any] = {
            "method": r.name,
            "dataset": r.dataset,
            "backbone": r.backbone,
            "features": r.features,
            "selection": r.selection,
        }
        for k in METRICS:
            if k in r.metrics:
                rec[METRICS[k].label] = f"{r.metrics[k]:.2f}" + ("" if r.is_confirmed(k) else "†")
        rec["source"] = f"{r.source}; {r.table}"
        recs.append(rec)
    df = pd.DataFrame.from_records(recs)
    fixed = ["method", "dataset", "backbone", "features", "selection"]
    order = fixed + [m.label for m in METRICS.values() if m.label in df.columns] + ["source"]
    return df[order] if recs else df
