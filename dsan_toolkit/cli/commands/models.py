"""`dsan models`: the registered methods and their presets."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ..base import add_command
from ..errors import console, user_errors


@user_errors
def models_cmd(
    method: str = typer.Argument(None, help="Show one method's presets field by field."),
    preset: str = typer.Option(None, "--preset", help="With METHOD: print this preset as JSON."),
) -> None:
    """List the methods (dsanet, vadclip, mil, zeroshot) and their presets.

    Official presets (ucf, xd) equal the authors' option files; `tiny` is a small
    non-official preset for CPU tests and the demo.

    Examples:
      dsan models
      dsan models dsanet
      dsan models vadclip --preset xd
    """
    from ...config import config_hash, to_dict
    from ...models.registry import get_method, list_methods

    if method is None:
        table = Table(title="methods")
        for col in ("method", "trainable", "presets (official marked *)"):
            table.add_column(col)
        for name in list_methods():
            m = get_method(name)
            presets = ", ".join(f"{p}{'*' if getattr(v, 'official', False) else ''}" for p, v in m.presets.items())
            table.add_row(name, "yes" if m.trainable else "no", presets)
        console.print(table)
        return
    m = get_method(method)
    if preset is not None:
        cfg = m.get_preset(preset)
        console.print_json(json.dumps({"hash": config_hash(cfg), "preset": to_dict(cfg)}))
        return
    rows = {name: to_dict(p) for name, p in m.presets.items()}
    fields = [k for k in next(iter(rows.values()), {}) if k != "type"]
    table = Table(title=f"{method} presets")
    table.add_column("field")
    for name in rows:
        table.add_column(name, justify="right")
    for f in fields:
        table.add_row(f, *(str(rows[n].get(f, "")) for n in rows))
    console.print(table)


def register(app: typer.Typer) -> None:
    add_command(app, "models", models_cmd)
