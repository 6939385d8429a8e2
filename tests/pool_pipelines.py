"""The pipeline the replica-pool tests run everywhere, and the byte view they compare.

An ESG, then three projections (npv, streamed detail, scenario totals) of the same policies,
each written to Parquet; results from different executors and parallelisms are compared
column by column as raw bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from livecalc.pipeline.api import RunResult

MODES = ("npv", "detail", "scenario_totals")


def projection_pipeline(out: Path, *, inner: int, seed: int, chunk_size: int) -> dict[str, Any]:
    """ESG (2 outer x ``inner`` paths, 50 years), then the three projections of MODES."""
    engines: list[dict[str, Any]] = [
        {
            "id": "esg",
            "type": "esg",
            "config": {
                "model": "hull_white", "outer": 2, "inner": inner, "years": 50, "seed": seed,
            },
            "outputs": ["scenarios"],
        }
    ]  # fmt: skip
    engines += [
        {
            "id": f"proj_{mode}",
            "type": "projection",
            "config": {"output": mode},
            "inputs": ["policies", "scenarios"],
            "outputs": [mode],
        }
        for mode in MODES
    ]
    return {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": engines,
        "output": {"path": f"{out}/{{name}}.parquet", "write": list(MODES)},
        "run": {"chunk_size": chunk_size, "max_parallel": 1},
    }


def columns(path: Path) -> dict[str, bytes]:
    """Every column of a Parquet file as raw bytes (the file's metadata holds the run id)."""
    table = pq.read_table(path)
    return {name: table[name].to_numpy().tobytes() for name in table.column_names}


def outputs(result: RunResult) -> dict[str, dict[str, bytes]]:
    """A successful run's three outputs as raw column bytes."""
    assert result.success, result.summary.describe()
    return {mode: columns(result.written[mode]) for mode in MODES}
