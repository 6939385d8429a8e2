"""Non-finite numbers never pass as results: config values are checked, outputs refused.

``Infinity``, ``NaN`` (JSON literals Python's json accepts) and absurd values such as ``1e308``
are refused by key when the config is read; an engine whose output still holds a non-finite
number fails with its name, the parameters in play and the first bad record.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.engines._finite import check_finite
from livecalc.engines.esg import ESGEngine
from livecalc.engines.projection import ProjectionEngine
from livecalc.engines.solver import SolverEngine
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.runtime.buffers import POLICY_DTYPE, RESULT_DTYPE

LIVECALC = str(Path(sys.executable).parent / "livecalc")


def _projection_error(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as info:
        ProjectionEngine().initialize(config)
    return str(info.value)


def _esg_run(config: dict[str, Any]) -> np.ndarray:
    engine = ESGEngine()
    engine.initialize(config)
    spec = engine.output_spec({})
    assert spec is not None
    out = np.zeros(spec.records, dtype=spec.dtype)
    engine.run_chunk(None, out)
    return out


class TestProjectionConfigRanges:
    @pytest.mark.parametrize(
        ("config", "key"),
        [
            ({"expense_multiplier": math.inf}, "config.expense_multiplier"),
            ({"premium_multiplier": 1e308}, "config.premium_multiplier"),
            ({"mortality_multiplier": math.nan}, "config.mortality_multiplier"),
            ({"expenses": {"inflation": math.inf}}, "config.expenses.inflation"),
            ({"expenses": {"inflation": 1e308}}, "config.expenses.inflation"),
            ({"expenses": {"maintenance": 1e308}}, "config.expenses.maintenance"),
            ({"discount_rate": math.inf}, "config.discount_rate"),
            ({"underwriting_class_factors": [1.0, 1e308]}, "underwriting_class_factors[1]"),
            ({"commissions": [0.5, math.nan]}, "config.commissions"),
            ({"dynamic_lapse": {"reference_rate": 0.03, "sensitivity": 1e300}}, "sensitivity"),
        ],
    )
    def test_non_finite_or_absurd_value_names_its_key(
        self, config: dict[str, Any], key: str
    ) -> None:
        """A non-finite or out-of-range number is a ConfigurationError naming its key."""

        message = _projection_error(config)

        assert key in message

    def test_set_parameters_refuses_huge_multiplier(self) -> None:
        """set_parameters refuses a multiplier of 1e308, as the config does."""
        engine = ProjectionEngine()
        engine.initialize({})

        with pytest.raises(ConfigurationError, match=r"expense_multiplier = 1e\+308"):
            engine.set_parameters({"expense_multiplier": 1e308})

    def test_solver_bounds_stay_within_the_projection_range(self) -> None:
        """A solver may not search multipliers the projection would refuse."""
        opt = {
            "parameters": [{"name": "expense_multiplier", "bounds": [0.0, 1e308]}],
            "objective": {"metric": "mean", "direction": "maximize"},
        }

        with pytest.raises(ConfigurationError, match=r"parameters\[0\]\.bounds: upper bound"):
            SolverEngine().initialize({"optimization": opt})


class TestNonFiniteOutput:
    def test_projection_refuses_infinite_npv(self) -> None:
        """A policy whose cash flows overflow fails the chunk, naming engine, record, parameters."""
        engine = ProjectionEngine()
        engine.initialize({})
        policies = np.array(
            [(1, 40, 0, 0, 0, 10, 1e5, 1e3), (7, 40, 0, 0, 0, 10, 1e308, 1e308)],
            dtype=POLICY_DTYPE,
        )
        spec = engine.output_spec({"policies": policies})
        out = np.zeros(spec.records, dtype=spec.dtype)

        with pytest.raises(ExecutionError) as info:
            engine.run_chunk({"policies": policies}, out)

        message = str(info.value)
        assert "the projection engine: 1 of 2 output records are not finite" in message
        assert "record 1 (scenario_id 0, policy_id 7): npv = " in message  # inf or nan
        assert "premium_multiplier = 1.0" in message

    def test_finite_values_whose_sum_overflows_pass(self) -> None:
        """Records that are all finite pass even when their sum is not (the check adds the
        values first, and looks record by record only when that sum is not finite)."""
        records = np.zeros(3, dtype=RESULT_DTYPE)
        records["npv"] = [1e308, 1e308, -1e308]

        check_finite(records, "projection", {}, "")

        records["npv"][2] = np.nan
        with pytest.raises(ExecutionError, match="1 of 3 output records are not finite"):
            check_finite(records, "projection", {}, "")

    def test_esg_refuses_overflowing_paths(self) -> None:
        """Paths that overflow within range-valid parameters fail, naming the parameters."""
        config = {"model": "hull_white", "a": 0.001, "sigma": 1.0, "years": 1000, "inner": 20}

        with pytest.raises(ExecutionError) as info:
            _esg_run(config)

        message = str(info.value)
        assert "the esg engine:" in message
        assert "sigma = 1.0" in message
        assert "the first is record" in message

    @pytest.mark.parametrize(
        ("config", "key"),
        [
            ({"sigma": 5}, "config.sigma: 5 is out of range"),
            ({"model": "vasicek", "r0": math.inf}, "config.r0"),
            ({"model": "simple", "volatility": 1e308}, "config.volatility"),
            ({"market_price_of_risk": math.nan}, "config.market_price_of_risk"),
            ({"model": "vasicek", "a": 0.001, "sigma": 1.0, "years": 300}, "config.sigma"),
        ],
    )
    def test_esg_refuses_absurd_parameters(self, config: dict[str, Any], key: str) -> None:
        """ESG parameters outside a sane range are refused by key before any path is drawn."""
        with pytest.raises(ConfigurationError) as info:
            ESGEngine().initialize(config)

        assert key in str(info.value)


class TestCommandLine:
    def _pipeline(self, tmp_path: Path, esg: dict[str, Any], projection: str) -> Path:
        write_policies(tmp_path / "policies.parquet", generate_policies(20, seed=1))
        esg_node = {"id": "esg", "type": "esg", "config": esg, "outputs": ["scenarios"]}
        text = json.dumps(
            {
                "data_sources": {"policies": {"path": "policies.parquet"}},
                "engines": [
                    esg_node,
                    {
                        "id": "projection",
                        "type": "projection",
                        "config": {"expense_multiplier": "@"},
                        "inputs": ["policies", "scenarios"],
                        "outputs": ["results"],
                    },
                ],
                "output": {"path": "out/{name}.parquet", "write": ["scenarios", "results"]},
            }
        )
        path = tmp_path / "pipeline.json"
        # A JSON literal such as Infinity, which Python's json reads as a float.
        path.write_text(text.replace('"@"', projection), "utf-8")
        return path

    def test_infinity_literal_exits_2_naming_the_key(self, tmp_path: Path) -> None:
        """`Infinity` in the config file is refused at validation, by key, with exit 2."""
        config = self._pipeline(tmp_path, {"outer": 1, "inner": 5, "years": 5}, "Infinity")

        result = subprocess.run(
            [LIVECALC, "run", str(config)], capture_output=True, text=True, timeout=120
        )

        assert 2 == result.returncode
        assert "engines[1].config.expense_multiplier: inf is not a finite number" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists()

    def test_overflowing_scenarios_exit_1_and_write_nothing(self, tmp_path: Path) -> None:
        """An ESG whose paths overflow fails the run (exit 1) and leaves no scenario file."""
        esg = {"a": 0.001, "sigma": 1.0, "years": 1000, "inner": 5}
        config = self._pipeline(tmp_path, esg, "1.0")

        result = subprocess.run(
            [LIVECALC, "run", str(config)], capture_output=True, text=True, timeout=120
        )

        assert 1 == result.returncode
        assert "the esg engine:" in result.stderr
        assert "Traceback" not in result.stderr
        assert [] == sorted(p.name for p in (tmp_path / "out").glob("*scenarios*"))
