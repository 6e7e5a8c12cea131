"""`dsan bench`: train/evaluate a grid of methods x datasets x seeds and report tables."""

from __future__ import annotations

from pathlib import Path

import typer

from ...errors import InputError
from ..base import add_command
from ..errors import console, err_console, user_errors

DEFAULT_OUT = Path("dsan-bench")


def parse_list(text: str, what: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise InputError(f"{what}: empty list")
    return items


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in parse_list(text, "--seeds"))
    except ValueError:
        raise InputError(f"--seeds must be integers separated by commas, got {text!r}") from None


def parse_selections(text: str) -> tuple[str, ...]:
    """``last,best-on-val`` -> the rules; ``all`` -> every rule."""
    from ...bench.jobs import SELECTION_RULES

    return SELECTION_RULES if text.strip() == "all" else parse_list(text, "--select")


def parse_mapping(text: str | None, what: str) -> dict[str, str]:
    """``ucf=A,xd=B`` -> {"ucf": "A", "xd": "B"}."""
    out: dict[str, str] = {}
    for item in parse_list(text, what) if text else ():
        key, sep, val = item.partition("=")
        if not sep or not key or not val:
            raise InputError(f"{what}: expected DATASET=PATH items separated by commas, got {item!r}")
        out[key.strip()] = val.strip()
    return out


