"""A run directory's records: its creation (refusing another configuration's directory) and,
at the end, ``metrics.json`` with the hashes of every artifact an audit relies on
(layout: docs/training.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import keys
from ..config import sha256_file
from ..errors import InputError
from .checkpoint import RunConfig, atomic_write_json, config_json, read_run_config


def prepare_run_dir(out: Path, cfg: RunConfig) -> str:
    """'new', 'resume' or 'finished'; refuses a run directory of another configuration and
    creates a new one with its ``config.json`` (rank 0 only)."""
    cj = out / "config.json"
    if cj.is_file():
        try:
            existing = read_run_config(cj)
        except InputError as exc:
            raise InputError(f"{cj} is not a run config ({exc}); use a new --out") from None
        if json.loads(json.dumps(existing.comparable())) != json.loads(json.dumps(cfg.comparable())):
            diff = _diff_keys(existing.comparable(), cfg.comparable())
            raise InputError(
                f"{out} holds a run with another configuration (differs in: {', '.join(diff) or 'preset'}); "
                "use a new --out directory"
            )
        return "finished" if (out / "metrics.json").is_file() else "resume"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not a run directory; choose a new --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the run directory {out}: {exc.strerror or exc}") from None
    atomic_write_json(out / "config.json", config_json(cfg))
    return "new"


def _diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The top-level fields where two configs' identities differ (runtime fields are not in them)."""
    out = []
    for k in sorted(set(a) | set(b)):
        if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True):
            out.append(k)
    return out


def run_artifacts(out: Path, labels: list[str]) -> dict[str, str]:
    """sha256 of every file of a finished run that ``dsan audit`` relies on, by path relative to
    the run directory: the config, the environment record, a best-on-val run's validation
    split, and per selection label its
    evaluation record, predictions and checkpoint."""
    files = ["config.json", "environment.json"]
    if (out / keys.VAL_SPLIT_FILE).is_file():  # the ids a best-on-val run held out
        files.append(keys.VAL_SPLIT_FILE)
    for label in labels:
        ev = json.loads((out / "eval" / label / "metrics.json").read_text())
        files += [
            f"eval/{label}/metrics.json",
            f"eval/{label}/predictions.npz",
            f"checkpoints/{(ev.get('checkpoint') or {}).get('file', f'{label}.safetensors')}",
        ]
    return {f: sha256_file(out / f) for f in dict.fromkeys(files)}


def write_run_summary(
    out: Path,
    cfg: RunConfig,
    results: dict[str, Any],
    *,
    selected: str,
    params: dict[str, int],
    train_seconds: float,
    steps: int,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``metrics.json`` (LAST: it marks the run finished): the run's identity, the metrics
    of each selection label, what it cost, and the hashes of its artifacts; then drop the resume
    state, which a finished run no longer needs."""
    summary = {
        keys.CONFIG_HASH: cfg.hash,
        "method": cfg.method,
        "preset": cfg.preset_name,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "select": cfg.select,
        keys.SELECTED: selected,
        keys.RESULTS: results,
        "train_seconds": train_seconds,
        "steps": steps,
        "params": params,
        "random_backbone": bool(cfg.backbone.get("random_weights", False)),
        "random_text_encoder": bool(cfg.text_encoder.get("random_weights", False)),
        **extra,
    }
    summary[keys.ARTIFACTS] = run_artifacts(out, list(results))
    atomic_write_json(out / "metrics.json", summary)
    (out / "checkpoints" / "resume.safetensors").unlink(missing_ok=True)
    return summary
