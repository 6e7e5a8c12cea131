"""Shared fixtures. Test data is generated, never downloaded."""

from __future__ import annotations

import os

import pytest

# Keep test runs on the 2-core CI machine predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture()
def cli(tmp_path, monkeypatch):
    """Run the `dsan` CLI in-process; returns a function giving (exit_code, output)."""
    from typer.testing import CliRunner

    from dsan_toolkit.cli.app import app

    runner = CliRunner()
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.output

    return run

