"""Exceptions that mean "the user asked for something that cannot be done".

The CLI turns every :class:`DsanError` into a short message and a non-zero exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DsanError(Exception):
    """A user-facing error: bad input, missing file, unknown name, failed check."""

    exit_code: int = 2


class InputError(DsanError):
    """A file, option or value given by the user is missing or malformed."""


class ManifestError(InputError):
    """A manifest (or a file used to build one) is invalid.

    ``problems`` lists every problem found, each already located (file, line, reason).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            shown = "\n".join(f"  - {p}" for p in self.problems[:20])
            more = len(self.problems) - 20
            if more > 0:
                shown += f"\n  ... and {more} more"
            message = f"{message}\n{shown}"
        super().__init__(message)


class UndefinedMetric(InputError):
    """A metric is undefined for the given labels (e.g. AUC or AP when the ground truth has
    only one class); evaluation reports such a metric as ``None``."""


class CheckFailed(DsanError):
    """A verification (verify, store check, audit) found problems; details were reported."""

    exit_code = 1
