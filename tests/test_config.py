"""The JSON config: parsing, every validation problem by JSON path, overrides, the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.errors import ConfigurationError
from livecalc.pipeline.config import PipelineConfig, config_json_schema
from livecalc.pipeline.loading import apply_overrides, load_config, parse_override

DATA = Path(__file__).parent / "data"
EXAMPLE_POLICIES = Path(__file__).parent.parent / "examples" / "data" / "policies.parquet"


def _problems(source: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_config(source, **kwargs)
    return str(info.value)


def _minimal() -> dict[str, Any]:
    return {
        "data_sources": {"policies": {"path": str(EXAMPLE_POLICIES)}},
        "engines": [
            {"id": "esg", "type": "esg", "config": {"outer": 2}, "outputs": ["scenarios"]},
            {
                "id": "projection",
                "type": "projection",
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
        ],
    }


class TestLoadConfig:
    def test_valid_config_parses_into_models(self) -> None:
        """A valid config becomes frozen models with defaults filled in."""

        config = load_config(_minimal())

        assert ["esg", "projection"] == [n.id for n in config.engines]
        assert 10_000 == config.run.chunk_size
        assert "local" == config.run.executor

    def test_seed_aliases_are_accepted(self) -> None:
        """The seed's engine type names validate like the built-in ones."""
        raw = _minimal()
        raw["engines"][0]["type"] = "python_esg"
        raw["engines"][1]["type"] = "cpp_projection"

        config = load_config(raw)

        assert "python_esg" == config.engines[0].type

    def test_relative_paths_resolve_against_the_config_folder(self, tmp_path: Path) -> None:
        """A data source path is looked up beside the config file, not the working folder."""
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "p.parquet").write_bytes(b"x")
        raw = _minimal()
        raw["data_sources"] = {"policies": {"path": "data/p.parquet"}}
        path = tmp_path / "config.json"
        path.write_text(json.dumps(raw))

        config = load_config(path)

        assert tmp_path.resolve() / "data" / "p.parquet" == config.resolve("data/p.parquet")

    def test_models_are_frozen(self) -> None:
        """A parsed config cannot be changed afterwards."""
        config = load_config(_minimal())

        with pytest.raises(ValueError):
            config.engines[0].id = "other"  # type: ignore[misc]


class TestValidationProblems:
    def test_cycle_is_named(self) -> None:
        """A cycle is reported with the nodes in data-flow order."""

        message = _problems(DATA / "cycle.json")

        assert "engines[0]: cycle a -> b -> a" in message

    def test_unknown_type_lists_the_known_ones(self) -> None:
        """An unknown type suggests the closest one and lists every known type and alias."""

        message = _problems(DATA / "unknown_type.json")

        assert "engines[0].type: unknown engine type 'esgg' (did you mean 'esg'?)" in message
        assert "projection" in message and "python_esg = esg" in message

    def test_duplicate_id(self) -> None:
        """A second node with the same id is named with the first one's position."""

        message = _problems(DATA / "duplicate_id.json")

        assert "engines[1].id: duplicate id 'esg' (also engines[0])" in message

    def test_input_nothing_produces(self) -> None:
        """An input that no engine or source produces gets a did-you-mean."""

        message = _problems(DATA / "unproduced_input.json")

        assert (
            "engines[1].inputs[0]: 'scenarioz' is produced by no engine and is no data source "
            "(did you mean 'scenarios'?)"
        ) in message

    def test_output_produced_twice(self) -> None:
        """Two engines writing the same output name are refused."""

        message = _problems(DATA / "output_twice.json")

        assert "engines[1].outputs[0]: 'scenarios' is already produced by engines[0]" in message

    def test_missing_data_file(self) -> None:
        """A data source whose file does not exist is reported with its resolved path."""

        message = _problems(DATA / "missing_file.json")

        assert "data_sources.policies.path: file" in message
        assert str(DATA.resolve() / "no_such_policies.parquet") in message

    def test_wrong_types_are_translated_to_json_paths(self) -> None:
        """Pydantic's errors come out as JSON paths such as engines[0].inputs[0]."""

        message = _problems(DATA / "wrong_type.json")

        assert "engines[0].inputs[0]: Input should be a valid string (got 7)" in message
        assert "run.chunk_size:" in message

    def test_unknown_key(self) -> None:
        """A misspelt key is reported by path with the fix."""

        message = _problems(DATA / "unknown_key.json")

        assert "engines[0].ouputs: unknown key; remove it or check its spelling" == message

    def test_invalid_json_names_line_and_column(self) -> None:
        """A JSON syntax error gives the file, line and column."""

        message = _problems(DATA / "invalid_json.json")

        assert "invalid JSON at line 2" in message

    def test_missing_config_file(self, tmp_path: Path) -> None:
        """A config path that does not exist says so."""

        message = _problems(tmp_path / "nope.json")

        assert "config file not found" in message

    def test_every_problem_is_reported_at_once(self) -> None:
        """Shape errors and graph errors of one config come in one error."""
        raw = {
            "engines": [
                {"id": "a", "type": "esgg", "inputs": ["b_out"], "outputs": ["a_out"]},
                {"id": "b", "type": "esg", "inputs": ["a_out"], "outputs": ["b_out"], "x": 1},
                {"id": "a", "type": "esg", "outputs": ["c"]},
            ],
            "run": {"executor": "threads"},
        }

        message = _problems(raw)

        assert message.startswith("5 problems in the config:")
        for fragment in (
            "engines[1].x: unknown key",
            "run.executor: 'threads' is not allowed",
            "engines[0].type: unknown engine type 'esgg'",
            "engines[2].id: duplicate id 'a'",
            "cycle a -> b -> a",
        ):
            assert fragment in message

    def test_csv_type_must_match_the_file_name(self, tmp_path: Path) -> None:
        """A source declared CSV whose file is not *.csv is refused (files are read by suffix)."""
        (tmp_path / "p.parquet").write_bytes(b"x")
        raw = _minimal()
        raw["data_sources"] = {"policies": {"type": "csv", "path": "p.parquet"}}

        message = _problems(raw, base_dir=tmp_path)

        assert "data_sources.policies.type: 'csv' does not match the file name" in message

    def test_output_write_names_must_be_record_outputs(self) -> None:
        """output.write must list outputs some engine produces."""
        raw = _minimal()
        raw["output"] = {"path": "out.parquet", "write": ["resuls"]}

        message = _problems(raw)

        assert "output.write[0]: 'resuls' is not an engine's record output" in message


