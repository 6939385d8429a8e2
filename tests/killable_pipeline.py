"""The pipeline the kill-and-resume tests stop mid-run: ESG (1,000 scenarios, 30 years) ->
projection of ``policies`` policies in chunks of ``chunk_size``, monthly steps (12 times the
annual work for the same output, so that a loaded machine cannot see the run finish before
it is stopped), every chunk checkpointed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from livecalc.io.generate import generate_policies, write_policies

__all__ = ["write_killable_pipeline"]


def write_killable_pipeline(
    folder: Path,
    *,
    policies: int = 3_000,
    chunk_size: int = 300,
    esg_seed: int | None = None,
    summary: bool = False,
) -> Path:
    """Write the policies and the config into ``folder``; the config's path. Results go to
    ``out/results.parquet`` (and ``out/summary.json`` with ``summary``)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_policies(folder / "policies.parquet", generate_policies(policies, seed=11, max_term=30))
    esg: dict[str, Any] = {"model": "hull_white", "outer": 10, "inner": 100, "years": 30}
    if esg_seed is not None:
        esg["seed"] = esg_seed
    output: dict[str, Any] = {"path": "out/results.parquet"}
    if summary:
        output["summary_path"] = "out/summary.json"
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "esg", "type": "esg", "config": esg, "outputs": ["scenarios"]},
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "npv", "time_step": "monthly"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
        ],
        "output": output,
        "run": {"chunk_size": chunk_size, "checkpoint_chunks": "all"},
    }
    config = folder / "config.json"
    config.write_text(json.dumps(raw))
    return config
