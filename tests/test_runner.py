"""The DAG runner: chunking and merge, streaming to Parquet, failures, goal-seek binding."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline._node import ChunkPlan, merge_scenario_totals
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.runner import Runner
from livecalc.runtime.buffers import POLICY_DTYPE, SCENARIO_TOTAL_DTYPE
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)
from livecalc.runtime.factory import EngineFactory
from livecalc.testing import EchoEngine, register_testing_engines


class _TotalsEngine(ICalcEngine):
    """Per-scenario totals of sum_assured x multiplier over 3 scenarios; has set_parameters."""

    def initialize(self, config: Mapping[str, Any], credentials: Any = None) -> None:
        self.multiplier = float(config.get("premium_multiplier", 1.0))
        self._ready = True

    def get_info(self) -> EngineInfo:
        return EngineInfo("totals", "1", "test_totals")

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        return OutputSpec(SCENARIO_TOTAL_DTYPE, 3)

    def set_parameters(self, params: Mapping[str, float]) -> None:
        self.multiplier = float(params["premium_multiplier"])

    def get_parameters(self) -> dict[str, float]:
        return {"premium_multiplier": self.multiplier}

    def run_chunk(self, input_buffer: InputBuffer, output_buffer: np.ndarray | None) -> Any:
        assert isinstance(input_buffer, Mapping) and output_buffer is not None
        policies = next(a for a in input_buffer.values() if a.dtype == POLICY_DTYPE)
        out = output_buffer[:3]
        out[:] = np.zeros(1, SCENARIO_TOTAL_DTYPE)
        out["scenario_id"] = [1, 2, 3]
        out["policy_count"] = len(policies)
        out["npv"] = policies["sum_assured"].sum() * self.multiplier * np.array([1.0, 2.0, 3.0])
        return ExecutionResult(rows_processed=len(policies), bytes_written=3 * out.itemsize)

    def dispose(self) -> None:
        self._ready = False

    @property
    def is_initialized(self) -> bool:
        return getattr(self, "_ready", False)


class _GoalSeekEngine(ICalcEngine):
    """Finds the multiplier whose scenario-1 npv hits ``target`` by bisection via its evaluator."""

    def initialize(self, config: Mapping[str, Any], credentials: Any = None) -> None:
        self.target = float(config["target"])
        self._outputs: dict[str, Any] = {}

    def get_info(self) -> EngineInfo:
        return EngineInfo("seek", "1", "test_seek")

    def bind_evaluator(self, evaluator: Any) -> None:
        self.evaluator = evaluator

    def run_chunk(self, input_buffer: InputBuffer, output_buffer: np.ndarray | None) -> Any:
        lo, hi = 0.0, 10.0
        for _ in range(60):
            mid = (lo + hi) / 2
            npv = float(self.evaluator({"premium_multiplier": mid})["npv"][0])
            lo, hi = (mid, hi) if npv < self.target else (lo, mid)
        self._outputs = {"premium_multiplier": (lo + hi) / 2}
        return ExecutionResult(rows_processed=1)

    def get_outputs(self) -> Mapping[str, Any]:
        return self._outputs

    def dispose(self) -> None:
        pass

    @property
    def is_initialized(self) -> bool:
        return True


_BARRIER = threading.Barrier(2)


class _BarrierEngine(EchoEngine):
    """Echoes only once another engine's chunk is running too (fails after 5 s alone)."""

    def run_chunk(self, input_buffer: InputBuffer, output_buffer: np.ndarray | None) -> Any:
        _BARRIER.wait(timeout=5)
        return super().run_chunk(input_buffer, output_buffer)


class _MiscountEngine(EchoEngine):
    """Echoes, but reports ``config["extra_bytes"]`` more bytes written than it wrote."""

    def run_chunk(self, input_buffer: InputBuffer, output_buffer: np.ndarray | None) -> Any:
        result = super().run_chunk(input_buffer, output_buffer)
        extra = int(self.config["extra_bytes"])
        return dataclasses.replace(result, bytes_written=result.bytes_written + extra)


@pytest.fixture
def factory() -> EngineFactory:
    f = EngineFactory(discover=False)
    register_testing_engines(f)
    f.register_engine("test_totals", _TotalsEngine)
    f.register_engine("test_seek", _GoalSeekEngine)
    f.register_engine("test_barrier", _BarrierEngine)
    f.register_engine("test_miscount", _MiscountEngine)
    return f


@pytest.fixture
def policies_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(1000, seed=3))
    return path


def _run(raw: dict[str, Any], tmp_path: Path, factory: EngineFactory, **kw: Any) -> Any:
    config = load_config(raw, factory=factory, base_dir=tmp_path)
    return Runner(config, factory=factory, **kw).run()


