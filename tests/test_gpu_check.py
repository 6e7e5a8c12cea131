"""`benchmarks/gpu_check.py --device cpu --tiny`: every section of the GPU check runs on a CPU
(the whole run takes about a minute on 2 cores: slow; one section runs by default)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "check.json"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--json", str(out), "--work", str(tmp_path / "w")]
    p = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)
    return p, json.loads(out.read_text())


@pytest.mark.integration
def test_training_section_alone(tmp_path):
    p, res = _run(tmp_path, "--only", "training")
    assert p.returncode == 1  # the skipped sections count as not passed
    assert list(res["sections"]) == ["extraction", "training", "distributed", "demo"]
    tr = res["sections"]["training"]
    assert tr["ok"], tr.get("traceback")
    for m in ("dsanet", "vadclip"):
        assert tr[m]["batch"] == 8 and tr[m]["step_s"] > 0 and tr[m]["epoch_and_eval_s"] > 0
        assert tr[m]["peak_mb"] is None  # no GPU memory on a CPU
    assert tr["store"] == {"train": 16, "test": 6, "crops": 1, "write_s": tr["store"]["write_s"]}
    assert res["sections"]["demo"] == {"ok": False, "seconds": 0.0, "error": "skipped (--only)"}
    assert "| training | yes |" in p.stdout and "| demo | FAILED |" in p.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_every_section_on_cpu(tmp_path):
    p, res = _run(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    s = res["sections"]
    assert all(s[k]["ok"] for k in ("extraction", "training", "distributed", "demo"))
    ex = s["extraction"]
    assert ex["crops"] == 2 * 4 * 10  # 2 videos of 64 frames: 4 snippets each, 10 crops
    assert ex["pipeline_crops_per_s"] > 0 and 0 < ex["efficiency"] and ex["ucf_projected_hours"] > 0
    assert s["distributed"]["torchrun_world_size"] == 1 and s["distributed"]["bench_runs"] == 2
    assert s["distributed"]["bench_devices"] == ["cpu"]
    assert s["demo"]["audit_passed"] and "| demo | yes |" in p.stdout
