"""The bench grid: its config, its jobs (one run each) and the DSANet ablation rows."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ..config import config_hash, optional_field, register_config, runtime_field
from ..errors import InputError

# The model-selection rules a bench can run (on the same seeds), honest ones first.
# ``best-on-test`` is the papers' protocol (the official loops pick, and reload, the best
# checkpoint on the test set); ``best-on-val`` picks on a validation split carved from training.
SELECTION_RULES: tuple[str, ...] = ("last", "best-on-val", "best-on-test")
PAPER_RULE = "best-on-test"

# The DSANet components the paper ablates, as preset switches (name -> preset field).
ABLATION_COMPONENTS: dict[str, dict[str, str]] = {
    "dsanet": {
        "normality": "use_normality",
        "event_background": "use_event_background",
        "text_adapter": "use_text_adapter",
        "refinement": "use_refinement",
    },
}


@register_config
@dataclass(frozen=True)
class BenchJob:
    """One run of the grid."""

    method: str
    dataset: str
    features: str = runtime_field()  # the store's path; its identity is store_hash
    preset: str
    seed: int
    select: str = "last"
    epochs: int | None = None
    ablation: str = "all"
    overrides: tuple[tuple[str, Any], ...] = ()
    device: str = runtime_field("cpu")
    store_hash: str = ""
    manifest_hash: str = ""  # the store's embedded manifest (ground truth): another manifest is another job
    clip_weights: str | None = runtime_field(None)  # local CLIP file for the text encoder (offline machines)
    precision: str = optional_field("fp32")  # training precision (fp32 jobs keep their earlier hashes)

    @property
    def key(self) -> str:
        """The job's identity hash (paths and the device are runtime fields)."""
        return config_hash(self)

    @property
    def run_name(self) -> str:
        abl = "" if self.ablation == "all" else f"-{self.ablation}"
        return f"{self.dataset}/{self.method}{abl}-{self.preset}-s{self.seed}-{self.key[:8]}"


@register_config
@dataclass(frozen=True)
class BenchConfig:
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    features: dict[str, str] = runtime_field()  # dataset -> store path (the jobs hold the stores' hashes)
    preset: str | None = None  # None: the preset named like the dataset (ucf, xd)
    epochs: int | None = None
    selections: tuple[str, ...] = ("last",)  # rules of SELECTION_RULES; one job per rule and seed
    device: str = runtime_field("cpu")
    ablation: str | None = None  # a method name: run its component ablations
    lock: dict[str, str] = runtime_field(default_factory=dict)  # dataset -> lock file (verify; hashed per job)
    clip_weights: str | None = runtime_field(None)
    map_protocol: str = "official"  # detection-mAP protocol of the tables (dsan_toolkit.eval)
    bootstrap: int = 1000  # video-level bootstrap resamples per run (0: no intervals)
    bootstrap_seed: int = 0
    precision: str = optional_field("fp32")  # training precision of the trainable methods' jobs


def job_rules(method: str, selections: tuple[str, ...]) -> tuple[str, ...]:
    """The selection rules a method runs under: a training-free method has nothing to select
    (one ``last`` job whatever the rules)."""
    from ..models import get_method

    return selections if get_method(method).trainable else ("last",)


def preset_for(method: str, dataset: str, preset: str | None) -> str:
    from ..models import get_method

    m = get_method(method)
    if preset:
        if preset not in m.presets:
            raise InputError(f"method {method!r} has no preset {preset!r}; presets: {', '.join(sorted(m.presets))}")
        return preset
    if dataset in m.presets:
        return dataset
    raise InputError(
        f"method {method!r} has no preset named {dataset!r}; pass --preset (one of {', '.join(sorted(m.presets))})"
    )


def ablation_overrides(method: str) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """All components on, then each component off in turn (the paper's ablation rows)."""
    comps = ABLATION_COMPONENTS.get(method)
    if comps is None:
        raise InputError(f"no ablation defined for {method!r}; ablations exist for: {', '.join(ABLATION_COMPONENTS)}")
    rows = [("all", tuple((f, True) for f in comps.values()))]
    for name, fld in comps.items():
        rows.append((f"no-{name}", tuple((f, f != fld) for f in comps.values())))
    return rows


def expand_jobs(cfg: BenchConfig, store_hashes: dict[str, tuple[str, str]]) -> list[BenchJob]:
    """The bench grid as jobs (ablation: one method, every component setting)."""
    from ..models import get_method

    jobs: list[BenchJob] = []
    methods = (cfg.ablation,) if cfg.ablation else cfg.methods
    for dataset in cfg.datasets:
        for method in methods:
            preset = preset_for(method, dataset, cfg.preset)
            variants = ablation_overrides(method) if cfg.ablation else [("all", ())]
            for seed, rule, (abl, ov) in itertools.product(cfg.seeds, job_rules(method, cfg.selections), variants):
                job = BenchJob(
                    method=method,
                    dataset=dataset,
                    features=cfg.features[dataset],
                    preset=preset,
                    seed=seed,
                    select=rule,
                    epochs=cfg.epochs,
                    ablation=abl,
                    overrides=ov,
                    device=cfg.device,
                    store_hash=store_hashes[dataset][0],
                    manifest_hash=store_hashes[dataset][1],
                    clip_weights=cfg.clip_weights,
                    precision=cfg.precision if get_method(method).trainable else "fp32",
                )
                jobs.append(job)
    return jobs


def check_config(cfg: BenchConfig) -> None:
    missing = [d for d in cfg.datasets if d not in cfg.features]
    if missing:
        raise InputError(f"no feature store for dataset(s) {', '.join(missing)}: pass --features {missing[0]}=STORE")
    if not cfg.seeds:
        raise InputError("at least one seed is needed (--seeds 0,1,2)")
    if not cfg.methods and not cfg.ablation:
        raise InputError("no method given (--methods dsanet,vadclip,mil,zeroshot)")
    bad = [r for r in cfg.selections if r not in SELECTION_RULES]
    if bad or not cfg.selections or len(set(cfg.selections)) != len(cfg.selections):
        raise InputError(
            f"--select takes distinct rules among {', '.join(SELECTION_RULES)} (comma-separated, or 'all'); "
            f"got {', '.join(cfg.selections) or 'none'}"
        )
    if cfg.bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 (off) or a number of resamples, not {cfg.bootstrap}")
    from ..eval import MAP_PROTOCOLS
    from ..train.step import PRECISIONS

    if cfg.precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision!r}")

    if cfg.map_protocol not in MAP_PROTOCOLS:
        raise InputError(f"--map-protocol must be one of {', '.join(MAP_PROTOCOLS)}, not {cfg.map_protocol!r}")
    from ..models import list_methods

    for m in (*cfg.methods, *([cfg.ablation] if cfg.ablation else [])):
        if m not in list_methods():
            raise InputError(f"unknown method {m!r}; methods: {', '.join(list_methods())}")
