"""The `dsan` Typer application.

Each module in :mod:`dsan_toolkit.cli.commands` defines ``register(app)`` and adds its
commands (or a sub-app for a command group); this module finds them all, so adding a
command group is adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from .. import __version__
from . import commands

app = typer.Typer(
    name="dsan",
    help="dsan_toolkit: weakly-supervised video anomaly detection on CLIP features "
    "(manifests, extraction, DSANet/VadCLIP training, benchmarks, audits).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dsan_toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Weakly-supervised video anomaly detection toolkit."""


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main() -> None:
    """Console-script entry point (click handles usage errors: message + exit code 2)."""
    app(prog_name="dsan")


if __name__ == "__main__":  # pragma: no cover
    main()
