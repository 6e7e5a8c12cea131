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
    code, text = cli("demo", "--out", str(out))
    assert code == 0 and "audit passed" in text
