"""The runner's record buffers: counts engines report, alignment, sizes, failed writes."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import livecalc
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.io.generate import ScenarioData, generate_policies, write_policies, write_scenarios
from livecalc.runtime.engine import ExecutionResult, OutputSpec
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.records import (
    MAX_RECORDS,
    POLICY_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    BufferType,
)
from livecalc.testing import register_testing_engines


class SeedCopyEngine:
    """A seed-style engine (duck-typed, ``runChunk`` returning a dict) writing RESULT records.

    ``config["report"]`` picks what its dict says: "rows" (rows_processed only, as many seed
    engines did), "records" (records_written) or "bytes" (bytes_written).
    """

    def __init__(self) -> None:
        self.is_initialized = False

    def initialize(self, config: dict[str, Any], credentials: Any) -> None:
        self.report = config.get("report", "rows")
        self.is_initialized = True

    def get_info(self) -> dict[str, Any]:
        return {"name": "SeedCopy", "version": "0.9", "engine_type": "projection"}

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec:
        return OutputSpec(RESULT_DTYPE, len(next(iter(inputs.values()))))

    def runChunk(self, input_buffer: Any, output_buffer: Any) -> dict[str, Any]:
        policies = next(a for a in input_buffer.values() if a.dtype == POLICY_DTYPE)
        n = len(policies)
        output_buffer[:n]["policy_id"] = policies["policy_id"]
        output_buffer[:n]["npv"] = policies["sum_assured"]
        counts = {"rows": {}, "records": {"records_written": n}, "bytes": {"bytes_written": n * 24}}
        return {"success": True, "rows_processed": n, **counts[self.report]}

    def dispose(self) -> None:
        self.is_initialized = False


@pytest.fixture
def factory() -> EngineFactory:
    f = EngineFactory(discover=False)
    register_testing_engines(f)
    f.register_engine("seed_copy", SeedCopyEngine)
    return f


@pytest.fixture
def policies_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(40, seed=5, in_force_fraction=0.5))
    return path


def _config(node: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [{"id": "a", "inputs": ["policies"], "outputs": ["a_out"], **node}],
        **extra,
    }


class TestSeedStyleRecordCounts:
    def test_dict_without_a_count_fails_the_node_saying_what_to_return(
        self, tmp_path: Path, policies_file: Path, factory: EngineFactory
    ) -> None:
        """A seed dict with rows_processed only fails its node; no empty file is written."""
        raw = _config(
            {"type": "seed_copy"},
            output={"path": "out/results.parquet", "summary_path": "out/summary.json"},
        )

        result = livecalc.run(raw, factory=factory, base_dir=tmp_path)

        assert "failed" == result.status["a"]
        assert "without 'bytes_written'" in str(result.nodes["a"].error)
        assert "records_written" in str(result.nodes["a"].error)
        assert not (tmp_path / "out" / "results.parquet").exists()

    @pytest.mark.parametrize("report", ["records", "bytes"])
    def test_counted_records_are_all_kept(
        self, tmp_path: Path, policies_file: Path, factory: EngineFactory, report: str
    ) -> None:
        """records_written or bytes_written keeps every record the seed engine wrote."""
        raw = _config(
            {"type": "seed_copy", "config": {"report": report}, "chunk_size": 7},
            output={"path": "out/results.parquet"},
        )

        result = livecalc.run(raw, factory=factory, base_dir=tmp_path)

        assert "succeeded" == result.status["a"]
        assert 40 == result.table("a_out").num_rows == result.nodes["a"].records

    def test_from_legacy_needs_a_count_when_given_a_buffer(self) -> None:
        """from_legacy raises for a success dict without a count once a buffer was given."""
        buffer = np.zeros(4, RESULT_DTYPE)

        with pytest.raises(ExecutionError) as info:
            ExecutionResult.from_legacy({"success": True, "rows_processed": 4}, 1.0, buffer)
        counted = ExecutionResult.from_legacy({"records_written": 3}, 1.0, buffer)

        assert "bytes_written" in str(info.value)
        assert 3 * 24 == counted.bytes_written


class TestAlignment:
    @pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 13, 64])
    def test_every_buffer_an_engine_sees_is_16_byte_aligned(
        self, tmp_path: Path, policies_file: Path, factory: EngineFactory, chunk_size: int
    ) -> None:
        """Merged 24-byte RESULT outputs and POLICY_EXT chunks start on 16 bytes, all chunks."""
        raw = _config({"type": "test_align", "chunk_size": chunk_size})

        result = livecalc.run(raw, factory=factory, base_dir=tmp_path)
        offsets = result.statistics["a"]["offsets"]
        records = result.records("a_out")

        assert -(-40 // chunk_size) == len(offsets)
        assert {"policies", "policies_ext"} == set(offsets[0]["inputs"])
        assert [0] * len(offsets) == [o["output"] for o in offsets]
        assert [[0, 0]] * len(offsets) == [list(o["inputs"].values()) for o in offsets]
        assert list(range(1, 41)) == records["policy_id"].tolist()
        assert records["npv"].tolist() == records["policy_id"].astype(float).tolist()

    def test_streamed_chunks_are_aligned_too(
        self, tmp_path: Path, policies_file: Path, factory: EngineFactory
    ) -> None:
        """Chunks streamed to Parquet (odd chunk size) see aligned buffers; all rows written."""
        raw = _config(
            {"type": "test_align", "chunk_size": 3}, output={"path": "out/results.parquet"}
        )

        result = livecalc.run(raw, factory=factory, base_dir=tmp_path)
        offsets = result.statistics["a"]["offsets"]

        assert {0} == {o["output"] for o in offsets} | {
            v for o in offsets for v in o["inputs"].values()
        }
        assert list(range(1, 41)) == result.table("a_out")["policy_id"].to_pylist()


def _livecalc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("livecalc")), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def _sized_config(tmp_path: Path, n_policies: int, **extra: Any) -> Path:
    """20,000 policies x 6,000 ESG scenarios (60 x 100, 60 years): 1.2e8 records."""
    write_policies(tmp_path / "policies.parquet", generate_policies(n_policies, seed=1))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {"outer": 60, "inner": 100, "years": 60},
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
        ],
        "output": {"path": "out/results.parquet", "summary_path": "out/summary.json"},
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestRecordLimits:
    def test_merged_output_past_the_limit_is_refused_before_anything_runs(
        self, tmp_path: Path
    ) -> None:
        """1.2e8 RESULT records read by a solver: validate and run exit 2, nothing written."""
        config = _sized_config(tmp_path, 20_000)
        raw = json.loads(config.read_text())
        raw["engines"].append(
            {"id": "solver", "type": "solver", "inputs": ["results"], "outputs": ["stats"]}
        )
        config.write_text(json.dumps(raw))

        validated = _livecalc("validate", str(config), cwd=tmp_path)
        ran = _livecalc("run", str(config), cwd=tmp_path)

        for done in (validated, ran):
            assert 2 == done.returncode, done.stderr
            assert "engines[1] ('projection')" in done.stderr
            assert "120,000,000 RESULT records (20,000 policies x 6,000 scenarios)" in (done.stderr)
            assert '"output": "scenario_totals"' in done.stderr
            assert "Traceback" not in done.stderr
        assert not (tmp_path / "out").exists()

    def test_streamed_chunk_past_the_limit_says_which_chunk_size_fits(self, tmp_path: Path) -> None:
        """A streamed output whose chunk alone passes the limit names the chunk size that fits."""
        config = _sized_config(tmp_path, 20_000, run={"chunk_size": 20_000})

        problem = _problem(config)

        assert "each chunk's output would hold 120,000,000 RESULT records" in problem
        assert "lower chunk_size to at most 16,666" in problem

    def test_scenario_file_sizes_come_from_the_footer(self, tmp_path: Path) -> None:
        """100,000 scenarios in a file x 2,000 policies read by a solver are refused."""
        scenarios = np.zeros(100_000, SCENARIO_DTYPE)
        scenarios["scenario_id"] = np.arange(100_000)
        scenarios["year"] = 1
        write_scenarios(tmp_path / "scenarios.parquet", ScenarioData(scenarios, {}))
        config = _sized_config(tmp_path, 2_000)
        raw = json.loads(config.read_text())
        raw["data_sources"]["scenarios"] = {"path": "scenarios.parquet"}
        raw["engines"][0] = {
            "id": "solver",
            "type": "solver",
            "inputs": ["results"],
            "outputs": ["stats"],
        }
        config.write_text(json.dumps(raw))

        problem = _problem(config)

        assert "200,000,000 RESULT records (2,000 policies x 100,000 scenarios)" in problem

    def test_run_checks_file_sizes_before_reading_the_data(self, tmp_path: Path) -> None:
        """livecalc.run refuses from the footers, before reading rates it would refuse too."""
        scenarios = np.zeros(100_000, SCENARIO_DTYPE)
        scenarios["scenario_id"] = np.arange(100_000)
        scenarios["year"] = 1
        scenarios["rate"] = np.nan  # reading the file would stop at row 0
        write_scenarios(tmp_path / "scenarios.parquet", ScenarioData(scenarios, {}))
        config = _sized_config(tmp_path, 2_000)
        raw = json.loads(config.read_text())
        raw["data_sources"]["scenarios"] = {"path": "scenarios.parquet"}
        raw["engines"][0] = {"id": "solver", "type": "solver", "inputs": ["results"]}

        with pytest.raises(ConfigurationError) as info:
            livecalc.run(raw, base_dir=tmp_path)

        assert "2,000 policies x 100,000 scenarios" in str(info.value)
        assert not (tmp_path / "out").exists()

    def test_within_the_limit_passes(self, tmp_path: Path) -> None:
        """Streaming the same 1.2e8 records in chunks of 10,000 policies is fine."""
        config = _sized_config(tmp_path, 20_000)

        livecalc.check_engines(config)

    def test_runner_refuses_any_engine_asking_past_the_limit(
        self, tmp_path: Path, policies_file: Path, factory: EngineFactory
    ) -> None:
        """A plug-in engine whose output_spec passes the limit fails its node, nothing allocated."""
        factory.register_engine("huge", HugeSpecEngine)
        raw = _config({"type": "huge"}, output={"path": "out/r.parquet", "summary_path": "s.json"})

        result = livecalc.run(raw, factory=factory, base_dir=tmp_path)

        assert "failed" == result.status["a"]
        assert "100,000,001 RESULT records, over the limit of 100,000,000" in str(
            result.nodes["a"].error
        )
        assert (tmp_path / "s.json").exists()


class HugeSpecEngine(SeedCopyEngine):
    """Asks for one RESULT record more than a buffer may hold."""

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec:
        return OutputSpec(RESULT_DTYPE, MAX_RECORDS[BufferType.RESULT] + 1)


def _problem(config: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        livecalc.check_engines(config)
    return str(info.value)


def _limit_file_size() -> None:
    # Files may grow to 1 MB; past that a write fails with EFBIG (the signal that would
    # otherwise kill the process is ignored, as a server would).
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class TestFailedWrites:
    def test_failed_write_of_an_in_memory_output_fails_only_its_node(self, tmp_path: Path) -> None:
        """A file too large: its node fails, dependants are skipped, the summary is written."""
        write_policies(tmp_path / "policies.parquet", generate_policies(100_000, seed=2))
        raw = {
            "plugins": ["livecalc.testing:register_testing_engines"],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
                {"id": "b", "type": "test_echo", "inputs": ["a_out"], "outputs": ["b_out"]},
                {"id": "c", "type": "test_noop", "inputs": ["policies"], "outputs": ["c_out"]},
            ],
            "output": {"path": "out/{name}.parquet", "write": ["a_out"]},
            "run": {"chunk_size": 30_000},
        }
        raw["output"]["summary_path"] = "out/summary.json"
        (tmp_path / "config.json").write_text(json.dumps(raw))
        command = [str(Path(sys.executable).with_name("livecalc")), "run", "config.json"]

        done = subprocess.run(
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size,
        )
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        nodes = {n["node_id"]: n for n in summary["nodes"]}

        assert 1 == done.returncode, done.stderr
        assert "Traceback" not in done.stderr
        assert ("failed", "skipped", "succeeded") == tuple(nodes[k]["status"] for k in "abc")
        assert "write: " in nodes["a"]["error"]
        assert "cannot write " in nodes["a"]["error"] and "a_out.parquet" in nodes["a"]["error"]
        assert "choose another output.path" in nodes["a"]["error"]
        assert "not run: upstream node 'a' failed" == nodes["b"]["error"]
        assert ["summary.json"] == sorted(p.name for p in (tmp_path / "out").iterdir())
