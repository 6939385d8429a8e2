"""Goal-seeks through the real projection engine: directly, and in an ESG → projection →
solver pipeline run by the DAG runner."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.engines.projection import ProjectionEngine
from livecalc.engines.solver import SolverEngine
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.runner import Runner
from livecalc.runtime.buffers import SCENARIO_DTYPE
from livecalc.runtime.factory import EngineFactory
from livecalc.solver.risk import scenario_values

N_SCENARIOS, N_YEARS = 12, 70


def scenarios() -> np.ndarray:
    """Twelve scenarios of 70 years of rates around 3%."""
    rng = np.random.default_rng(11)
    out = np.zeros(N_SCENARIOS * N_YEARS, SCENARIO_DTYPE)
    out["scenario_id"] = np.repeat(np.arange(N_SCENARIOS), N_YEARS)
    out["year"] = np.tile(np.arange(1, N_YEARS + 1), N_SCENARIOS)
    out["rate"] = 0.03 + 0.01 * rng.standard_normal(out.size)
    return out


class ProjectionEvaluator:
    """What the runner binds: set_parameters on the projection, re-run, return its records."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.engine = ProjectionEngine()
        self.engine.initialize(config)
        self.inputs = {"policies": generate_policies(150, seed=4).records, "scenarios": scenarios()}
        spec = self.engine.output_spec(self.inputs)
        self.out = np.zeros(spec.records, spec.dtype)
        self.calls = 0

    def __call__(self, overrides: Mapping[str, float]) -> np.ndarray:
        self.calls += 1
        self.engine.set_parameters(overrides)
        self.engine.run_chunk(self.inputs, self.out)
        return self.out.copy()


def seek(evaluator: ProjectionEvaluator, name: str, bounds: list[float], **objective: Any) -> Any:
    solver = SolverEngine()
    solver.initialize(
        {
            "optimization": {
                "parameters": [{"name": name, "bounds": bounds}],
                "objective": {"metric": "mean", "direction": "target", **objective},
            }
        }
    )
    solver.bind_evaluator(evaluator)
    solver.run_chunk({"results": evaluator({name: 1.0})}, None)
    return solver.get_outputs()["optimization"]


class TestProjectionGoalSeek:
    def test_premium_goal_seek_is_affine(self) -> None:
        """Mean NPV = 0 over the premium multiplier is solved by the verified secant."""

        evaluator = ProjectionEvaluator({"output": "npv"})

        opt = seek(evaluator, "premium_multiplier", [0.2, 5.0], target=0.0)

        check = scenario_values(
            evaluator({"premium_multiplier": opt["parameters"]["premium_multiplier"]})
        )
        assert (True, True, 3) == (opt["converged"], opt["affine"], opt["evaluations"])
        assert 0.0 == pytest.approx(
            float(check.npv.mean()), abs=1e-6 * float(np.abs(check.npv).max())
        )

    def test_mortality_goal_seek_uses_brentq(self) -> None:
        """Mean NPV against the mortality multiplier is not affine: brentq hits the target."""

        evaluator = ProjectionEvaluator({"output": "scenario_totals"})
        base = float(scenario_values(evaluator({"mortality_multiplier": 1.0})).npv.mean())
        low = float(scenario_values(evaluator({"mortality_multiplier": 0.5})).npv.mean())
        target = (base + low) / 2

        opt = seek(evaluator, "mortality_multiplier", [0.5, 1.0], target=target)

        assert opt["converged"]
        assert target == pytest.approx(opt["objective_value"], rel=1e-8)
        assert 0.5 < opt["parameters"]["mortality_multiplier"] < 1.0
        assert opt["evaluations"] == evaluator.calls - 3


class TestPipeline:
    def test_esg_projection_solver_run(self, tmp_path: Path) -> None:
        """In a nested ESG → projection → solver run the premium goal-seek converges and the
        solver reports per-outer statistics."""

        write_policies(tmp_path / "policies.parquet", generate_policies(120, seed=5))
        solver_config = {
            "metrics": ["cte_95"],
            "optimization": {
                "parameters": [{"name": "premium_multiplier", "bounds": [0.2, 5.0]}],
                "objective": {"metric": "mean", "direction": "target", "target": 0.0},
            },
        }
        raw = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "esg",
                    "type": "esg",
                    "config": {"model": "hull_white", "outer": 2, "inner": 10, "years": 60},
                    "outputs": ["scenarios"],
                },
                {
                    "id": "projection",
                    "type": "projection",
                    "config": {"output": "scenario_totals"},
                    "inputs": ["policies", "scenarios"],
                    "outputs": ["results"],
                },
                {
                    "id": "solver",
                    "type": "solver",
                    "config": solver_config,
                    "inputs": ["results"],
                    "outputs": ["solution"],
                },
            ],
        }
        factory = EngineFactory()

        summary = Runner(
            load_config(raw, factory=factory, base_dir=tmp_path), factory=factory
        ).run()

        out = summary.nodes["solver"].outputs
        assert summary.success
        assert (True, 3) == (out["solution"]["converged"], out["solution"]["evaluations"])
        assert [0, 1] == list(out["per_outer"])
        assert 20.0 == out["metrics"]["count"]
