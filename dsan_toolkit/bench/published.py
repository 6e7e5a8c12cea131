"""Published reference numbers, kept as data (``published.json`` next to this module).

Each :class:`PublishedRow` is one method on one dataset as a paper reports it: metrics in
percent, the source (paper, table), the backbone and features, the model-selection rule, and
which values were confirmed against a public copy of the source when the file was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError

PUBLISHED_FILE = Path(__file__).resolve().parent / "published.json"

# The features every like-for-like comparison needs: the VadCLIP release (CLIP ViT-B/16,
# 10-crop, one row per 16-frame snippet) or an extraction that reproduces it.
REFERENCE_FEATURES = "vadclip-release"
REFERENCE_BACKBONE = "CLIP ViT-B/16"


@dataclass(frozen=True)
class PublishedRow:
    method: str
    name: str
    dataset: str
    source: str
    table: str
    backbone: str
    features: str
    selection: str
    metrics: dict[str, float]
    confirmed: tuple[str, ...] = ()
    remarks: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def is_confirmed(self, metric: str) -> bool:
        return metric in self.confirmed

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PublishedRow:
        known = {
            "method",
            "name",
            "dataset",
            "source",
            "table",
            "backbone",
            "features",
            "selection",
            "metrics",
            "confirmed",
            "remarks",
        }
        return cls(
            method=str(d["method"]),
            name=str(d.get("name", d["method"])),
            dataset=str(d["dataset"]),
            source=str(d["source"]),
            table=str(d["table"]),
            backbone=str(d["backbone"]),
            features=str(d["features"]),
            selection=str(d.get("selection", "unknown")),
            metrics={str(k): float(v) for k, v in d["metrics"].items() if v is not None},
            confirmed=tuple(str(x) for x in d.get("confirmed", ())),
            remarks=str(d.get("remarks", "")),
            extra={k: v for k, v in d.items() if k not in known},
        )


def load_published(path: str | Path | None = None) -> tuple[PublishedRow, ...]:
    """All published rows (the package's file, or another file of the same schema)."""
    return _load(str(path or PUBLISHED_FILE))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[PublishedRow, ...]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return tuple(PublishedRow.from_dict(r) for r in data["rows"])
    except FileNotFoundError:
        raise InputError(f"published-results file not found: {path}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"published-results file {path} is malformed: {exc}") from None


def published_for(method: str, dataset: str, rows: tuple[PublishedRow, ...] | None = None) -> PublishedRow | None:
    """The paper's own row for a method on a dataset (``None`` when it was never published)."""
    for row in rows if rows is not None else load_published():
        if row.method == method and row.dataset == dataset:
            return row
    return None
