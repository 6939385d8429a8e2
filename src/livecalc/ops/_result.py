"""``RecordedRunResult``: the result of a recorded run, which notebooks show as its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livecalc.pipeline.api import RunResult

__all__ = ["RecordedRunResult"]


@dataclass
class RecordedRunResult(RunResult):
    """A ``RunResult`` with the run's record (what the store keeps and the report draws)."""

    record: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """The report's header, summary, key metrics and main chart, for notebooks."""
        from livecalc.ops.report import notebook_html

        if not self.record.get("run_id"):
            return super()._repr_html_()
        return notebook_html(self.record)
