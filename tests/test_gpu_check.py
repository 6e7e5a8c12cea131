"""`benchmarks/gpu_check.py --device cpu --tiny`: every section of the GPU check runs on a CPU
(about 40 s on 2 cores, in the default run so that CI checks it); the table's rendering."""

from __future__ import annotations

import importlib.util
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


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_table_names_every_section_and_its_failure():
    gc = _module()
    ok_training = {"ok": True, "seconds": 3.0, "preset": "tiny"}
    for m, step in (("dsanet", 0.125), ("vadclip", 0.5)):
        ok_training[m] = {"step_s": step, "samples_per_s": 8 / step, "peak_mb": 512.0, "epoch_and_eval_s": 2.5}
    result = {
        "sections": {
            "extraction": {"ok": False, "seconds": 1.0, "error": "RuntimeError: decode failed\nmore"},
            "training": ok_training,
            "distributed": {"ok": True, "seconds": 9.0, "torchrun_train_s": 4.0, "bench_jobs2_s": 5.0},
            "demo": {"ok": False, "seconds": 0.0, "error": "skipped (--only)"},
        }
    }
    lines = gc.table(result).splitlines()
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == list(gc.SECTIONS)
    assert lines[2] == "| extraction | FAILED | 1.0 | RuntimeError: decode failed |"
    assert "dsanet: step 0.125 s, 64 samples/s, peak 512 MiB, epoch+eval 2.5 s" in lines[3]
    assert "vadclip: step 0.500 s, 16 samples/s" in lines[3]
    assert lines[4].endswith("torchrun train 4.0 s; bench --jobs 2 5.0 s |")
    assert lines[5].startswith("| demo | FAILED | 0.0 | skipped (--only)")
    assert gc.TINY.preset == "tiny" and gc.FULL.store_train + gc.FULL.store_test == gc.UCF_VIDEOS


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
