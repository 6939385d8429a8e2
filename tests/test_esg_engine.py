"""ESGEngine: config validation, the engine contract, metadata and chunked generation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.engines.esg import ESGEngine, parse_esg_config
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.runtime.buffers import SCENARIO_DTYPE
from livecalc.runtime.factory import EngineFactory

DESIGN_EXAMPLE = {"model": "hull_white", "outer": 10, "inner": 100, "years": 50, "seed": 42}


def _run(config: dict[str, Any]) -> tuple[ESGEngine, np.ndarray]:
    engine = ESGEngine()
    engine.initialize(config)
    spec = engine.output_spec({})
    assert spec is not None
    buffer = np.empty(spec.records, dtype=spec.dtype)
    engine.run_chunk(None, buffer)
    return engine, buffer


def _error(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as info:
        ESGEngine().initialize(config)
    return str(info.value)


class TestESGConfig:
    def test_design_example_works_with_defaults(self) -> None:
        """DESIGN's example config initialises with defaults for everything else."""

        settings = parse_esg_config(DESIGN_EXAMPLE)

        assert ("hull_white", 10, 100, 50, 0, False) == (
            settings.model,
            settings.outer,
            settings.layout.inner,
            settings.layout.years,
            settings.layout.branching_year,
            settings.layout.antithetic,
        )
        assert {"a": 0.1, "sigma": 0.01} == settings.parameters

    def test_more_than_1000_inner_paths_refused(self) -> None:
        """inner > 1000 is refused, explaining the scenario_id scheme."""

        message = _error({"inner": 1001})

        assert "config.inner" in message
        assert "outer_id * 1000 + inner_id" in message

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            ({"model": "black_karasinski"}, "config.model: 'black_karasinski' is not a model"),
            ({"sigma": -0.01}, "config.sigma: -0.01 is out of range"),
            ({"a": 0}, "config.a: 0 is out of range"),
            ({"years": 2.5}, "config.years: 2.5 is not a whole number"),
            ({"seed": "x"}, "config.seed: 'x' is not a whole number"),
            ({"antithetic": 1}, "config.antithetic: 1 is not true or false"),
            ({"sigmma": 0.01}, "config.sigmma: unknown key (did you mean 'sigma'?)"),
            ({"b": 0.03}, "config.b: not a parameter of model 'hull_white'"),
            ({"branching_year": 60}, "config.branching_year: 60 is out of range"),
            ({"antithetic": True, "inner": 5}, "config.inner: 5 is odd"),
            ({"model": "cir", "antithetic": True}, "config.antithetic: CIR"),
            ({"model": "cir", "market_price_of_risk": 5.0}, "config.market_price_of_risk"),
            ({"model": "simple", "market_price_of_risk": 0.1}, "config.market_price_of_risk"),
            ({"model": "simple", "initial_rate": 0.5}, "config.initial_rate: must lie within"),
            ({"curve": {"file": "c.csv", "kinds": "spot"}}, "config.curve.kinds: unknown key"),
            (
                {"curve": {"rate": 0.03, "compunding": "continuous"}},
                "config.curve.compunding: unknown key (did you mean 'compounding'?); known keys "
                "here: rate, file, kind, compounding",
            ),
            ({"curve": {"rate": 0.03, "file": "c.csv"}}, "config.curve: 'rate' and 'file' both"),
            ({"curve": {"rate": 0.03, "kind": "spot"}}, "config.curve.kind: applies to a curve"),
            ({"curve": {"compounding": "annual"}}, "config.curve: keys ['compounding'] name no"),
            ({"curve": "abc"}, "config.curve"),
            ({"curve": {"file": "/nonexistent/c.csv"}}, "config.curve.file"),
            ({"outer": 100_000, "inner": 1000, "years": 50}, "exceeds the SCENARIO limit"),
        ],
    )
    def test_bad_config_names_the_key(self, config: dict[str, Any], expected: str) -> None:
        """Each bad value raises ConfigurationError naming config.<key> and what to give."""

        assert expected in _error(config)

    def test_every_problem_reported_at_once(self) -> None:
        """Several problems are reported together in one error."""

        message = _error({"outer": 0, "sigma": "high", "colour": 1})

        assert ["config.colour", "config.outer", "config.sigma"] == sorted(
            line.strip().split(":")[0] for line in message.splitlines()[1:]
        )
        assert message.startswith("3 problems")

    def test_seed_style_string_values_accepted(self) -> None:
        """String values, as the seed's string-to-string configs had, are read as numbers."""

        settings = parse_esg_config({"outer": "2", "sigma": "0.02", "antithetic": "true"})

        assert (2, 0.02, True) == (
            settings.outer,
            settings.parameters["sigma"],
            settings.layout.antithetic,
        )

    @pytest.mark.parametrize(
        ("compounding", "expected"), [("continuous", math.exp(-0.03)), ("annual", 1 / 1.03)]
    )
    def test_flat_curve_follows_its_compounding(self, compounding: str, expected: float) -> None:
        """A flat curve object reads its rate with its compounding: P(0, 1) = exp(-0.03)."""
        config = {"curve": {"rate": 0.03, "compounding": compounding}}

        settings = parse_esg_config(config)

        assert settings.curve is not None
        assert math.isclose(expected, float(settings.curve.discount_factor(1.0)), rel_tol=1e-12)

    def test_curve_file_relative_to_base_dir(self, tmp_path: Path) -> None:
        """A relative curve file resolves against base_dir; discount factors are read as such."""
        (tmp_path / "c.csv").write_text("maturity,discount_factor\n1,0.98\n", encoding="utf-8")
        config = {"curve": {"file": "c.csv", "kind": "discount"}}

        settings = parse_esg_config(config, base_dir=tmp_path)

        assert settings.curve is not None
        assert (0.98,) == settings.curve.discount_factors


