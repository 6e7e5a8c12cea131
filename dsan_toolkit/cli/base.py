"""The pieces every command module builds on: the command classes and the app factory.

``--help`` renders boolean options as flags (typer's default shows a ``<bool>`` type after
``--overwrite`` and ``--help``); defaults are shown. The CLI grammar (one short flag per
concept, one word per action) is documented in docs/cli.md and checked by tests/test_cli_grammar.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import typer
from typer.core import TyperCommand, TyperGroup


def _flags_as_flags(params: list[click.Parameter]) -> list[click.Parameter]:
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""  # no type column for a flag
    return params


class DsanCommand(TyperCommand):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _flags_as_flags(super().get_params(ctx))


class DsanGroup(TyperGroup):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _flags_as_flags(super().get_params(ctx))


def new_app(**kwargs: Any) -> typer.Typer:
    """A (sub-)application with the toolkit's settings."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(
        cls=DsanGroup, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich", **kwargs
    )


def add_command(app: typer.Typer, name: str, fn: Callable[..., Any]) -> None:
    app.command(name, cls=DsanCommand)(fn)
