"""What every section of the run report reads (``ReportView``), and the HTML they share."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livecalc.ops._compare import compare_records
from livecalc.ops.labels import (
    Kind,
    MetricView,
    currency_of,
    describe_metrics,
    format_value,
    number,
    unit_of,
)

__all__ = [
    "MOVE_THRESHOLD",
    "ReportView",
    "as_float",
    "esc",
    "html_table",
    "num",
    "severity_class",
    "status_class",
]

MOVE_THRESHOLD = 0.05
"""A metric that moved by more than this (relative) is highlighted in a comparison (the
config's ``report.move_threshold`` overrides it)."""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def html_table(head: Sequence[str], rows: list[list[str]], row_class: Sequence[str] = ()) -> str:
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    classes = list(row_class) + [""] * (len(rows) - len(row_class))
    body = "".join(
        (f'<tr class="{c}">' if c else "<tr>") + "".join(f"<td>{x}</td>" for x in row) + "</tr>"
        for row, c in zip(rows, classes, strict=True)
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def num(value: Any, kind: Kind) -> str:
    return f'<span class="num">{esc(format_value(value, kind))}</span>'


def status_class(status: str) -> str:
    return {"succeeded": "ok", "check_failed": "warn"}.get(status, "bad")


@dataclass
class ReportView:
    """What every section reads: the record, the run compared with, units and metrics."""

    record: Mapping[str, Any]
    against: Mapping[str, Any] | None = None
    metrics: list[MetricView] = field(default_factory=list)
    diff: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any], against: Mapping[str, Any] | None) -> ReportView:
        """The view of ``record``, compared with ``against`` when given."""
        return cls(
            record=record,
            against=against,
            metrics=describe_metrics(record),
            diff=compare_records(against, record) if against is not None else None,
        )

    @property
    def config(self) -> Mapping[str, Any]:
        """The config as run (``{}`` when the record has none)."""
        config = (self.record.get("provenance") or {}).get("config")
        return config if isinstance(config, Mapping) else {}

    @property
    def options(self) -> Mapping[str, Any]:
        """The config's ``report`` block."""
        options = self.config.get("report")
        return options if isinstance(options, Mapping) else {}

    @property
    def currency(self) -> str | None:
        """The config's ``report.currency``: the unit of money (None: no unit)."""
        return currency_of(self.record)

    @property
    def threshold(self) -> float:
        """The relative move beyond which a compared metric is highlighted."""
        value = number(self.options.get("move_threshold"))
        return value if value is not None else MOVE_THRESHOLD

    @property
    def title(self) -> str:
        """``report.title``, else the config file's name, else "LiveCalc run"."""
        if self.options.get("title"):
            return str(self.options["title"])
        path = (self.record.get("provenance") or {}).get("config_path")
        return Path(str(path)).stem if path else "LiveCalc run"

    @property
    def valuation_date(self) -> str | None:
        """The run's valuation date, when its record (or config) names one."""
        for source in (self.record, self.record.get("provenance") or {}, self.config):
            value = source.get("valuation_date") if isinstance(source, Mapping) else None
            if value:
                return str(value)
        return None

    def unit(self, kind: Kind) -> str:
        """The unit of a kind of number in this report."""
        return unit_of(kind, self.currency)

    def with_unit(self, value: Any, kind: Kind) -> str:
        """A number and its unit, as text (``503,117.51 EUR``, ``0.8827 x``)."""
        unit = self.unit(kind)
        text = format_value(value, kind)
        if kind == "ratio" or not unit or not text:
            return text
        return f"{text}\N{NO-BREAK SPACE}{unit}"

    def move(self, metric: MetricView) -> dict[str, Any] | None:
        """The compared row of a metric (None when not compared)."""
        if self.diff is None:
            return None
        return next((m for m in self.diff["metrics"] if m["metric"] == metric.name), None)


def severity_class(check: Mapping[str, Any]) -> str:
    return "bad" if check.get("severity") == "error" else "warn"


def as_float(value: Any) -> float:
    x = number(value)
    return math.nan if x is None else x
