"""Audit results: named checks, numeric comparisons, and the markdown audit report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import keys
from ..errors import InputError
from .environment import EnvDiff

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclass(frozen=True)
class Check:
    """One verification: what was checked (``name``), on which artifact, and the outcome."""

    name: str
    artifact: str
    status: str
    expected: str = ""
    actual: str = ""
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass(frozen=True)
class NumberComparison:
    """A recorded number against a recomputed (or re-trained) one."""

    where: str
    key: str
    recorded: float | None
    actual: float | None
    tolerance: float

    @property
    def diff(self) -> float:
        if self.recorded is None and self.actual is None:
            return 0.0
        if self.recorded is None or self.actual is None:
            return math.inf
        if math.isnan(self.recorded) and math.isnan(self.actual):
            return 0.0
        return abs(self.recorded - self.actual)

    @property
    def exact(self) -> bool:
        return self.diff == 0.0

    @property
    def status(self) -> str:
        return OK if self.diff <= self.tolerance else FAIL

    @property
    def verdict(self) -> str:
        if self.exact:
            return "exact"
        if self.diff <= self.tolerance:
            return f"drift {self.diff:.3g} (within {self.tolerance:g})"
        return f"MISMATCH {self.diff:.3g} (tolerance {self.tolerance:g})"


def compare_numbers(
    where: str, recorded: dict[str, Any], actual: dict[str, Any], tolerance: float, keys: Iterable[str] | None = None
) -> list[NumberComparison]:
    """Compare every numeric key of ``recorded`` (or ``keys``) with ``actual``."""
    out = []
    for k in sorted(keys if keys is not None else recorded):
        r, a = recorded.get(k), actual.get(k)
        if not isinstance(r, (int, float)) and r is not None:
            continue
        out.append(
            NumberComparison(where, k, None if r is None else float(r), None if a is None else float(a), tolerance)
        )
    return out


@dataclass
class AuditReport:
    target: str
    kind: str  # "run" | "bench"
    checks: list[Check] = field(default_factory=list)
    numbers: list[NumberComparison] = field(default_factory=list)
    rerun: list[NumberComparison] = field(default_factory=list)
    env_diffs: list[EnvDiff] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, artifact: str, ok: bool, expected: Any = "", actual: Any = "", detail: str = "") -> None:
        self.checks.append(Check(name, artifact, OK if ok else FAIL, _short(expected), _short(actual), detail))

    def skip(self, name: str, artifact: str, detail: str) -> None:
        self.checks.append(Check(name, artifact, SKIP, detail=detail))

    def warn(self, name: str, artifact: str, detail: str) -> None:
        self.checks.append(Check(name, artifact, WARN, detail=detail))

    @property
    def problems(self) -> list[str]:
        """One line per failed check or mismatching number, naming the artifact."""
        out = [
            f"{c.name}: {c.artifact} (expected {c.expected}, found {c.actual}){' - ' + c.detail if c.detail else ''}"
            for c in self.checks
            if c.failed
        ]
        out += [
            f"{n.where}: {n.key} recorded {_fmt(n.recorded)}, recomputed {_fmt(n.actual)}"
            for n in self.numbers
            if n.status == FAIL
        ]
        out += [
            f"rerun {n.where}: {n.key} recorded {_fmt(n.recorded)}, retrained {_fmt(n.actual)} ({n.verdict})"
            for n in self.rerun
            if n.status == FAIL
        ]
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_markdown(self) -> str:
        lines = [f"# Audit of `{self.target}` ({self.kind})", ""]
        verdict = "**PASS**: every check matched." if self.ok else f"**FAIL**: {len(self.problems)} problem(s)."
        lines += [verdict, ""]
        if self.problems:
            lines += ["## Problems", ""] + [f"- {p}" for p in self.problems] + [""]
        lines += [
            "## Artifact checks",
            "",
            "| status | check | artifact | expected | found | detail |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {c.status} | {c.name} | `{c.artifact}` | {c.expected} | {c.actual} | {c.detail} |" for c in self.checks
        ]
        lines += ["", "## Metrics recomputed from the stored predictions", ""]
        lines += _number_table(self.numbers, "recomputed")
        if self.rerun:
            lines += ["", "## Re-training with the same config and seed", ""]
            lines += _number_table(self.rerun, "retrained")
        lines += ["", "## Environment", ""]
        if self.env_diffs:
            lines += ["| key | recorded | now | can change numbers |", "| --- | --- | --- | --- |"]
            lines += [
                f"| {d.key} | {d.recorded} | {d.current} | {'yes' if d.numeric else 'no'} |" for d in self.env_diffs
            ]
        else:
            lines.append("Same as recorded (versions, device).")
        if self.environment:
            lines += [
                "",
                "Audited on: "
                + ", ".join(
                    f"{k}={self.environment.get(k)}" for k in ("torch", "numpy", "cuda", "device", "device_name")
                ),
            ]
        return "\n".join(lines) + "\n"


def _number_table(nums: list[NumberComparison], what: str) -> list[str]:
    if not nums:
        return ["(none)"]
    out = [f"| where | metric | recorded | {what} | verdict |", "| --- | --- | ---: | ---: | --- |"]
    out += [f"| {n.where} | {n.key} | {_fmt(n.recorded)} | {_fmt(n.actual)} | {n.verdict} |" for n in nums]
    return out


def _fmt(v: float | None) -> str:
    return "missing" if v is None else f"{v:.6g}"


def _short(v: Any) -> str:
    s = "" if v is None else str(v)
    return s[:16] + "…" if len(s) > 40 else s


def check_val_split(rep: AuditReport, run: Path, cfg: dict[str, Any], name: Callable[[str], str]) -> None:
    """A best-on-val run: its ``val_split.json`` is the split its config records (by hash)."""
    want = (cfg.get(keys.VAL_SPLIT) or {}).get("hash")
    if not want:
        return
    from ..manifest.valsplit import read_val_split

    path = run / keys.VAL_SPLIT_FILE
    try:
        got = read_val_split(path).hash
    except InputError as exc:
        rep.add("validation split", name(keys.VAL_SPLIT_FILE), False, want, "unreadable", str(exc))
        return
    rep.add("validation split", name(keys.VAL_SPLIT_FILE), got == want, want, got)
