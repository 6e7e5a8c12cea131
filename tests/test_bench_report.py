"""The bench report as a reader sees it: a compact headline table and details tables, `n/a`
for the fine-grained metrics of a method without a class branch, footnotes only for the marks
in use, metrics in percent in every table, confusion matrices in a grid; and (slow, needs
chromium) the HTML page measured and photographed in a headless browser at laptop size."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import numpy as np
import pandas as pd
import pytest

from dsan_toolkit.apps.demo import compact_markdown
from dsan_toolkit.bench.report import BenchReport, PredictionSet, VideoPrediction, frame_gt, render
from dsan_toolkit.bench.runner import BenchConfig, build_report
from dsan_toolkit.bench.table import (
    FOOTNOTES,
    ResultRow,
    aggregate,
    details_tables,
    footnotes_for,
    format_ablation_table,
    format_dataset_table,
    headline_table,
)
from dsan_toolkit.models import get_method, list_methods

MAX_HEADLINE_COLUMNS = 12
MAPS = {f"map@{t:.1f}": 10.0 + t for t in (0.1, 0.2, 0.3, 0.4, 0.5)} | {"map_mean": 12.5}


def _row(method, dataset="ucf", seed=0, *, class_branch=True, selection="best-on-test", **kw):
    metrics = {"auc": 0.9 + 0.01 * seed, "ap": 0.8, "auc_align": 0.85, "ap_align": 0.75, "auc_anomalous": 0.7, **MAPS}
    base = dict(
        method=method,
        dataset=dataset,
        seed=seed,
        preset=dataset,
        selection=selection,
        config_hash=f"{method}{seed}".ljust(64, "0"),
        features="vadclip-release",
        backbone="ViT-B-16",
        random_backbone=False,
        synthetic=False,
        metrics=metrics,
        train_time_s=100.0,
        params_trainable=1_000_000,
        class_branch=class_branch,
    )
    base.update(kw)
    return ResultRow(**base)


def _rows(dataset="ucf"):
    """dsanet under the paper's protocol, vadclip with another selection rule, mil (no class
    branch, its mAP deliberately present in the row: the flag alone must hide it), 3 seeds."""
    return [
        r
        for s in range(3)
        for r in (
            _row("dsanet", dataset, s),
            _row("vadclip", dataset, s, selection="last"),
            _row("mil", dataset, s, class_branch=False, selection="last"),
        )
    ]


def _report(rows, datasets=("ucf",), preds=None) -> BenchReport:
    cfg = BenchConfig(
        methods=("dsanet", "vadclip", "mil"),
        datasets=datasets,
        seeds=(0, 1, 2),
        features={d: "unused" for d in datasets},
    )
    rep = build_report(rows, cfg, {}, figures=False)
    if preds:
        rep.predictions = preds
    return rep


def _pset(method: str, class_branch: bool = True, seed: int = 0) -> PredictionSet:
    rng = np.random.default_rng(seed)
    vids = []
    for i in range(3):
        segs = ((32, 96, "B"),) if i < 2 else ()
        gt = frame_gt(10, segs).reshape(10, 16).max(1)
        probs = rng.random((10, 3)) * 0.1
        probs[np.arange(10), np.where(gt > 0, 1, 0)] += 1
        vids.append(
            VideoPrediction(
                f"v{i}", np.clip(0.7 * gt + 0.3 * rng.random(10), 0, 1), segs, probs / probs.sum(1, keepdims=True)
            )
        )
    return PredictionSet(method, "ucf", ("N", "B", "C"), vids, class_branch=class_branch)


def test_class_branch_is_declared_by_each_method():
    flags = {m: get_method(m).has_class_branch for m in list_methods()}
    assert flags["mil"] is False
    assert flags["dsanet"] and flags["vadclip"] and flags["zeroshot"]
    assert get_method("mil").describe()["has_class_branch"] is False


def test_headline_is_compact_and_the_details_hold_the_rest():
    full = format_dataset_table(aggregate(_rows()), "ucf")
    head = headline_table(full)
    assert len(head.columns) <= MAX_HEADLINE_COLUMNS < len(full.columns)
    assert list(head.columns) == [
        "method",
        "preset",
        "selection",
        "seeds",
        "AUC",
        "AP",
        "AUC anom.",
        "mAP avg",
        "paper AUC",
        "Δ AUC",
        "paper mAP avg",
        "Δ mAP avg",
    ]
    details = dict(details_tables(full))
    assert set(details) == {"metrics", "runs"}
    assert {"AUC (align)", "AP (align)", "mAP@0.1", "mAP@0.5"} <= set(details["metrics"].columns)
    assert {"train s", "params", "config hashes", "protocol"} <= set(details["runs"].columns)
    shown = set(head.columns).union(*(df.columns for df in details.values()))
    assert shown == set(full.columns) - {
        "ablation",
        "precision",
    }  # shown somewhere (not ablation, precision: all rows "all", fp32)
    for df in (head, *details.values()):  # every view names its rows
        assert list(df["method"]) == ["dsanet", "vadclip", "mil"]
    d = head.set_index("method")
    assert d.loc["dsanet", "Δ AUC"] == f"{91.0 - 89.44:+.2f}" and d.loc["vadclip", "Δ AUC"] == "n/c"


def test_headline_keeps_the_ablation_column_only_when_a_row_has_one():
    rows = [_row("dsanet"), _row("dsanet", ablation="no-refinement")]
    head = headline_table(format_dataset_table(aggregate(rows), "ucf"))
    assert list(head["ablation"]) == ["all", "no-refinement"]


def test_headline_has_no_paper_columns_without_a_published_value():
    rows = [_row("dsanet", "synth"), _row("mil", "synth", class_branch=False)]
    head = headline_table(format_dataset_table(aggregate(rows), "synth"))
    assert not any(c.startswith(("paper", "Δ")) for c in head.columns)


def test_no_class_branch_shows_na_for_every_fine_grained_metric():
    full = format_dataset_table(aggregate(_rows()), "ucf")
    mil, dsanet = full.set_index("method").loc["mil"], full.set_index("method").loc["dsanet"]
    for label in ("mAP@0.1", "mAP@0.3", "mAP@0.5", "mAP avg", "Δ mAP avg"):
        assert mil[label] == "n/a"
    assert dsanet["mAP avg"] == "12.50 ± 0.00" and mil["AUC"] == "91.00 ± 1.00"
    abl = format_ablation_table(aggregate([_row("mil", class_branch=False)]), "ucf", "mil")
    assert abl.iloc[0]["mAP avg"] == "n/a"


def test_footnotes_only_for_the_marks_a_table_uses():
    # dsanet on ucf: its published values are confirmed (no †), comparable (Δ, no n/c)
    rep = _report([_row("dsanet", seed=s) for s in range(2)])
    assert rep.footnotes == [FOOTNOTES["Δ"]]
    md = render(rep, "md")
    assert "†" not in md and "n/c" not in md and "n/a" not in md
    # vadclip's unconfirmed mean mAP carries †; its other selection rule gives n/c; mil gives n/a
    rep = _report(_rows())
    assert rep.footnotes == [FOOTNOTES[m] for m in ("†", "Δ", "n/c", "n/a")]
    # a mark inside prose is not a use of it
    assert footnotes_for([pd.DataFrame({"protocol": ["no n/c here; see Δ notes"]})]) == []
    # no published value on a synthetic dataset: no Δ column, no footnote at all
    rep = _report([_row("dsanet", "synth")], datasets=("synth",))
    assert rep.footnotes == [] and "\n- " not in render(rep, "md")
    assert "<ul class='foot'>" not in render(rep, "html")


def test_every_table_shows_percent_and_says_so():
    rep = _report(_rows())
    tables = dict(rep.tables + rep.details)
    head = tables["ucf: results (%, mean ± std over seeds)"].set_index("method")
    more = tables["ucf: further metrics (%, mean ± std over seeds)"].set_index("method")
    assert head.loc["vadclip", "AUC"] == "91.00 ± 1.00" and head.loc["vadclip", "mAP avg"] == "12.50 ± 0.00"
    assert more.loc["vadclip", "AUC (align)"] == "85.00 ± 0.00" and more.loc["vadclip", "mAP@0.1"] == "10.10 ± 0.00"
    cfg = BenchConfig(methods=(), datasets=("ucf",), seeds=(0,), features={"ucf": "unused"}, ablation="dsanet")
    rows = _rows() + [_row("dsanet", ablation="no-refinement", components={"refinement": False})]
    ((title, abl),) = build_report(rows, cfg, {}, figures=False).tables
    assert "(%" in title and abl.set_index("ablation").loc["no-refinement", "AUC"] == "90.00"
    for title, _ in rep.tables + rep.details:
        assert "runs and protocol" in title or "(%" in title
    assert "## ucf: results (%, mean ± std over seeds)" in compact_markdown(rep)
    assert "| vadclip | ucf | last | 3 | 91.00 ± 1.00 |" in compact_markdown(rep)
    units = json.loads(render(rep, "json"))["units"]
    assert units["tables"] == "percent"
    assert units["runs"]["auc"] == "fraction" and units["runs"]["map_mean"] == "percent"


def test_compact_markdown_is_the_headline_with_its_footnotes():
    rep = _report(_rows())
    text = compact_markdown(rep)
    assert "protocol" not in text.split("\n- ")[0] and "mAP@0.1" not in text and "config hashes" not in text
    assert FOOTNOTES["n/a"] in text and FOOTNOTES["†"] in text


def test_html_headline_first_details_collapsible_confusions_in_a_grid():
    rep = _report(_rows(), preds={"ucf": [_pset("dsanet"), _pset("vadclip", seed=1), _pset("mil", False, seed=2)]})
    page = render(rep, "html")
    tables = re.findall(r"<table>.*?</table>", page, flags=re.S)
    assert len(tables) == 3  # headline, further metrics, runs
    headline = tables[0]
    assert headline.count("<th ") <= MAX_HEADLINE_COLUMNS and "class='wrap'" not in headline
    assert page.index(tables[0]) < page.index("<details") < page.index(tables[1])
    assert "<td class='wrap'>selection last (paper: best-on-test)</td>" in page  # long text may wrap
    assert "<td class='txt'>dsanet</td>" in headline and "<td class='num'>91.00 ± 1.00</td>" in headline
    grid = re.search(r"<div class='grid'[^>]*>(.*?)</div>", page, flags=re.S)
    assert grid is not None and grid.group(1).count("<figure>") == 2
    assert "dsanet: fine-grained confusion" in grid.group(1) and "mil" not in grid.group(1)
    assert "No confusion for mil: no class branch" in page
    assert page.count("data:image/png;base64,") == 4  # scores, ROC/PR, two confusions


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH")
@pytest.mark.parametrize("width,height", [(1366, 768), (1920, 1080)])
def test_html_headline_fits_a_laptop_screen_in_chromium(tmp_path, width, height):
    rep = _report(
        _rows() + _rows("xd"),
        datasets=("ucf", "xd"),
        preds={"ucf": [_pset("dsanet"), _pset("vadclip", seed=1), _pset("mil", False, seed=2)]},
    )
    page = tmp_path / "report.html"
    page.write_text(render(rep, "html"))
    base = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ]
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)
    assert _png_size(shot) == (width, height)
    # measure a copy of the page: the first table's right edge, its row heights, the page width
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            (
                "<script>const t=document.querySelector('table'),e=document.documentElement;"
                "document.body.dataset.measure=JSON.stringify({right:t.getBoundingClientRect().right,"
                "view:e.clientWidth,scroll:e.scrollWidth,"
                "rows:[...t.querySelectorAll('tbody tr')].map(r=>r.getBoundingClientRect().height)});</script></body>"
            ),
        )
    )
    dom = subprocess.run(
        [*base, "--dump-dom", probe.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    m = json.loads(re.search(r'data-measure="([^"]+)"', dom).group(1).replace("&quot;", '"'))
    assert m["view"] == width and m["scroll"] <= width  # no horizontal scrolling anywhere on the page
    assert m["right"] <= width
    assert len(m["rows"]) == 3 and max(m["rows"]) < 2 * min(m["rows"]) and max(m["rows"]) <= 30  # one line each
