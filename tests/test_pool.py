"""Replica pools: a node's chunks over several engine replicas, identical to a sequential run."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import RunResult, run
from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.pipeline.executors import create_executor
from livecalc.pipeline.pool import ReplicaPool, create_node_handle, replica_count
from livecalc.runtime.factory import EngineFactory
from livecalc.testing import register_testing_engines

PLUGIN = "livecalc.testing:register_testing_engines"
N_POLICIES = 300
CHUNK = 40  # 8 chunks, the last one short
MODES = ("npv", "detail", "scenario_totals")


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(N_POLICIES, seed=7))
    return path


def _projection_pipeline(out: Path) -> dict[str, Any]:
    """ESG, then three projections (npv, detail, scenario totals) of the same policies."""
    engines: list[dict[str, Any]] = [
        {
            "id": "esg",
            "type": "esg",
            "config": {"model": "hull_white", "outer": 2, "inner": 6, "years": 50, "seed": 3},
            "outputs": ["scenarios"],
        }
    ]
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
        "run": {"chunk_size": CHUNK, "max_parallel": 1},
    }


def _columns(path: Path) -> dict[str, bytes]:
    """Every column of a Parquet file as raw bytes (the file's metadata holds the run id)."""
    table = pq.read_table(path)
    return {name: table[name].to_numpy().tobytes() for name in table.column_names}


def _outputs(result: RunResult) -> dict[str, dict[str, bytes]]:
    assert result.success, result.summary.describe()
    return {mode: _columns(result.written[mode]) for mode in MODES}


class TestReplicaCount:
    def test_node_then_run_then_default(self) -> None:
        """A node's own parallelism wins over the run's, which wins over the default."""
        options = RunOptions(parallelism=3)

        assert (5, 3, 2) == (
            replica_count(EngineNode(id="a", type="x", parallelism=5), options, 2),
            replica_count(EngineNode(id="a", type="x"), options, 2),
            replica_count(EngineNode(id="a", type="x"), RunOptions(), 2),
        )

    def test_defaults_per_executor(self) -> None:
        """By default: 1 replica locally, one per CPU for processes."""

        assert (1, len(os.sched_getaffinity(0))) == (
            create_executor("local").default_parallelism(),
            create_executor("processes").default_parallelism(),
        )

    def test_parallelism_must_be_positive(self, tmp_path: Path, policies: Path) -> None:
        """parallelism=0 is refused before anything runs."""

        with pytest.raises(ConfigurationError, match="parallelism"):
            run(_projection_pipeline(tmp_path), base_dir=tmp_path, parallelism=0)


class TestBitIdentical:
    @pytest.mark.slow
    def test_local_processes_and_parallelism_agree(self, tmp_path: Path, policies: Path) -> None:
        """npv, detail (streamed to Parquet) and scenario totals are byte-identical whether
        chunks run locally, in one worker or over two worker replicas."""
        runs = {
            (executor, p): run(
                _projection_pipeline(tmp_path / f"{executor}{p}"),
                base_dir=tmp_path,
                executor=executor,
                parallelism=p,
            )
            for executor, p in [("local", 1), ("local", 2), ("processes", 1), ("processes", 2)]
        }

        baseline = _outputs(runs[("local", 1)])
        assert all(baseline == _outputs(r) for r in runs.values())
        assert 8 == runs[("processes", 2)].nodes["proj_detail"].chunks
        assert N_POLICIES == int(runs[("processes", 2)].records("scenario_totals")[0]["policy_count"])

    def test_chunks_finishing_out_of_order_merge_in_order(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """When the first chunk finishes last, the merged records are still in chunk order."""
        raw = {
            "plugins": [PLUGIN],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "slow",
                    "type": "test_slow_chunk",
                    "config": {"seconds": 0.5, "policy_id": 1},
                    "inputs": ["policies"],
                    "outputs": ["out"],
                }
            ],
            "run": {"chunk_size": CHUNK},
        }

        with capture_logs() as logs:
            result = run(raw, base_dir=tmp_path, executor="local", parallelism=3)

        order = [e["chunk"] for e in logs if e["event"] == "chunk_done"]
        assert generate_policies(N_POLICIES, seed=7).records.tobytes() == (
            result.records("out").tobytes()
        )
        assert 0 != order[0]  # chunk 0 (holding policy 1) was not the first to finish
