"""The CLI: exit codes, one-line errors, summaries, no output left behind by bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.config import config_json_schema

DATA = Path(__file__).parent / "data"
PLUGIN = "livecalc.testing:register_testing_engines"


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _write_config(tmp_path: Path, engines: list[dict[str, Any]], **extra: Any) -> Path:
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": engines,
        "output": {"path": "out/{name}.parquet", "write": [e["outputs"][0] for e in engines]},
        "run": {"chunk_size": 50},
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(200, seed=1))
    return path


def _echo(node_id: str, source: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "test_echo",
        "inputs": [source],
        "outputs": [f"{node_id}_out"],
    } | kw


class TestValidate:
    def test_valid_config(self, tmp_path: Path, policies: Path) -> None:
        """A valid config exits 0 and lists its engines."""
        config = _write_config(tmp_path, [_echo("a", "policies")])

        result = _invoke("validate", str(config))

        assert 0 == result.exit_code
        assert "ok:" in result.stdout and "1 engines (a)" in result.stdout

    @pytest.mark.parametrize(
        ("name", "fragment"),
        [
            ("cycle.json", "cycle a -> b -> a"),
            ("unknown_type.json", "unknown engine type 'esgg'"),
            ("duplicate_id.json", "duplicate id 'esg'"),
            ("unproduced_input.json", "'scenarioz' is produced by no engine"),
            ("output_twice.json", "'scenarios' is already produced"),
            ("missing_file.json", "data_sources.policies.path: file"),
            ("wrong_type.json", "engines[0].inputs[0]"),
            ("unknown_key.json", "engines[0].ouputs: unknown key"),
            ("invalid_json.json", "invalid JSON at line 2"),
        ],
    )
    @pytest.mark.parametrize("command", ["validate", "run"])
    def test_bad_config_exits_2_with_one_message(
        self, tmp_path: Path, name: str, fragment: str, command: str
    ) -> None:
        """Each bad config gives exit code 2 and its message, without a traceback, and a run
        of it (with an output added) writes nothing."""
        text = (DATA / name).read_text()
        if name != "invalid_json.json":
            text = json.dumps({**json.loads(text), "output": {"path": "out/r.parquet"}})
        config = tmp_path / name
        config.write_text(text)

        result = _invoke(command, str(config))

        assert 2 == result.exit_code
        assert fragment in result.stderr
        assert "Traceback" not in result.output
        assert not (tmp_path / "out").exists()

    def test_debug_shows_the_traceback(self) -> None:
        """--debug adds the traceback to a user error."""

        result = _invoke("validate", "--debug", str(DATA / "cycle.json"))

        assert 2 == result.exit_code
        assert "Traceback" in result.stderr


class TestRun:
    def test_success_prints_the_summary(self, tmp_path: Path, policies: Path) -> None:
        """A good run exits 0, writes its outputs and prints a per-engine summary."""
        config = _write_config(tmp_path, [_echo("a", "policies"), _echo("b", "a_out")])

        result = _invoke("run", str(config), "--no-progress")

        assert 0 == result.exit_code, result.output
        assert 200 == pq.ParquetFile(tmp_path / "out" / "b_out.parquet").metadata.num_rows
        assert "succeeded" in result.stdout and "rows/s" in result.stdout

    def test_failing_engine_exits_1_keeps_partial_outputs(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """A failing node: exit 1, its downstream skipped, finished outputs kept, and the
        summary names the failure."""
        config = _write_config(
            tmp_path,
            [
                _echo("a", "policies"),
                _echo("b", "a_out", type="test_fail_n", config={"n": 99}),
                _echo("c", "b_out"),
            ],
        )

        result = _invoke("run", str(config), "--no-progress")

        assert 1 == result.exit_code
        assert "b failed:" in result.stderr and "planned failure 1 of 99" in result.stderr
        assert "c skipped:" in result.stderr and "upstream node 'b' failed" in result.stderr
        assert ["a_out.parquet"] == sorted(p.name for p in (tmp_path / "out").iterdir())

    def test_engine_config_error_exits_2_and_writes_nothing(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """An engine refusing its config gives exit 2 naming the node path; nothing written."""
        config = _write_config(
            tmp_path, [_echo("a", "policies", type="test_fail_n", config={"mode": "x"})]
        )

        result = _invoke("run", str(config))

        assert 2 == result.exit_code
        assert "engines[0].config.mode:" in result.stderr
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize(
        ("column", "value"),
        [("age", 130), ("sum_assured", -1.0), ("premium", float("nan")), ("gender", 7)],
    )
    def test_bad_input_data_exits_2_and_writes_nothing(
        self, tmp_path: Path, column: str, value: float
    ) -> None:
        """A policy file with an impossible value: exit 2, file and column named, no output."""
        data = generate_policies(20, seed=2)
        data.records[column][5] = value
        write_policies(tmp_path / "policies.parquet", data)
        config = _write_config(tmp_path, [_echo("a", "policies")])

        result = _invoke("run", str(config))

        assert 2 == result.exit_code
        assert column in result.stderr and "policies.parquet" in result.stderr
        assert not (tmp_path / "out").exists()

    def test_missing_column_exits_2_and_writes_nothing(self, tmp_path: Path) -> None:
        """A policy file without its premium column: exit 2 naming the column, no output."""
        path = tmp_path / "policies.parquet"
        write_policies(path, generate_policies(20, seed=2))
        pq.write_table(pq.read_table(path).drop_columns(["premium"]), path)
        config = _write_config(tmp_path, [_echo("a", "policies")])

        result = _invoke("run", str(config))

        assert 2 == result.exit_code
        assert "premium" in result.stderr
        assert not (tmp_path / "out").exists()

    def test_set_overrides_an_engine_config(self, tmp_path: Path, policies: Path) -> None:
        """--set reaches the engine: a bad value set on the command line is reported."""
        config = _write_config(tmp_path, [_echo("a", "policies", type="test_fail_n")])

        result = _invoke("run", str(config), "--set", "a.mode=bogus")

        assert 2 == result.exit_code
        assert "engines[0].config.mode: 'raise' or 'result', got 'bogus'" in result.stderr

    def test_bad_option_is_usage_error(self, tmp_path: Path, policies: Path) -> None:
        """An unknown executor is bad usage: exit 2."""
        config = _write_config(tmp_path, [_echo("a", "policies")])

        result = _invoke("run", str(config), "--executor", "threads")

        assert 2 == result.exit_code


class TestOtherCommands:
    def test_schema_prints_the_config_schema(self) -> None:
        """`livecalc schema` prints the JSON Schema of the config."""

        result = _invoke("schema")

        assert config_json_schema() == json.loads(result.stdout)

    def test_engines_lists_builtins_and_aliases(self) -> None:
        """`livecalc engines` lists the built-in types with the seed's aliases."""

        result = _invoke("engines")

        assert 0 == result.exit_code
        assert "python_esg" in result.stdout and "solver" in result.stdout

    def test_generate_policies(self, tmp_path: Path) -> None:
        """`generate policies` writes the requested number of rows."""
        out = tmp_path / "p.parquet"

        result = _invoke("generate", "policies", str(out), "-n", "123", "--seed", "5")

        assert 0 == result.exit_code
        assert 123 == pq.ParquetFile(out).metadata.num_rows

    def test_generate_scenarios(self, tmp_path: Path) -> None:
        """`generate scenarios` writes outer x inner paths of the requested years."""
        out = tmp_path / "s.parquet"

        result = _invoke("generate", "scenarios", str(out), "--outer", "2", "--inner", "3")

        ids = pq.read_table(out).column("scenario_id").to_pylist()
        assert 0 == result.exit_code, result.output
        assert [0, 1, 2, 1000, 1001, 1002] == sorted(set(ids))
        assert 6 * 50 == len(ids)

    def test_generate_bad_argument_exits_2(self, tmp_path: Path) -> None:
        """A model the ESG does not know is a user error: exit 2, one line."""

        result = _invoke("generate", "scenarios", str(tmp_path / "s.parquet"), "--model", "x")

        assert 2 == result.exit_code
        assert "Traceback" not in result.output

    def test_demo_runs_the_full_pipeline(self, tmp_path: Path) -> None:
        """`demo` writes sample data and a config, and runs ESG -> projection -> solver with a
        converged premium goal-seek."""
        out = tmp_path / "demo"

        result = _invoke("demo", "--out", str(out), "--policies", "40", "--no-progress")

        summary = json.loads((out / "summary.json").read_text())
        solver = summary["nodes"][-1]["outputs"]
        assert 0 == result.exit_code, result.output
        assert ["esg", "projection", "solver"] == [n["node_id"] for n in summary["nodes"]]
        assert 40 * 1000 == pq.ParquetFile(out / "results.parquet").metadata.num_rows
        assert solver["optimization"]["converged"]