@user_errors
def bench_cmd(
    methods: str = typer.Option("dsanet,vadclip,mil,zeroshot", "--methods", "-m", help="Methods, comma-separated."),
    datasets: str = typer.Option("ucf,xd", "--datasets", "-d", help="Datasets (keys of --features), comma-separated."),
    seeds: str = typer.Option(
        "0,1,2,3,4", "--seeds", help="Seeds, comma-separated (mean ± std and a 95% interval over them)."
    ),
    features: str = typer.Option(None, "--features", "-f", help="Feature store per dataset: ucf=STORE,xd=STORE."),
    report: str = typer.Option(
        "md", "--report", help="Report format: md (stdout), html (self-contained page), csv or json."
    ),
    out: Path = typer.Option(
        DEFAULT_OUT, "--out", "-o", help="Bench directory (runs, bench.json, reports); reruns resume."
    ),
    report_file: Path = typer.Option(None, "--report-file", help="Also write the report to this file."),
    preset: str = typer.Option(
        None, "--preset", help="Preset for every method (default: the one named like the dataset)."
    ),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Override the presets' epochs."),
    select: str = typer.Option(
        "last",
        "--select",
        help="Selection rules, comma-separated or 'all': last, best-on-val (honest), best-on-test (the papers').",
    ),
    map_protocol: str = typer.Option(
        "official", "--map-protocol", help="Detection mAP protocol of the tables: official or corrected."
    ),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=0, help="Video-level bootstrap resamples per run for intervals (0: none)."
    ),
    bootstrap_seed: int = typer.Option(0, "--bootstrap-seed", help="Seed of the bootstrap resampling."),
    ablation: str = typer.Option(None, "--ablation", help="Run a method's component ablations (e.g. dsanet)."),
    lock: str = typer.Option(
        None, "--lock", help="Lock file per dataset (from dsan verify): ucf=FILE; hashed for audits."
    ),
    device: str = typer.Option("cpu", "--device", help="Device for training and evaluation (cpu, cuda, cuda:1)."),
    jobs: int = typer.Option(1, "--jobs", help="Jobs trained at once on this machine (worker processes)."),
    devices: str = typer.Option(
        None, "--devices", help="One device per concurrent job, round robin: cuda:0,cuda:1 (replaces --device)."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local (this machine) or ray (one Ray task per job; pip install '.[ray]')."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
    clip_weights: Path = typer.Option(
        None, "--clip-weights", help="Local CLIP weight file for the text encoder (offline)."
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="Training precision of the trainable methods: fp32 (official), bf16, fp16 (CUDA)."
    ),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw figures in the HTML report."),
    published: bool = typer.Option(False, "--published", help="Print the published reference rows and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A line per job and per epoch."),
) -> None:
    """Benchmark methods on feature stores: mean ± std tables against the published numbers.

    Trains and evaluates what is missing, reuses finished runs with the same config hash,
    resumes an interrupted bench, and prints the tables (AUC/AP of both branches, AUC on
    anomalous videos, false alarms, fine-grained mAP@0.1..0.5 and mean, time, parameters,
    selection rule, published value and delta where the protocol matches), then the evaluation
    protocol: the selection rules side by side, the selection gap, video-bootstrap intervals,
    per-class AUC and a method-vs-method matrix of paired differences.

    Examples:
      dsan bench --methods dsanet,vadclip --datasets ucf,xd --features ucf=ucf.zarr,xd=xd.zarr
      dsan bench --methods dsanet,vadclip --datasets ucf --features ucf=ucf.zarr --select all --report html
      dsan bench --datasets ucf --features ucf=ucf.zarr --report html --out bench-ucf
      dsan bench --ablation dsanet --datasets xd --features xd=xd.zarr --seeds 0,1,2
      dsan bench --methods dsanet,vadclip,mil --datasets synth --features synth=s.zarr --preset tiny
      dsan bench --datasets ucf --features ucf=ucf.zarr --jobs 4 --devices cuda:0,cuda:1,cuda:2,cuda:3
      dsan bench --datasets ucf --features ucf=/shared/ucf.zarr --out /shared/bench --executor ray --device cuda
      dsan bench --published
    """
    from ...bench.executors import make_executor
    from ...bench.report import REPORT_FORMATS, markdown_table, render
    from ...bench.runner import BenchConfig, run_bench, write_reports
    from ...utils.atomic import atomic_write_text

    if published:
        from ...bench.table import footnotes_for, published_table

        table = published_table().fillna("–")
        typer.echo("Published values (%)\n\n" + markdown_table(table), nl=False)
        for note in footnotes_for([table]):
            typer.echo(f"\n{note}")
        return

    device_list = parse_list(devices, "--devices") if devices is not None else None
    runner = make_executor(executor, jobs=jobs, devices=device_list, address=address)
    if report not in REPORT_FORMATS:
        raise InputError(f"--report must be one of {', '.join(REPORT_FORMATS)}, not {report!r}")
    from ...utils.paths import input_file, output_file

    if report_file is not None:
        output_file(report_file, "--report-file")
    locks = {k: input_file(v, f"--lock {k}=") for k, v in parse_mapping(lock, "--lock").items()}
    if clip_weights is not None:
        input_file(clip_weights, "--clip-weights")
    feats = parse_mapping(features, "--features")
    if not feats:
        raise InputError("--features is required: DATASET=STORE for each dataset, e.g. --features ucf=ucf.zarr")
    for ds, path in feats.items():
        if not Path(path).exists():
            raise InputError(f"feature store for {ds!r} not found: {path}")
    cfg = BenchConfig(
        methods=parse_list(methods, "--methods"),
        datasets=parse_list(datasets, "--datasets"),
        seeds=parse_seeds(seeds),
        features={k: str(Path(v).resolve()) for k, v in feats.items()},
        preset=preset,
        epochs=epochs,
        selections=parse_selections(select),
        map_protocol=map_protocol,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        device=device_list[0] if device_list else device,
        ablation=ablation,
        clip_weights=str(clip_weights.resolve()) if clip_weights else None,
        precision=precision,
        lock={k: str(v.resolve()) for k, v in locks.items()},
    )
    say = (lambda m: err_console.print(f"[dim]bench[/dim] {m}")) if progress else None
    result = run_bench(cfg, out, executor=runner, progress=say, figures=figures)
    paths = write_reports(result, sorted({report, "md", "csv"}))
    text = render(result.report, report)
    if report_file:
        atomic_write_text(report_file, text)
    if report == "html":
        console.print(f"HTML report: {paths['html'].resolve()}")
    else:
        typer.echo(text, nl=False)
    err_console.print(f"bench: {result.trained} run(s) trained, {result.reused} reused; directory {out.resolve()}")


def register(app: typer.Typer) -> None:
    add_command(app, "bench", bench_cmd)
