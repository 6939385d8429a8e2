"""The Python API: livecalc.run returns tables, statistics, timings and per-node status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import records_to_arrow, run
from livecalc.pipeline.loading import load_config
from livecalc.runtime.buffers import POLICY_DTYPE

PLUGIN = "livecalc.testing:register_testing_engines"


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    write_policies(tmp_path / "policies.parquet", generate_policies(100, seed=9))
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
            {"id": "b", "type": "test_echo", "inputs": ["a_out"], "outputs": ["b_out", "b_stats"]},
        ],
        "output": {"path": "out/results.parquet", "summary_path": "out/summary.json"},
        "run": {"chunk_size": 30},
    }


class TestRun:
    def test_result_has_status_statistics_and_timings(
        self, tmp_path: Path, config: dict[str, Any]
    ) -> None:
        """A run reports each node's status, its get_outputs() and its wall time."""

        result = run(config, base_dir=tmp_path)

        assert result.success
        assert {"a": "succeeded", "b": "succeeded"} == result.status
        assert 4 == result.statistics["a"]["calls"]
        assert {"a", "b", "total"} == set(result.timings)
        assert result.timings["total"] >= result.timings["a"]

    def test_tables_from_memory_and_from_parquet(
        self, tmp_path: Path, config: dict[str, Any]
    ) -> None:
        """An in-memory output and a streamed one are both available as Arrow tables."""
        policies = pq.read_table(tmp_path / "policies.parquet")

        result = run(config, base_dir=tmp_path)

        assert (
            policies.column("premium").to_pylist() == result.table("a_out")["premium"].to_pylist()
        )
        assert 100 == result.table("b_out").num_rows
        assert 100 == len(result.to_pandas("b_out"))

    def test_second_output_is_the_engines_get_outputs(
        self, tmp_path: Path, config: dict[str, Any]
    ) -> None:
        """A node's second output name carries its get_outputs() mapping."""

        result = run(config, base_dir=tmp_path)

        assert 4 == result.summary.datasets["b_stats"]["calls"]

    def test_summary_json_is_written(self, tmp_path: Path, config: dict[str, Any]) -> None:
        """output.summary_path receives the run summary."""

        result = run(config, base_dir=tmp_path)

        assert tmp_path / "out" / "summary.json" == result.written["summary"]

    def test_default_output_is_the_policy_readers_records(
        self, tmp_path: Path, config: dict[str, Any]
    ) -> None:
        """Without output.write, the record output of the node reading policies is written."""

        result = run(config, base_dir=tmp_path)

        assert tmp_path / "out" / "results.parquet" == result.written["a_out"]
        assert 100 == pq.ParquetFile(result.written["a_out"]).metadata.num_rows

    def test_validated_config_runs_too(self, tmp_path: Path, config: dict[str, Any]) -> None:
        """run() accepts an already validated PipelineConfig."""
        parsed = load_config(config, base_dir=tmp_path)

        result = run(parsed, chunk_size=1000)

        assert 1 == result.nodes["a"].chunks

    def test_raise_for_status_names_the_failure(
        self, tmp_path: Path, config: dict[str, Any]
    ) -> None:
        """raise_for_status raises naming the failed node and the skipped one."""
        config["engines"][0].update(type="test_fail_n", config={"n": 50})
        result = run(config, base_dir=tmp_path)

        with pytest.raises(ExecutionError) as info:
            result.raise_for_status()

        assert "a (test_fail_n): failed" in str(info.value)
        assert "b (test_echo): skipped" in str(info.value)

    def test_csv_policies(self, tmp_path: Path, config: dict[str, Any]) -> None:
        """A CSV policy source gives the same records as the same policies in Parquet."""
        expected = run(config, base_dir=tmp_path).records("a_out")
        write_policies(tmp_path / "policies.csv", generate_policies(100, seed=9))
        config["data_sources"] = {"policies": {"type": "csv", "path": "policies.csv"}}

        result = run(config, base_dir=tmp_path)

        assert expected.tobytes() == result.records("a_out").tobytes()
        assert 100 == len(result.records("a_out"))

    def test_unknown_table(self, tmp_path: Path, config: dict[str, Any]) -> None:
        """Asking for a table that does not exist lists the available ones."""
        result = run(config, base_dir=tmp_path)

        with pytest.raises(ConfigurationError, match="available: policies, a_out, b_out"):
            result.table("nope")


class TestRecordsToArrow:
    def test_reserved_padding_is_left_out(self) -> None:
        """Every field but reserved* becomes a column, with the same values."""
        records = generate_policies(5, seed=1).records

        table = records_to_arrow(records)

        assert list(POLICY_DTYPE.names or ()) == table.column_names
        assert np.array_equal(records["sum_assured"], table["sum_assured"].to_numpy())


_SCRIPT = """
import sys
import livecalc

if __name__ == "__main__":  # worker processes import this file
    try:
        livecalc.run(sys.argv[1], executor=sys.argv[2], overrides=[sys.argv[3]])
    except livecalc.ConfigurationError as exc:
        print(f"caught: {exc}")
"""


class TestConfigErrorsAreOneMessage:
    @pytest.mark.parametrize("executor", ["local", "processes"])
    def test_engine_config_error_logs_no_error_line(self, tmp_path: Path, executor: str) -> None:
        """livecalc.run raising an engine's config error writes nothing to stderr."""
        import shutil
        import subprocess
        import sys

        examples = Path(__file__).parent.parent / "examples"
        shutil.copytree(examples / "data", tmp_path / "data")
        shutil.copy(examples / "dag_config_projection_only.json", tmp_path / "config.json")
        script = tmp_path / "script.py"
        script.write_text(_SCRIPT)
        override = "projection.mortality_table=nope.csv"

        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "config.json"), executor, override],
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert 0 == done.returncode, done.stderr
        assert "caught: engines[0].config.mortality_table (file '" in done.stdout
        assert "nope.csv'): no such file" in done.stdout
        assert "" == done.stderr
