"""An evaluation report: rows of metrics, the model's row beside reference rows from the same run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    name: str
    metrics: dict[str, float | None]  # None: nothing to measure (condiff.evaluation.metrics.flat_area_noise)
    note: str = ""


@dataclass
class Report:
    task: str
    rows: list[Row]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samples: Any = field(default=None, repr=False)  # the model's images, for extra metrics; not in to_dict
    real_row: str | None = None  # the row of other real held-out Nouns (real vs real), for extra metrics

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "settings": self.settings, "notes": self.notes,
                "rows": [{"name": r.name, "note": r.note, **r.metrics} for r in self.rows]}

    def table(self) -> str:
        """A plain-text table; a metric a row does not have shows as '-'."""
        columns = list(dict.fromkeys(key for row in self.rows for key in row.metrics))
        header = ["", *columns, ""]
        lines = [[row.name, *(format_value(row.metrics.get(c)) for c in columns), row.note] for row in self.rows]
        widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
        settings = ", ".join(f"{key} {value}" for key, value in self.settings.items())
        out = [f"{self.task} ({settings})" if settings else self.task]
        for cells in [header, *lines]:
            out.append("  ".join(str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip())
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)


def reports_json(reports: list[Report]) -> str:
    """The reports as `--json` files and a model folder's eval.json hold them."""
    return json.dumps([report.to_dict() for report in reports], indent=2) + "\n"


def fenced_tables(reports: list[Report]) -> str:
    """The reports' tables, each in a Markdown code block, as model cards show them."""
    return "\n\n".join("```\n" + report.table() + "\n```" for report in reports)


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
