"""The run store from Python: ``livecalc.runs.list()``, ``.get(run_id)``, ``.delete(run_id)``.

Example:
    >>> import livecalc
    >>> livecalc.runs.list(limit=5)  # doctest: +SKIP
    >>> livecalc.runs.get("3f2a9c")["checks"]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["compare", "delete", "get", "list"]


def list(
    limit: int | None = None, status: str | None = None, store: str | Path | None = None
) -> pd.DataFrame:
    """Recorded runs, newest first, as a pandas DataFrame."""
    from livecalc.ops.store import RunStore

    return RunStore(store).list(limit=limit, status=status)


def get(run_id: str, store: str | Path | None = None) -> dict[str, Any]:
    """One run's full record (provenance, nodes, metrics, checks, SLA, outputs)."""
    from livecalc.ops.store import RunStore

    return RunStore(store).get(run_id)


def delete(run_id: str, store: str | Path | None = None) -> bool:
    """Remove a run's record; whether there was one (refused while the run runs)."""
    from livecalc.ops.store import RunStore

    return RunStore(store).delete(run_id)


def compare(run_a: str, run_b: str, store: str | Path | None = None) -> dict[str, Any]:
    """Config, metric and timing differences between two runs."""
    from livecalc.ops.report import compare_records
    from livecalc.ops.store import RunStore

    runs = RunStore(store)
    result: dict[str, Any] = compare_records(runs.get(run_a), runs.get(run_b))
    return result