class TestESGEngine:
    def test_output_spec_is_outer_inner_years_records(self) -> None:
        """output_spec asks for outer x inner x years SCENARIO records."""
        engine = ESGEngine()
        engine.initialize(DESIGN_EXAMPLE)

        spec = engine.output_spec({})

        assert spec is not None
        assert (SCENARIO_DTYPE, 50_000) == (spec.dtype, spec.records)

    def test_run_fills_the_buffer(self) -> None:
        """run_chunk writes every record and reports rows and bytes."""
        engine = ESGEngine()
        engine.initialize({"outer": 3, "inner": 4, "years": 5})
        buffer = np.zeros(60, dtype=SCENARIO_DTYPE)

        result = engine.run_chunk(None, buffer)

        assert (True, 60, 960) == (result.success, result.rows_processed, result.bytes_written)
        assert [1, 2, 3, 4, 5] * 12 == buffer["year"].tolist()
        assert 2003 == int(buffer["scenario_id"][-1])

    def test_blocks_give_the_same_records(self) -> None:
        """Generating in blocks of outer paths gives the records of one block, bit for bit."""
        config = {"model": "vasicek", "outer": 7, "inner": 10, "years": 6, "branching_year": 2}
        _, whole = _run(config)
        engine = ESGEngine()
        engine.BLOCK_RECORDS = 100  # one or two outer paths per kernel call
        engine.initialize(config)
        blocks = np.empty_like(whole)

        engine.run_chunk(None, blocks)

        assert whole.tobytes() == blocks.tobytes()

    def test_generate_streams_outer_ranges(self) -> None:
        """generate writes any outer range as it appears in the whole set."""
        engine, whole = _run({"outer": 5, "inner": 2, "years": 3})
        part = np.empty(12, dtype=SCENARIO_DTYPE)

        rows = engine.generate(part, 2, 4)

        assert 12 == rows
        assert whole[12:24].tobytes() == part.tobytes()

    def test_same_seed_same_scenarios(self) -> None:
        """Two engines with the same config produce identical scenarios; another seed differs."""
        _, first = _run({"outer": 2, "inner": 10, "years": 5, "seed": 3})
        _, again = _run({"outer": 2, "inner": 10, "years": 5, "seed": 3})
        _, other = _run({"outer": 2, "inner": 10, "years": 5, "seed": 4})

        assert first.tobytes() == again.tobytes()
        assert first.tobytes() != other.tobytes()

    def test_metadata_is_json(self) -> None:
        """get_outputs gives JSON-able ESG metadata with model, seed, compounding and curve."""
        engine = ESGEngine()
        before = dict(engine.get_outputs())
        engine.initialize(DESIGN_EXAMPLE)
        known_early = dict(engine.get_outputs())
        engine.run_chunk(None, np.empty(50_000, dtype=SCENARIO_DTYPE))

        metadata = json.loads(json.dumps(engine.get_outputs()["esg_metadata"]))

        assert {} == before
        assert known_early["esg_metadata"] == metadata
        assert ("hull_white", 42, "annual", 50) == (
            metadata["model"],
            metadata["seed"],
            metadata["compounding"],
            len(metadata["curve"]["discount_factors"]),
        )
        assert abs(1.03**-50 - metadata["curve"]["discount_factors"][-1]) < 1e-15

    def test_models_without_input_curve_record_closed_form(self) -> None:
        """Vasicek records its closed-form curve; the simple model records none."""
        vasicek = ESGEngine()
        vasicek.initialize({"model": "vasicek", "r0": 0.03, "b": 0.03, "sigma": 0.0})
        simple = ESGEngine()
        simple.initialize({"model": "simple"})

        curve = vasicek.metadata["curve"]

        assert abs(np.exp(-0.03 * 10) - curve["discount_factors"][9]) < 1e-14
        assert simple.metadata["curve"] is None

    @pytest.mark.parametrize("model", ["hull_white", "vasicek", "cir", "simple"])
    def test_every_model_runs(self, model: str) -> None:
        """Each model fills its buffer with finite rates above -100%."""

        _, buffer = _run({"model": model, "outer": 2, "inner": 4, "years": 5, "branching_year": 2})

        assert bool(np.all(np.isfinite(buffer["rate"]) & (buffer["rate"] > -1.0)))

    def test_small_buffer_raises_execution_error(self) -> None:
        """A buffer with too few records raises ExecutionError giving both counts."""
        engine = ESGEngine()
        engine.initialize({"outer": 1, "inner": 2, "years": 3})

        with pytest.raises(ExecutionError, match="holds 5 records; the ESG writes 6"):
            engine.run_chunk(None, np.empty(5, dtype=SCENARIO_DTYPE))

    def test_uninitialised_and_disposed(self) -> None:
        """run_chunk before initialize or after dispose raises ExecutionError."""
        engine = ESGEngine()
        engine.initialize({"outer": 1, "inner": 2, "years": 3})
        engine.dispose()

        with pytest.raises(ExecutionError, match="not initialised"):
            engine.run_chunk(None, np.empty(6, dtype=SCENARIO_DTYPE))
        assert False is engine.is_initialized

    def test_factory_builds_it_under_both_names(self) -> None:
        """The factory creates the ESG as 'esg' and as the seed's 'python_esg'."""
        factory = EngineFactory(discover=False)

        engines = [factory.create_engine(name) for name in ("esg", "python_esg")]

        assert [True, True] == [isinstance(e, ESGEngine) for e in engines]
        assert "esg" == engines[0].get_info().engine_type
