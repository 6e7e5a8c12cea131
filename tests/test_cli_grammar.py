"""The CLI grammar (docs/cli.md), checked by walking every command's options."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
import typer

from dsan_toolkit.cli.app import app

# one short flag per concept, the same everywhere (docs/cli.md)
SHORT = {
    "--dataset": "-d",
    "--datasets": "-d",
    "--root": "-r",
    "--out": "-o",
    "--features": "-f",
    "--workers": "-j",
    "--method": "-m",
    "--methods": "-m",
}
# commands that can run for minutes: each has --progress/--no-progress
LONG = {
    "demo",
    "download",
    "verify",
    "synth",
    "extract",
    "train",
    "eval",
    "bench",
    "audit",
    "score",
    "import-features",
    "export-features",
    "compare-features",
    "manifest create",
    "store check",
}
# words that must not appear as option names (one word per action)
BANNED = {"--force": "--overwrite", "--store": "--features", "--manifest": "--dataset"}


def _commands() -> dict[str, Any]:
    """Every leaf command by its full name (typer's own click objects)."""
    root = typer.main.get_command(app)
    out: dict[str, Any] = {}

    def walk(cmd: Any, prefix: str) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            out[prefix] = cmd

    walk(root, "")
    return out


COMMANDS = _commands()


def _options(cmd: Any) -> list[Any]:
    ctx = cmd.context_class(cmd)
    return [p for p in cmd.get_params(ctx) if p.param_type_name == "option"]


def test_every_command_is_walked():
    assert {"demo", "train", "eval", "bench", "audit", "extract", "verify", "store info", "manifest create"} <= set(
        COMMANDS
    )
    assert LONG <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_short_flags_and_words_are_the_same_everywhere(name):
    for opt in _options(COMMANDS[name]):
        longs = [o for o in opt.opts if o.startswith("--")]
        shorts = [o for o in opt.opts if not o.startswith("--")]
        for long in longs:
            assert long not in BANNED, f"{name}: {long} (say {BANNED[long]})"
            if long in SHORT:
                assert shorts == [SHORT[long]], f"{name}: {long} needs {SHORT[long]}, has {shorts}"
        for short in shorts:  # a short flag means one thing only
            owners = [k for k, v in SHORT.items() if v == short]
            assert not owners or set(longs) & set(owners), f"{name}: {short} is for {owners}, used by {longs}"
        if "--report" in longs:
            assert name == "bench", f"{name}: --report is the bench's report format (a report file is --report-file)"


@pytest.mark.parametrize("name", sorted(LONG))
def test_long_commands_have_progress_switches(name):
    opts = {o: opt for opt in _options(COMMANDS[name]) for o in (*opt.opts, *opt.secondary_opts)}
    assert "--progress" in opts and "--no-progress" in opts, name
    assert opts["--progress"].default is True


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_renders_flags_as_flags_with_defaults(name, cli):
    code, text = cli(*name.split(), "--help")
    assert code == 0, text
    assert "<bool>" not in text, f"{name}: a flag rendered with a type"
    for opt in _options(COMMANDS[name]):
        if opt.is_flag or opt.default in (None, ()) or opt.hidden or not opt.show_default:
            continue
        long = next(o for o in opt.opts if o.startswith("--"))
        assert long in text, (name, long)
    # an option with a default shows it
    with_default = [
        o for o in _options(COMMANDS[name]) if not o.is_flag and o.default not in (None, ()) and not o.required
    ]
    if with_default:
        assert "[default:" in text, name


def test_version_and_help_do_not_load_torch():
    """``dsan --version`` / ``--help`` import no torch (measured: about 0.4 s on 2 cores)."""
    code = (
        "import sys, time; t = time.perf_counter(); sys.argv = ['dsan', '--version']\n"
        "from dsan_toolkit.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    env = dict(os.environ)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    version, loaded = done.stdout.splitlines()
    assert version.startswith("dsan_toolkit ")
    assert loaded.split()[0] == "False", "torch imported by dsan --version"
    assert time.perf_counter() - t0 < 30  # a generous bound; the speed itself is in docs/cli.md
    code = code.replace("'--version'", "'--help'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "train" in done.stdout and done.stdout.splitlines()[-1].split()[0] == "False"


def test_paths_are_not_wrapped_when_piped(tmp_path):
    """A long path in a message stays on one line in a log, whatever COLUMNS says."""
    deep = tmp_path / ("a-very-long-folder-name-" * 4) / "missing-feature-store.zarr"
    env = dict(os.environ, COLUMNS="40")
    done = subprocess.run(
        [sys.executable, "-m", "dsan_toolkit.cli.app", "store", "info", str(deep)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert any(str(deep) in line for line in done.stderr.splitlines()), done.stderr