def _echo_chain(extra_node: dict[str, Any] | None = None) -> dict[str, Any]:
    engines: list[dict[str, Any]] = [
        {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
        {"id": "b", "type": "test_echo", "inputs": ["a_out"], "outputs": ["b_out"]},
    ]
    if extra_node:
        engines.append(extra_node)
    return {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": engines,
        "output": {"path": "out/{name}.parquet", "write": ["a_out", "b_out"]},
        "run": {"chunk_size": 128},
    }


class TestChunkedRun:
    def test_chunks_merge_back_into_the_whole_set(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """Echoing 1000 policies in chunks of 128 reproduces them in memory and on disk."""
        policies = pq.read_table(policies_file)

        summary = _run(_echo_chain(), tmp_path, factory)

        assert summary.success
        assert 8 == summary.nodes["a"].chunks
        assert 1000 == summary.nodes["b"].records
        assert policies.column("policy_id").to_pylist() == list(
            summary.datasets["a_out"]["policy_id"]
        )
        written = pq.read_table(tmp_path / "out" / "b_out.parquet")
        assert (
            policies.column("sum_assured").to_pylist() == written.column("sum_assured").to_pylist()
        )

    def test_streamed_output_is_not_kept_in_memory(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """An output nobody reads goes to its file chunk by chunk, not into the datasets."""

        summary = _run(_echo_chain(), tmp_path, factory)

        assert not isinstance(summary.datasets["b_out"], np.ndarray)
        assert 1000 == pq.ParquetFile(tmp_path / "out" / "b_out.parquet").metadata.num_rows

    def test_merged_output_is_written_in_place_by_chunks(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """A read-by-others output is one buffer the chunks wrote into, not a concatenation."""

        summary = _run(_echo_chain(), tmp_path, factory)

        a_out = summary.datasets["a_out"]
        assert 1000 == len(a_out)
        assert a_out.base is not None  # a view of the buffer allocated once for the node


class TestConcurrency:
    def test_independent_nodes_run_at_the_same_time(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """Two nodes that need each other running (a two-party barrier) both succeed."""
        _BARRIER.reset()
        raw = _echo_chain()
        raw["engines"] = [
            {"id": n, "type": "test_barrier", "inputs": ["policies"], "outputs": [f"{n}_out"]}
            for n in ("x", "y")
        ]
        raw["output"] = None
        raw["run"] = {"chunk_size": 1000, "max_parallel": 2}

        summary = _run(raw, tmp_path, factory)

        assert {"x": "succeeded", "y": "succeeded"} == {
            k: r.status for k, r in summary.nodes.items()
        }


class TestFailures:
    def test_failing_node_skips_downstream_and_keeps_finished_outputs(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """A node that fails is reported with its error, its consumers are skipped, and the
        outputs that finished before are still written."""
        raw = _echo_chain()
        raw["engines"][1] = {
            "id": "b",
            "type": "test_fail_n",
            "config": {"n": 100},
            "inputs": ["a_out"],
            "outputs": ["b_out"],
        }
        raw["engines"].append(
            {"id": "c", "type": "test_echo", "inputs": ["b_out"], "outputs": ["c_out"]}
        )

        summary = _run(raw, tmp_path, factory)

        assert not summary.success
        assert ("succeeded", "failed", "skipped") == tuple(summary.nodes[n].status for n in "abc")
        assert "planned failure 1 of 100" in (summary.nodes["b"].error or "")
        assert "upstream node 'b' failed" in (summary.nodes["c"].error or "")
        assert (tmp_path / "out" / "a_out.parquet").exists()
        assert not (tmp_path / "out" / "b_out.parquet").exists()
        assert [] == [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]

    def test_independent_node_still_runs_when_another_fails(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """A failure upstream of one branch does not stop an independent branch."""
        raw = _echo_chain(
            {
                "id": "x",
                "type": "test_fail_n",
                "config": {"n": 100},
                "inputs": ["policies"],
                "outputs": ["x_out"],
            }
        )

        summary = _run(raw, tmp_path, factory)

        assert {"a": "succeeded", "b": "succeeded", "x": "failed"} == {
            k: r.status for k, r in summary.nodes.items()
        }

    def test_retry_recovers_a_transient_failure(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """With retries=1 a node whose first chunk fails once still succeeds."""
        raw = _echo_chain()
        raw["engines"][1].update(type="test_fail_n", config={"n": 1}, retries=1)

        summary = _run(raw, tmp_path, factory)

        assert summary.success

    def test_engine_config_errors_get_the_node_path_and_nothing_runs(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """Every node's config error is collected, prefixed with its JSON path, before any
        node runs (so no output file appears)."""
        raw = _echo_chain()
        raw["engines"][0].update(type="test_fail_n", config={"mode": "bogus"})
        raw["engines"][1].update(type="test_sleep", config={"seconds": -1})

        with pytest.raises(ConfigurationError) as info:
            _run(raw, tmp_path, factory)

        assert "engines[0].config.mode: 'raise' or 'result', got 'bogus'" in str(info.value)
        assert "engines[1].config.seconds: must be a number >= 0" in str(info.value)
        assert not (tmp_path / "out").exists()


class TestChunkRecordChecks:
    @pytest.mark.parametrize("parallelism", [1, 2])
    @pytest.mark.parametrize(
        ("extra_bytes", "message"),
        [
            (1, "chunk 0: engine reported bytes_written=4097, not a whole number of 32-byte"),
            (-8192, "chunk 0: engine reported bytes_written=-4096, not a whole number of 32-byte"),
            (1000 * 32, "chunk 0: engine reported 1128 records written into a buffer of"),
        ],
    )
    def test_a_miscounted_chunk_fails_its_node_sequential_or_pooled(
        self,
        tmp_path: Path,
        factory: EngineFactory,
        policies_file: Path,
        parallelism: int,
        extra_bytes: int,
        message: str,
    ) -> None:
        """bytes_written that is no whole number of records, negative, or past the buffer
        fails the node with the same error on one engine and on a pool of replicas."""
        raw = _echo_chain()
        raw["engines"][0].update(type="test_miscount", config={"extra_bytes": extra_bytes})

        summary = _run(raw, tmp_path, factory, parallelism=parallelism)

        assert ("failed", "skipped") == (summary.nodes["a"].status, summary.nodes["b"].status)
        assert message in (summary.nodes["a"].error or "")


class TestGoalSeek:
    def _raw(self) -> dict[str, Any]:
        return {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "proj",
                    "type": "test_totals",
                    "config": {"premium_multiplier": 2.0},
                    "inputs": ["policies"],
                    "outputs": ["totals"],
                },
                {
                    "id": "seek",
                    "type": "test_seek",
                    "config": {"target": 1.0e6},
                    "inputs": ["totals"],
                    "outputs": ["solution"],
                },
            ],
            "run": {"chunk_size": 300},
        }

    def test_evaluator_reruns_the_projection_with_overrides(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """The solver's evaluator re-runs every projection chunk with the override applied."""
        total = float(pq.read_table(policies_file).column("sum_assured").to_numpy().sum())

        summary = _run(self._raw(), tmp_path, factory)

        solution = summary.datasets["solution"]["premium_multiplier"]
        assert 1.0e6 / total == pytest.approx(solution, rel=1e-9)

    def test_original_parameters_are_kept_for_the_projection_output(
        self, tmp_path: Path, factory: EngineFactory, policies_file: Path
    ) -> None:
        """Goal-seek re-runs never overwrite the records the projection published."""
        total = float(pq.read_table(policies_file).column("sum_assured").to_numpy().sum())

        summary = _run(self._raw(), tmp_path, factory)

        totals = summary.datasets["totals"]
        assert [2.0 * total, 4.0 * total, 6.0 * total] == pytest.approx(list(totals["npv"]))
        assert [1000.0, 1000.0, 1000.0] == list(totals["policy_count"])


class TestChunkPlan:
    @settings(max_examples=50, deadline=None)
    @given(st.integers(0, 500), st.integers(1, 600))
    def test_chunks_cover_every_policy_once(self, n: int, size: int) -> None:
        """Chunk bounds tile 0..n without gaps or overlaps."""
        plan = ChunkPlan.of({"p": np.zeros(n, POLICY_DTYPE)}, size)

        bounds = [plan.bounds(i) for i in range(plan.count)]

        assert list(range(n)) == [k for s, e in bounds for k in range(s, e)]

    def test_chunks_are_views(self) -> None:
        """A chunk's policy input is a view of the whole array (no copy)."""
        policies = np.zeros(10, POLICY_DTYPE)

        chunk = ChunkPlan.of({"p": policies}, 4).chunk({"p": policies}, 1)

        assert np.shares_memory(policies, chunk["p"])


class TestScenarioTotalMerge:
    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4), min_size=1, max_size=6))
    def test_sum_over_chunks_equals_the_sum_of_all(self, chunks: list[list[float]]) -> None:
        """Merging chunk totals gives each scenario's sum over the chunks."""
        acc = None
        for values in chunks:
            part = np.zeros(4, SCENARIO_TOTAL_DTYPE)
            part["scenario_id"] = [0, 1, 2, 3]
            part["npv"] = values
            part["policy_count"] = 1
            acc = merge_scenario_totals(acc, part)

        assert acc is not None
        assert np.allclose(np.sum(chunks, axis=0), acc["npv"])
        assert [len(chunks)] * 4 == list(acc["policy_count"])

    def test_different_scenario_sets_align_by_id(self) -> None:
        """Chunks reporting different scenarios merge by scenario_id."""
        a = np.zeros(2, SCENARIO_TOTAL_DTYPE)
        a["scenario_id"], a["npv"] = [1, 2], [10.0, 20.0]
        b = np.zeros(2, SCENARIO_TOTAL_DTYPE)
        b["scenario_id"], b["npv"] = [2, 3], [1.0, 2.0]

        merged = merge_scenario_totals(a, b)

        assert [1, 2, 3] == list(merged["scenario_id"])
        assert [10.0, 21.0, 2.0] == list(merged["npv"])
