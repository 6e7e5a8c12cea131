"""`dsan demo` end to end (slow: a few minutes on 2 CPU cores): synthetic videos, tiny random
CLIP features, the four methods, bench table, HTML report, audit; a second run reuses it all."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_end_to_end_then_resumes(tmp_path, cli):
    out = tmp_path / "demo"
    code, text = cli("demo", "--out", str(out))
    assert code == 0, text
    assert "SYNTHETIC DATA, RANDOM BACKBONE" in text and "random backbone" in text.lower()
    for method in ("dsanet", "vadclip", "mil", "zeroshot"):
        assert f"| {method} |" in text
    assert "audit passed" in text
    assert (out / "bench" / "report.html").read_text().count("data:image/png;base64,") >= 3
    assert "**PASS**" in (out / "bench" / "audit.md").read_text()
    rec = json.loads((out / "bench" / "bench.json").read_text())
    assert len(rec["jobs"]) == 4 and all(j["lock_sha256"] for j in rec["jobs"].values())
    # the trained methods learn the synthetic events (tiny presets: standardised inputs, NOT official)
    auc = {}
    for run in (out / "bench" / "runs" / "synth").iterdir():
        auc[run.name.split("-")[0]] = json.loads((run / "metrics.json").read_text())["results"]["last"]["metrics"][
            "auc"
        ]
        cfg = json.loads((run / "config.json").read_text())["config"]
        if cfg["method"] != "zeroshot":
            assert cfg["preset"]["input_norm"] == "standardize" and cfg["preset_name"] == "tiny"
    assert auc["dsanet"] >= 0.75 and auc["vadclip"] >= 0.75 and auc["mil"] > 0.6, auc
    code, text = cli("demo", "--out", str(out))
    assert code == 0 and "audit passed" in text


def test_demo_adds_training_videos_but_keeps_the_default_test_split():
    from dsan_toolkit.apps.demo import demo_synth_config
    from dsan_toolkit.datasets.synth import SynthConfig, plan_dataset

    demo, default = plan_dataset(demo_synth_config()), plan_dataset(SynthConfig())
    assert [v for v in demo if v.split == "test"] == [v for v in default if v.split == "test"]
    assert sum(v.split == "train" for v in demo) > sum(v.split == "train" for v in default)
