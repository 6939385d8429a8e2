"""``livecalc demo``: sample policies and a full-pipeline config written into one folder.

The pipeline is ESG (Hull-White, 10 outer x 100 inner paths, 50 years) -> projection (one NPV
per policy and scenario) -> solver (risk measures, and the premium multiplier that makes the
mean portfolio NPV zero, found by re-running the projection through the runner).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies

__all__ = ["demo_config", "write_demo"]


def demo_config(policies_file: str = "policies.parquet", seed: int = 42) -> dict[str, Any]:
    """The demo's pipeline config, with paths relative to its folder."""
    return {
        "data_sources": {"policies": {"type": "parquet", "path": policies_file}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {
                    "model": "hull_white",
                    "outer": 10,
                    "inner": 100,
                    "years": 50,
                    "seed": seed,
                },
                "inputs": [],
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "npv"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
            {
                "id": "solver",
                "type": "solver",
                "config": {
                    "metrics": ["mean", "var_95", "var_99_5", "cte_95", "cte_99_5"],
                    "optimization": {
                        "parameters": [{"name": "premium_multiplier", "bounds": [0.1, 5.0]}],
                        "objective": {"metric": "mean", "direction": "target", "target": 0.0},
                    },
                },
                "inputs": ["results"],
                "outputs": ["solution"],
            },
        ],
        "output": {
            "type": "parquet",
            "path": "results.parquet",
            "summary_path": "summary.json",
        },
        "run": {"chunk_size": 2_000},
    }


def write_demo(folder: Path, policies: int, seed: int = 42) -> Path:
    """Write ``policies`` sample policies and the demo config into ``folder``; the config path."""
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"--out {folder}: is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_policies(folder / "policies.parquet", generate_policies(policies, seed=seed))
    path = folder / "dag_config.json"
    path.write_text(json.dumps(demo_config(seed=seed), indent=2) + "\n", encoding="utf-8")
    return path
