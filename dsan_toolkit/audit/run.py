"""Auditing a run directory (layout: docs/training.md) or a bench directory (docs/bench.md).

For a run, every recorded hash is recomputed (config, every artifact the run hashed when it
finished, checkpoints, predictions, feature store content, manifest, lock file), every metric is recomputed from the stored predictions and the
manifest's ground truth, the environment is compared with the recorded one, and, with
``rerun=True``, the run is trained again with the same config and seed and its numbers are
compared (exact, drift within tolerance, or mismatch).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import keys
from ..config import legacy_config_hash, sha256_file
from ..errors import InputError
from ..utils.jsonio import read_json_object
from .checks import AuditReport, check_val_split, compare_numbers
from .environment import compare_environments

# Recomputed metrics are deterministic functions of the stored arrays: they must agree exactly
# up to float summation order.
RECOMPUTE_TOLERANCE = 1e-9
RERUN_TOLERANCE = 1e-4


def read_json(path: Path) -> dict[str, Any]:
    """A JSON record of a run or bench (an object; :class:`InputError` naming the file otherwise)."""
    return read_json_object(path, "JSON record")


def recompute_metrics(
    manifest: Any, preds: dict[str, np.ndarray], *, options: dict[str, Any] | None = None
) -> dict[str, float]:
    """Every metric of ``eval/<label>/metrics.json`` from the stored arrays (as read by
    :func:`~dsan_toolkit.train.predictions.read_predictions`) and the manifest."""
    from ..eval import evaluate_predictions
    from ..train.predictions import PredictionSet

    p = PredictionSet.from_arrays(preds)
    return evaluate_predictions(
        manifest,
        p.lengths(),
        p.per_video("scores"),
        p.per_video("align_scores"),
        None if p.class_probs is None else p.per_video("class_probs"),
        **(options or {}),
    )


def recorded_protocol(em: dict[str, Any]) -> dict[str, Any]:
    """The evaluation options an eval record names: its detection-mAP protocol, when it is a
    named one (``official`` when the record predates the name)."""
    from ..eval import MAP_PROTOCOLS

    proto = (em.get(keys.METRICS) or {}).get(keys.MAP_PROTOCOL)
    return {"map_protocol": proto} if proto in MAP_PROTOCOLS else {}


def recompute_intervals(
    manifest: Any, preds: dict[str, np.ndarray], ci: dict[str, Any], em: dict[str, Any]
) -> dict[str, Any]:
    """The ``ci`` block of an eval record recomputed from the stored arrays with its recorded
    number of resamples, seed and level."""
    from ..train.predictions import PredictionSet, compute_intervals

    p = PredictionSet.from_arrays(preds)
    return compute_intervals(
        manifest,
        p,
        n_resamples=int(ci.get(keys.CI_RESAMPLES, 0)),
        seed=int(ci.get(keys.CI_SEED, 0)),
        level=float(ci.get(keys.CI_LEVEL, 0.95)),
        **recorded_protocol(em),
    )


def _interval_numbers(ci: dict[str, Any]) -> dict[str, Any]:
    """``{metric: {"lo": .., "hi": ..}}`` of a ``ci`` block (for the number comparison)."""
    return {k: {"lo": v[0], "hi": v[1]} for k, v in (ci.get(keys.CI_INTERVALS) or {}).items() if len(v) == 2}


def _flat_numbers(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def _safetensors_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        return dict(fh.metadata() or {})


def _open_store(path: str) -> Any:
    from ..store import open_store

    return open_store(path)


def audit_run(
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    lock: str | Path | None = None,
    rerun: bool = False,
    tolerance: float = RERUN_TOLERANCE,
    device: str = "cpu",
    clip_weights: str | Path | None = None,
    report: AuditReport | None = None,
    prefix: str = "",
    expected: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit one run directory; checks are appended to ``report`` (a new one by default).

    ``store``: a feature store given explicitly (``--features``), else the path the run
    recorded (see :mod:`dsan_toolkit.train.store_identity`); either way its content hash must
    be the recorded one. ``expected`` may carry hashes recorded elsewhere (a bench's
    ``bench.json``): keys ``config_hash``, ``store_hash``, ``manifest_hash``, ``metrics_sha256``,
    ``lock_sha256``, ``checkpoint_sha256:<label>``, ``predictions_sha256:<label>``.
    ``rerun`` trains again on that store, with ``clip_weights`` (a local CLIP file whose sha256
    the run recorded; default: the path the run recorded), and checks that the rerun resolved the
    recorded config (same hash) before comparing its numbers.
    """
    run = Path(run_dir)
    rep = report or AuditReport(target=str(run), kind="run")
    say = progress or (lambda _m: None)
    name = lambda p: f"{prefix}{p}"  # noqa: E731
    expected = expected or {}
    if not (run / "config.json").is_file():
        raise InputError(f"{run} is not a run directory (no config.json); see docs/training.md")
    if not (run / "metrics.json").is_file():
        rep.add("finished", name("metrics.json"), False, "present", "missing", "the run did not finish")
        return rep

    # -- config ------------------------------------------------------------------------------
    say(f"{run.name}: config and checkpoints")
    cj = read_json(run / "config.json")
    recorded_hash = str(cj.get("hash", ""))
    cfg = cj.get("config", {})
    actual_hash = _run_config_hash(cfg)
    legacy = actual_hash != recorded_hash and legacy_config_hash(cfg) == recorded_hash
    if legacy:  # a record of the earlier hash scheme: compare in that scheme
        actual_hash = recorded_hash
    rep.add(
        "config hash",
        name("config.json"),
        actual_hash == recorded_hash,
        recorded_hash,
        actual_hash,
        "recorded with the earlier hash scheme (store path and device hashed too)"
        if legacy
        else ""
        if actual_hash == recorded_hash
        else "the config was edited after the run",
    )
    if expected.get("config_hash"):
        rep.add(
            "config hash (bench record)",
            name("config.json"),
            actual_hash == expected["config_hash"],
            expected["config_hash"],
            actual_hash,
        )
    check_val_split(rep, run, cfg, name)
    metrics_json = read_json(run / "metrics.json")
    results_ok = isinstance(metrics_json.get(keys.RESULTS), dict) and bool(metrics_json[keys.RESULTS])
    if not results_ok or keys.SELECTED not in metrics_json:
        rep.add(
            "run summary",
            name("metrics.json"),
            False,
            "the results of every selection",
            "none",
            "metrics.json is not a run summary (overwritten?)",
        )
    rep.add(
        "config hash in metrics.json",
        name("metrics.json"),
        metrics_json.get("config_hash") == recorded_hash,
        recorded_hash,
        metrics_json.get("config_hash"),
    )

    # -- feature store and manifest ----------------------------------------------------------------
    fs, store_path = _audit_store(rep, cfg, store, run, expected, say)
    manifest = None
    if fs is not None:
        manifest = fs.manifest
        mh = manifest.content_hash()
        want_m = expected.get("manifest_hash") or cfg.get("manifest_hash")
        rep.add("manifest hash", f"{store_path} (manifest)", mh == want_m, want_m, mh)
        scfg = cfg.get("store_config_hash")
        if scfg:
            from ..train.store_identity import store_config_hash

            got = store_config_hash(fs)
            rep.add("extraction config hash", store_path, got == scfg, scfg, got)
    _check_artifacts(rep, run, metrics_json, expected, name)
    lock_path = lock or expected.get("lock_path")
    if lock_path:
        _check_lock(rep, Path(lock_path), expected.get("lock_sha256"), manifest)

    # -- per selection: checkpoint, predictions, metrics -------------------------------------------
    results = metrics_json.get("results", {})
    for label in sorted(results):
        ev = run / "eval" / label
        em_path = ev / "metrics.json"
        if not em_path.is_file():
            rep.add("evaluation record", name(f"eval/{label}/metrics.json"), False, "present", "missing")
            continue
        em = read_json(em_path)
        ck = em.get("checkpoint") or {}
        ck_file = run / "checkpoints" / str(ck.get("file", f"{label}.safetensors"))
        if ck_file.is_file():
            got = sha256_file(ck_file)
            want = expected.get(keys.checkpoint_sha256(label)) or ck.get("sha256")
            rep.add(
                "checkpoint sha256",
                name(f"checkpoints/{ck_file.name}"),
                got == want,
                want,
                got,
                "" if got == want else "the weights changed after evaluation",
            )
            meta = _safetensors_meta(ck_file)
            rep.add(
                "checkpoint config hash",
                name(f"checkpoints/{ck_file.name}"),
                meta.get("config_hash") == recorded_hash,
                recorded_hash,
                meta.get("config_hash"),
            )
        else:
            rep.add("checkpoint", name(f"checkpoints/{ck_file.name}"), False, "present", "missing")
        for key in ("config_hash", "store_hash", "manifest_hash"):
            want = recorded_hash if key == "config_hash" else cfg.get(key)
            if key in em:
                rep.add(f"{key} in eval record", name(f"eval/{label}/metrics.json"), em[key] == want, want, em[key])
        pred_path = ev / "predictions.npz"
        if not pred_path.is_file():
            rep.add("predictions", name(f"eval/{label}/predictions.npz"), False, "present", "missing")
            continue
        got_p = sha256_file(pred_path)
        for what, want_p in (
            ("eval record", em.get(keys.PREDICTIONS_SHA256)),
            ("bench record", expected.get(keys.predictions_sha256(label))),
        ):
            if want_p:
                rep.add(
                    f"predictions sha256 ({what})",
                    name(f"eval/{label}/predictions.npz"),
                    got_p == want_p,
                    want_p,
                    got_p,
                    "" if got_p == want_p else "the predictions changed after evaluation",
                )
        if manifest is None:
            rep.skip("metrics recomputed", name(f"eval/{label}"), "no manifest (feature store unreadable)")
            continue
        say(f"{run.name}: recomputing {label} metrics")
        try:
            from ..train.predictions import read_predictions

            arrays = read_predictions(pred_path)
            recomputed = recompute_metrics(manifest, arrays, options=recorded_protocol(em))
            ci = em.get(keys.CI)
            recomputed_ci = recompute_intervals(manifest, arrays, ci, em) if isinstance(ci, dict) else None
        except Exception as exc:  # noqa: BLE001 - a corrupt array is an audit failure, not a crash
            rep.add(
                "predictions readable",
                name(f"eval/{label}/predictions.npz"),
                False,
                "valid arrays",
                "invalid",
                str(exc)[:200],
            )
            continue
        flat = _flat_numbers(recomputed)
        for key, val in (em.get("metrics") or {}).items():  # protocol labels (mAP normal-class mode, config hash)
            if isinstance(val, str) and isinstance(recomputed.get(key), str):
                rep.add(
                    f"metric protocol {key}",
                    name(f"eval/{label}/metrics.json"),
                    val == recomputed[key],
                    val,
                    recomputed[key],
                    "" if val == recomputed[key] else "evaluated with another protocol",
                )
        rep.numbers += compare_numbers(
            name(f"eval/{label}/metrics.json"), _flat_numbers(em.get("metrics", {})), flat, RECOMPUTE_TOLERANCE
        )
        rep.numbers += compare_numbers(
            name(f"metrics.json[{label}]"), _flat_numbers(_result_metrics(results[label])), flat, RECOMPUTE_TOLERANCE
        )
        if recomputed_ci is not None:  # the bootstrap intervals, with the recorded resamples and seed
            rep.numbers += compare_numbers(
                name(f"eval/{label}/metrics.json[ci]"),
                _flat_numbers(_interval_numbers(em[keys.CI])),
                _flat_numbers(_interval_numbers(recomputed_ci)),
                RECOMPUTE_TOLERANCE,
            )

    # -- environment -------------------------------------------------------------------------
    env_now = _capture(device)
    rep.environment = env_now
    if (run / "environment.json").is_file():
        rep.env_diffs = compare_environments(read_json(run / "environment.json"), env_now)
    else:
        rep.warn("environment record", name("environment.json"), "missing: cannot compare environments")

    if rerun:
        say(f"{run.name}: re-training with the same config and seed")
        comps, rerun_hash = rerun_and_compare(
            run, cfg, results, tolerance=tolerance, device=device, prefix=prefix, store=store, clip_weights=clip_weights
        )
        want = _run_config_hash(cfg)
        rep.add(
            "rerun config hash",
            name("config.json"),
            rerun_hash == want,
            want,
            rerun_hash,
            "" if rerun_hash == want else "the rerun resolved another config (store, text encoder or preset differ)",
        )
        rep.rerun += comps
    return rep


