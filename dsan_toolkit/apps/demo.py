"""`dsan demo`: the whole toolkit on data it makes itself, in a few minutes on 2 CPU cores.

Steps (each resumable: rerunning the demo in the same folder reuses what is finished):

1. generate a synthetic WS-VAD dataset of real H.264 videos (``data/``) and its manifest: 16 + 16
   training videos, and the 4 + 6 test videos of the default :class:`SynthConfig` (unchanged);
2. verify it and write its lock file (``data/lock.json``);
3. extract features with the tiny random-init CLIP backbone (``features.zarr``, centre crop);
4. ``dsan bench``: train and evaluate dsanet, vadclip and the cheap baselines (mil, zero-shot)
   with the non-official ``tiny`` presets (``bench/``), markdown + HTML reports;
5. ``dsan audit`` of the bench directory (``bench/audit.md``).

The data is synthetic and the backbone random: the numbers test the pipeline, not the methods.
The random backbone's features share one dominant direction; the ``tiny`` presets therefore
standardise their inputs with training-split statistics (``input_norm``, NOT official; see
:mod:`dsan_toolkit.models.input_norm`), which is what lets the trained methods beat chance here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from ..bench.report import BenchReport

DEMO_METHODS: tuple[str, ...] = ("dsanet", "vadclip", "mil", "zeroshot")
DEMO_TRAIN_VIDEOS = 16  # normal and anomalous training videos each
BANNER = (
    "dsan demo: SYNTHETIC videos and a RANDOMLY INITIALISED tiny CLIP backbone (nothing is downloaded). "
    "The numbers below test the pipeline end to end; they say nothing about DSANet or VadCLIP's accuracy."
)


def compact_markdown(report: BenchReport) -> str:
    """The headline tables (metrics in percent, as in every report table) with the footnotes
    they use; the details tables are in report.md and report.html."""
    from ..bench.report import markdown_table
    from ..bench.table import footnotes_for

    parts = [f"> {n}\n" for n in report.notes[:1]]
    for title, df in report.tables:
        parts.append(f"\n## {title}\n\n{markdown_table(df)}")
    notes = footnotes_for(df for _, df in report.tables)
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return "".join(parts)


@dataclass
class DemoResult:
    out: Path
    markdown: str
    html: Path
    report_md: Path
    audit_md: Path
    audit_ok: bool
    problems: list[str]
    seconds: float
    methods: tuple[str, ...]
    skipped_methods: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    score_hint: str = ""


def demo_synth_config(seed: int = 0):  # noqa: ANN201 - SynthConfig, imported lazily
    from ..datasets.synth import SynthConfig

    # 16 + 16 training videos (two paired batches of the tiny presets per epoch) and the default
    # test split, 4 + 6 videos: the test videos are exactly those of SynthConfig(seed=seed), since each
    # video is seeded from (seed, split, kind, index) and the train counts do not enter.
    return SynthConfig(seed=seed, train_normal=DEMO_TRAIN_VIDEOS, train_anomalous=DEMO_TRAIN_VIDEOS)


def run_demo(
    out: str | Path,
    *,
    methods: Sequence[str] = DEMO_METHODS,
    seeds: Sequence[int] = (0,),
    device: str = "cpu",
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    from ..audit.bench import audit_bench
    from ..bench.runner import BenchConfig, run_bench, write_reports
    from ..datasets.synth import make_synthetic_dataset
    from ..datasets.verify import verify_dataset
    from ..extract import RunOptions, extract_features, tiny_extract_config
    from ..models import list_methods
    from ..utils.atomic import atomic_write_text
    from ..utils.paths import output_folder

    say = progress or (lambda _m: None)
    known = set(list_methods())
    use = tuple(m for m in methods if m in known)
    skipped = tuple(m for m in methods if m not in known)
    if not use:
        raise InputError(f"none of the demo methods {list(methods)} is available; methods: {sorted(known)}")
    out = output_folder(out)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    say("1/5 generating the synthetic dataset (real H.264 videos, class-specific events)")
    t = time.perf_counter()
    data = out / "data"
    manifest = make_synthetic_dataset(
        data, demo_synth_config(), workers=2, progress=lambda vid: say(f"    video {vid}")
    )
    timings["synth"] = time.perf_counter() - t
    say(f"    {len(manifest)} videos in {data} ({timings['synth']:.1f} s)")

    say("2/5 verifying the videos and writing the lock file")
    t = time.perf_counter()
    lock = data / "lock.json"
    rep = verify_dataset(manifest, data, lock_path=lock)
    if not rep.ok:
        raise InputError(f"the generated videos do not verify: {rep.summary()}")
    timings["verify"] = time.perf_counter() - t
    say(f"    {rep.summary()} ({timings['verify']:.1f} s)")

    say("3/5 extracting features with the tiny random-init CLIP backbone")
    t = time.perf_counter()
    store = out / "features.zarr"
    n_done = [0]

    def on_event(kind: str, d: dict) -> None:
        if kind == "video":
            n_done[0] += 1
            say(f"    [{n_done[0]}/{len(manifest)}] {d.get('id')}: T={d.get('T')} {d.get('status')}")

    res = extract_features(manifest, data, store, tiny_extract_config(), RunOptions(device=device), on_event=on_event)
    if not res.ok:
        raise InputError(f"feature extraction failed for {len(res.failed)} video(s): {res.failed[:3]}")
    timings["extract"] = time.perf_counter() - t
    say(f"    store {store} ({timings['extract']:.1f} s)")

    say(f"4/5 bench: {', '.join(use)} (tiny presets), seeds {','.join(map(str, seeds))}")
    t = time.perf_counter()
    cfg = BenchConfig(
        methods=use,
        datasets=("synth",),
        seeds=tuple(seeds),
        features={"synth": str(store.resolve())},
        preset="tiny",
        epochs=epochs,
        device=device,
        lock={"synth": str(lock.resolve())},
    )
    bench = run_bench(cfg, out / "bench", progress=lambda m: say(f"    {m}"))
    paths = write_reports(bench, ("md", "html", "csv", "json"))
    timings["bench"] = time.perf_counter() - t

    say("5/5 auditing the bench (hashes, recomputed metrics, environment)")
    t = time.perf_counter()
    audit = audit_bench(out / "bench", progress=lambda m: say(f"    {m}"))
    audit_md = atomic_write_text(out / "bench" / "audit.md", audit.to_markdown())
    timings["audit"] = time.perf_counter() - t
    hint = ""
    trainable = [r for r in bench.rows if r.selection != "none"]
    test_video = next((v for v in manifest.videos if v.split == "test" and v.segments), None)
    if trainable and test_video is not None:
        hint = f"dsan score {data / test_video.path} --run {out / 'bench' / trainable[0].run_dir}"
    return DemoResult(
        score_hint=hint,
        out=out,
        markdown=compact_markdown(bench.report),
        html=paths["html"],
        report_md=paths["md"],
        audit_md=audit_md,
        audit_ok=audit.ok,
        problems=audit.problems,
        seconds=time.perf_counter() - t_all,
        methods=use,
        skipped_methods=skipped,
        timings=timings,
    )
