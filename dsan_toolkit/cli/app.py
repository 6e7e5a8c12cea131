"""The `dsan` Typer application.

Commands are registered explicitly, in the order ``dsan --help`` lists them; each module of
:mod:`dsan_toolkit.cli.commands` defines ``register(app)``. Command modules import only typer
and rich at import time (the library is imported inside the commands), so ``dsan --help`` and
``dsan --version`` answer without loading torch.
"""

from __future__ import annotations

import typer

from .. import __version__
from .base import new_app
from .commands import (
    audit,
    bench,
    datasets,
    demo,
    download,
    extract,
    features,
    models,
    score,
    store,
    synth,
    train,
    verify,
)

COMMAND_MODULES = (
    demo,
    datasets,
    download,
    verify,
    synth,
    extract,
    store,
    features,
    models,
    train,
    bench,
    audit,
    score,
)

app = new_app(
    name="dsan",
    help="dsan_toolkit: weakly-supervised video anomaly detection on CLIP features "
    "(manifests, extraction, DSANet/VadCLIP training, benchmarks, audits).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dsan_toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Weakly-supervised video anomaly detection toolkit."""


for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """Console-script entry point (click handles usage errors: message + exit code 2)."""
    app(prog_name="dsan")


if __name__ == "__main__":  # pragma: no cover
    main()
