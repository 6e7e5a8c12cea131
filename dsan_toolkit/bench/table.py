"""Benchmark tables: flat result rows -> pandas tables of mean ± std over seeds.

A *result row* is one finished run (one method, dataset, configuration and seed) as a flat
dict (:class:`ResultRow`). :func:`aggregate` groups rows that differ only by seed and gives
mean, std and the number of seeds per metric; :func:`format_dataset_table` turns one dataset's
groups into the table printed by ``dsan bench`` with the published number of each method, a
delta where our run followed the paper's protocol on the same features, and the reasons
(``protocol`` column) where it did not.

Metrics are stored as computed (AUC/AP as fractions in [0, 1], detection mAP in percent as
the official code prints it) and shown in percent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .published import REFERENCE_FEATURES, PublishedRow, load_published, published_for

IOUS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    to_percent: float  # factor from the stored value to percent


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec("auc", "AUC", 100.0),
        MetricSpec("ap", "AP", 100.0),
        MetricSpec("auc_align", "AUC (align)", 100.0),
        MetricSpec("ap_align", "AP (align)", 100.0),
        MetricSpec("auc_anomalous", "AUC anom.", 100.0),
        *(MetricSpec(f"map@{t:.1f}", f"mAP@{t:.1f}", 1.0) for t in IOUS),
        MetricSpec("map_mean", "mAP avg", 1.0),
    )
}

# The headline metric of each dataset in the papers' comparison tables.
MAIN_METRIC: dict[str, str] = {"ucf": "auc", "xd": "ap"}

# Fields that identify a configuration (everything but the seed and the outcomes).
GROUP_KEYS: tuple[str, ...] = (
    "dataset", "method", "preset", "selection", "ablation", "features", "backbone",
    "random_backbone", "synthetic",
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

    def to_flat(self) -> dict[str, Any]:
        d = asdict(self)
        metrics = d.pop("metrics")
        comps = d.pop("components")
        d.update({k: float(v) for k, v in metrics.items() if v is not None})
        d.update({f"component:{k}": bool(v) for k, v in comps.items()})
        return d

    @classmethod
    def from_flat(cls, d: dict[str, Any]) -> "ResultRow":
        metrics = {k: float(d[k]) for k in METRICS if k in d and d[k] is not None and not _isnan(d[k])}
        comps = {k.split(":", 1)[1]: bool(v) for k, v in d.items() if k.startswith("component:")}
        names = {f for f in cls.__dataclass_fields__ if f not in ("metrics", "components")}
        kw = {k: d[k] for k in names if k in d}
        return cls(metrics=metrics, components=comps, **kw)


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
            out[col] = extra[col].agg(lambda s: s.dropna().iloc[0] if s.notna().any() else np.nan) \
                if col == "official_preset" else extra[col].mean()
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
    return marks


def _pm(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or _isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def format_dataset_table(
    agg: pd.DataFrame,
    dataset: str,
    *,
    metrics: Sequence[str] | None = None,
    published: tuple[PublishedRow, ...] | None = None,
) -> pd.DataFrame:
    """One dataset's table of strings: mean ± std per metric, seeds, time, parameters, the
    published main metric, its delta (only where comparable) and the protocol marks."""
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
            "seeds": int(g["n_seeds"]),
        }
        for m in metrics:
            rec[METRICS[m].label] = _pm(g[f"{m}_mean"], g[f"{m}_std"], int(g[f"{m}_n"]))
        rec["train s"] = "–" if _isnan(g.get("train_time_s", np.nan)) else f"{g['train_time_s']:.1f}"
        p = g.get("params_trainable", np.nan)
        rec["params"] = "–" if _isnan(p) else _human(int(p))
        for key, label in ((main, METRICS[main].label), ("map_mean", "mAP avg")):
            pv = paper.metrics.get(key) if paper else None
            rec[f"paper {label}"] = "–" if pv is None else (f"{pv:.2f}" + ("" if paper.is_confirmed(key) else "†"))
            ours = g.get(f"{key}_mean", np.nan)
            if pv is None or _isnan(ours):
                rec[f"Δ {label}"] = "–"
            elif marks:
                rec[f"Δ {label}"] = "n/c"
            else:
                rec[f"Δ {label}"] = f"{ours - pv:+.2f}"
        rec["protocol"] = "; ".join(marks) if marks else "same as paper"
        out_rows.append(rec)
    return pd.DataFrame.from_records(out_rows)


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
            rec[METRICS[m].label] = _pm(g[f"{m}_mean"], g[f"{m}_std"], int(g[f"{m}_n"]))
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