def _audit_store(
    rep: AuditReport,
    cfg: dict[str, Any],
    explicit: str | Path | None,
    run: Path,
    expected: dict[str, str],
    say: Callable[[str], None],
) -> tuple[Any, str]:
    """The run's store by the one resolution rule (explicit ``--features``, else the recorded
    path; :mod:`dsan_toolkit.train.store_identity`), its content hash checked as a named check
    (an audit reports a different store as a failure, explicit or not)."""
    from ..train.store_identity import resolve_store_path

    recorded = str(cfg.get("store", ""))
    try:
        path, is_explicit = resolve_store_path(recorded, explicit, "--features")
        fs = _open_store(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to open is reported as a failed check
        rep.add("feature store", str(explicit or recorded), False, "readable", "unreadable", str(exc)[:200])
        return None, str(explicit or recorded)
    say(f"{run.name}: hashing feature store arrays")
    sh = fs.content_hash()
    want = expected.get("store_hash") or cfg.get("store_hash")
    given = " (given explicitly)" if is_explicit else ""
    rep.add(
        "feature store content hash",
        f"{path}{given}",
        sh == want,
        want,
        sh,
        "" if sh == want else "not the store the run was trained on, or a feature array changed since",
    )
    return fs, str(path)


def _check_artifacts(
    rep: AuditReport, run: Path, metrics_json: dict[str, Any], expected: dict[str, str], name: Callable[[str], str]
) -> None:
    """Every file the run hashed when it finished (``metrics.json["artifacts"]``), and the
    ``metrics.json`` itself against a bench's record of it."""
    want_root = expected.get(keys.METRICS_SHA256)
    if want_root:
        got = sha256_file(run / "metrics.json")
        rep.add(
            "metrics.json sha256 (bench record)",
            name("metrics.json"),
            got == want_root,
            want_root,
            got,
            "" if got == want_root else "the run's summary changed after the bench recorded it",
        )
    artifacts = metrics_json.get(keys.ARTIFACTS)
    if not isinstance(artifacts, dict):
        rep.warn(
            "artifact hashes",
            name("metrics.json"),
            "the run records no artifact hashes (made by an older version): predictions are not verified by hash",
        )
        return
    for rel, want in sorted(artifacts.items()):
        f = run / rel
        if not f.is_file():
            rep.add("artifact sha256", name(rel), False, want, "missing")
            continue
        got = sha256_file(f)
        rep.add(
            "artifact sha256",
            name(rel),
            got == want,
            want,
            got,
            "" if got == want else "changed since the run finished",
        )


def _run_config_hash(cfg: dict[str, Any]) -> str:
    """The identity hash of a recorded RunConfig (rebuilt: runtime fields left out as at write
    time); a config that no longer loads gets a marker that matches no hash."""
    from ..train.checkpoint import run_config_from_json

    try:
        return run_config_from_json({"config": cfg}).hash
    except (InputError, TypeError, ValueError, KeyError) as exc:
        return f"unreadable config ({exc})"


def _result_metrics(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict):
        return entry["metrics"]
    return entry if isinstance(entry, dict) else {}


def _capture(device: str) -> dict[str, Any]:
    """The environment in the training loop's schema (same keys as ``environment.json``)."""
    from ..train.environment import capture_environment

    return dict(capture_environment(device))


def _check_lock(rep: AuditReport, lock: Path, want_sha: str | None, manifest: Any) -> None:
    if not lock.is_file():
        rep.add("lock file", str(lock), False, "present", "missing")
        return
    got = sha256_file(lock)
    if want_sha:
        rep.add(
            "lock file sha256",
            str(lock),
            got == want_sha,
            want_sha,
            got,
            "" if got == want_sha else "the lock file changed",
        )
    data = read_json(lock)
    mh = data.get("manifest_hash") or data.get("manifest_content_hash")
    if manifest is not None and mh:
        rep.add("lock file manifest hash", str(lock), mh == manifest.content_hash(), manifest.content_hash(), mh)


def rerun_and_compare(
    run: Path,
    cfg: dict[str, Any],
    results: dict[str, Any],
    *,
    tolerance: float,
    device: str,
    prefix: str = "",
    store: str | Path | None = None,
    clip_weights: str | Path | None = None,
) -> tuple[list, str]:
    """Train again from the recorded config (same seed; on ``store`` if given, else the recorded
    one) into a temporary run directory; compare every metric of every selection label. Returns
    the comparisons and the rerun's config hash."""
    from ..train.checkpoint import run_config_from_json
    from ..train.run import retrain_from_config

    with tempfile.TemporaryDirectory(prefix="dsan-audit-rerun-") as tmp:
        out = Path(tmp) / run.name
        split = run / keys.VAL_SPLIT_FILE  # a best-on-val run's held-out videos
        retrain_from_config(
            run_config_from_json({"config": cfg}),
            out,
            device=device,
            features=store,
            clip_weights=clip_weights,
            val_split=split if split.is_file() else None,
        )
        new = read_json(out / "metrics.json").get("results", {})
        rerun_hash = str(read_json(out / "config.json").get("hash", ""))
    comps = []
    for label, entry in results.items():
        comps += compare_numbers(
            f"{prefix}{label}",
            _flat_numbers(_result_metrics(entry)),
            _flat_numbers(_result_metrics(new.get(label, {}))),
            tolerance,
        )
    return comps, rerun_hash