class TestOverrides:
    def test_value_is_json_parsed(self) -> None:
        """A JSON value keeps its type; a bare word stays a string."""

        assert ("esg", ["outer"], 5) == parse_override("esg.outer=5")
        assert ("esg", ["model"], "hull_white") == parse_override("esg.model=hull_white")
        assert ("solver", ["metrics"], ["mean"]) == parse_override('solver.metrics=["mean"]')

    def test_override_reaches_the_engine_config(self) -> None:
        """--set engine.key=value changes that engine's config."""

        config = load_config(_minimal(), overrides=["esg.outer=7", "esg.nested.k=true"])

        assert {"outer": 7, "nested": {"k": True}} == config.engines[0].config

    def test_override_of_run_options(self) -> None:
        """run.key=value sets a run option."""

        config = load_config(_minimal(), overrides=["run.chunk_size=123"])

        assert 123 == config.run.chunk_size

    def test_unknown_engine_id(self) -> None:
        """An override for an id that does not exist names the ids."""

        message = _problems(_minimal(), overrides=["eesg.outer=1"])

        assert "no engine with id 'eesg' (did you mean 'esg'?)" in message

    def test_malformed_override(self) -> None:
        """An override without '=' or a key is refused with the expected form."""

        with pytest.raises(ConfigurationError, match=r"ENGINE_ID\.KEY=VALUE"):
            parse_override("esg=1")

    @settings(max_examples=30, deadline=None)
    @given(st.integers() | st.floats(allow_nan=False) | st.booleans() | st.text(max_size=10))
    def test_apply_leaves_the_input_untouched(self, value: Any) -> None:
        """Overriding returns a copy: the caller's dict is not modified."""
        raw = _minimal()
        before = json.dumps(raw)

        apply_overrides(raw, [f"esg.outer={json.dumps(value)}"])

        assert before == json.dumps(raw)


class TestSchema:
    def test_schema_has_every_section(self) -> None:
        """The exported schema describes the config's top-level keys, not internal ones."""

        schema = config_json_schema()

        assert {
            "$schema", "plugins", "data_sources", "engines", "output", "run", "checks", "sla",
            "alerts", "report",
        } == set(schema["properties"])  # fmt: skip

    def test_committed_schema_is_current(self) -> None:
        """docs/config.schema.json matches the models (regenerate with `livecalc schema`)."""
        path = Path(__file__).parents[1] / "docs" / "config.schema.json"

        assert config_json_schema() == json.loads(path.read_text())

    def test_examples_validate(self) -> None:
        """Every example config passes validation."""
        examples = sorted((Path(__file__).parents[1] / "examples").glob("dag_config_*.json"))

        configs = [load_config(p) for p in examples]

        assert 3 == len(configs)
        assert all(isinstance(c, PipelineConfig) for c in configs)


class TestRequiredInputs:
    def test_solver_without_inputs_is_refused_by_validate_and_run(self, tmp_path: Path) -> None:
        """A solver with "inputs": [] fails validation (exit 2) naming its JSON path."""
        from typer.testing import CliRunner

        from livecalc.cli.app import app

        raw = _minimal()
        raw["engines"].append(
            {"id": "solver", "type": "solver", "config": {"metrics": ["mean"]}, "inputs": []}
        )
        raw["output"] = {"path": "out/results.parquet", "summary_path": "out/summary.json"}
        config = tmp_path / "config.json"
        config.write_text(json.dumps(raw))

        validated = CliRunner().invoke(app, ["validate", str(config)])
        ran = CliRunner().invoke(app, ["run", str(config)])

        for result in (validated, ran):
            assert 2 == result.exit_code, result.output
            assert "engines[2].inputs: the solver 'solver' needs projection results" in (
                result.output
            )
            assert "add one of 'results'" in result.output
        assert not (tmp_path / "out").exists()

    def test_projection_without_policies_is_refused(self) -> None:
        """A projection reading only scenarios is refused: it needs policy records."""
        raw = _minimal()
        raw["engines"][1]["inputs"] = ["scenarios"]

        problems = _problems(raw)

        assert "engines[1].inputs: the projection 'projection' needs policy records" in problems

    def test_seed_alias_and_plug_in_producers(self) -> None:
        """Aliases are checked like their type; a plug-in's output may feed a solver."""
        raw = _minimal()
        raw["engines"] = [
            {"id": "p", "type": "cpp_projection", "inputs": ["x"], "outputs": ["r"]},
            {"id": "x", "type": "native", "outputs": ["x"]},
            {"id": "s", "type": "python_solver", "inputs": ["p_out"]},
        ]

        problems = _problems(raw)

        assert "engines[0].inputs" not in problems
        assert "engines[2].inputs[0]: 'p_out' is produced by no engine" in problems
        assert "engines[2].inputs: " not in problems
