"""The solver engine: config errors, risk outputs, and goal-seeks through an evaluator."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.engines.solver import SolverEngine
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.runner import Runner
from livecalc.runtime.buffers import (
    POLICY_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    OutputSpec,
    SupportsEvaluator,
)
from livecalc.runtime.factory import EngineFactory

N_SCENARIOS = 200
PREMIUMS = 1000.0


def claims() -> np.ndarray:
    """Present value of claims per scenario: fixed, reproducible, spread out."""
    return np.random.default_rng(7).uniform(600.0, 1400.0, N_SCENARIOS)


class PricingEvaluator:
    """A deterministic projection stand-in: npv = premium_multiplier·P - mortality·claims.

    It builds SCENARIO_TOTAL records for the overrides, as the runner's evaluator returns the
    projection's merged records, and counts its calls.
    """

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self.ids = np.arange(N_SCENARIOS) if ids is None else ids
        self.calls: list[dict[str, float]] = []

    def records(self, overrides: Mapping[str, float]) -> np.ndarray:
        out = np.zeros(self.ids.size, SCENARIO_TOTAL_DTYPE)
        out["scenario_id"] = self.ids
        out["premium_income"] = PREMIUMS * overrides.get("premium_multiplier", 1.0)
        out["death_benefits"] = claims()[: self.ids.size] * overrides.get(
            "mortality_multiplier", 1.0
        )
        out["npv"] = out["premium_income"] - out["death_benefits"]
        return out

    def __call__(self, overrides: Mapping[str, float]) -> np.ndarray:
        self.calls.append(dict(overrides))
        return self.records(overrides)


def solver(config: dict[str, Any]) -> SolverEngine:
    engine = SolverEngine()
    engine.initialize(config)
    return engine


def premium_goal(target: Any = 50.0, **objective: Any) -> dict[str, Any]:
    return {
        "optimization": {
            "parameters": [{"name": "premium_multiplier", "bounds": [0.5, 2.0]}],
            "objective": {"metric": "mean", "direction": "target", "target": target, **objective},
        }
    }


class TestSolverConfig:
    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"colour": 1}, "config.colour: unknown key; known keys here: basis, metrics"),
            (
                {"optimization": {**premium_goal()["optimization"], "algoritm": "slsqp"}},
                "config.optimization.algoritm: unknown key (did you mean 'algorithm'?); "
                "known keys here: algorithm, parameters",
            ),
            (
                {
                    "optimization": {
                        **premium_goal()["optimization"],
                        "constraints": [{"metric": "mean", "operator": ">=", "valu": 1}],
                    }
                },
                "config.optimization.constraints[0].valu: unknown key (did you mean 'value'?); "
                "known keys here: metric, operator, value",
            ),
            ({"basis": "profit"}, "config.basis: Input should be 'npv' or 'loss'"),
            ({"metrics": ["cte_95", "ctee_9"]}, "config.metrics: metric 'ctee_9' is unknown"),
            ({"percentiles": [150]}, "config.percentiles: 150 is not a percentile"),
            ({"per_outer": "sometimes"}, "config.per_outer: 'sometimes': use \"auto\", true"),
            (
                {
                    "optimization": {
                        "parameters": [{"name": "premium_multiplier", "bounds": [2, 1]}],
                        "objective": {"metric": "mean", "direction": "maximize"},
                    }
                },
                "config.optimization.parameters[0].bounds: lower bound 2 must be below",
            ),
            (
                {
                    "optimization": {
                        "parameters": [{"name": "lapse_rate", "bounds": [0, 1]}],
                        "objective": {"metric": "mean", "direction": "maximize"},
                    }
                },
                "config.optimization.parameters[0].name: 'lapse_rate' is not a projection",
            ),
            (
                {
                    "optimization": {
                        "parameters": [{"name": "premium_multiplier", "bounds": [0, 1]}]
                    }
                },
                "config.optimization.objective: required: add it",
            ),
            (
                {"custom_metrics": {"x": "__import__('os').system('true')"}},
                "config.custom_metrics.x: a function call at column 1 is not allowed",
            ),
            ({"custom_metrics": {"mean": "std"}}, "config.custom_metrics.mean: use an identifier"),
        ],
    )
    def test_bad_config_names_the_field(self, config: dict[str, Any], message: str) -> None:
        """Each bad config raises ConfigurationError naming its JSON path and the fix."""

        with pytest.raises(ConfigurationError) as info:
            SolverEngine().initialize(config)

        assert message in str(info.value)

    def test_unknown_objective_metric_suggests_a_name(self) -> None:
        """An objective on an unknown metric names the field and suggests the closest metric."""

        config = premium_goal()
        config["optimization"]["objective"]["metric"] = "meen"
        config["optimization"]["constraints"] = [{"metric": "cte95x", "operator": ">=", "value": 0}]

        with pytest.raises(ConfigurationError) as info:
            SolverEngine().initialize(config)

        text = str(info.value)
        assert "config.optimization.objective.metric: 'meen' is not a metric (did you mean" in text
        assert "config.optimization.constraints[0].metric: 'cte95x' is not a metric" in text


class TestRiskOutputs:
    def test_statistics_of_scenario_totals(self) -> None:
        """Without optimisation the outputs hold the metrics of the input's per-scenario NPVs."""

        engine = solver({"metrics": ["cte_95"], "percentiles": [97.5]})
        records = PricingEvaluator().records({})

        result = engine.run_chunk({"results": records}, None)
        out = engine.get_outputs()

        npv = records["npv"]
        assert (True, N_SCENARIOS, 0) == (
            result.success,
            result.rows_processed,
            result.bytes_written,
        )
        assert "npv" == out["basis"]
        assert float(npv.mean()) == pytest.approx(out["metrics"]["mean"], rel=1e-12)
        assert float(np.sort(npv)[:10].mean()) == pytest.approx(out["metrics"]["cte_95"])
        assert float(np.quantile(npv, 0.975, method="inverted_cdf")) == out["metrics"]["p97_5"]
        assert {} == out["per_outer"]
        assert None is out["optimization"]
        assert out == pickle.loads(pickle.dumps(out))

    def test_per_policy_results_sum_per_scenario(self) -> None:
        """RESULT and RESULT_DETAIL records are summed over policies before any measure."""

        result = np.zeros(4, RESULT_DTYPE)
        result["scenario_id"] = [0, 0, 1, 1]
        result["npv"] = [1.0, 2.0, 10.0, 20.0]
        detail = np.zeros(2, RESULT_DETAIL_DTYPE)
        detail["scenario_id"] = [0, 1]
        detail["npv"] = [100.0, 100.0]
        engine = solver({"basis": "loss"})

        engine.run_chunk({"a": result, "b": detail}, None)

        out = engine.get_outputs()
        assert -(103.0 + 130.0) / 2 == out["metrics"]["mean"]
        assert -103.0 == out["metrics"]["max"]
        assert "loss = -NPV" in out["sign_convention"]

    def test_nested_runs_report_per_outer(self) -> None:
        """Ids outer*1000+inner give per-outer metrics; per_outer false turns them off."""

        ids = np.array([o * 1000 + i for o in range(4) for i in range(50)])
        records = PricingEvaluator(ids).records({})

        nested = solver({})
        nested.run_chunk(records, None)
        flat = solver({"per_outer": False})
        flat.run_chunk(records, None)

        per = nested.get_outputs()["per_outer"]
        assert [0, 1, 2, 3] == list(per)
        assert float(records["npv"][50:100].mean()) == pytest.approx(per[1]["mean"])
        assert {} == flat.get_outputs()["per_outer"]

    def test_custom_metric(self) -> None:
        """A custom metric is computed from the other metrics and reported beside them."""

        engine = solver({"custom_metrics": {"margin": "mean - 0.5 * std", "ratio": "margin/2"}})
        engine.run_chunk(PricingEvaluator().records({}), None)

        m = engine.get_outputs()["metrics"]
        assert m["mean"] - 0.5 * m["std"] == m["margin"]
        assert m["margin"] / 2 == m["ratio"]

    def test_custom_metric_on_an_unlisted_measure(self) -> None:
        """A custom metric may read any measure, with a basis prefix, even if not listed."""

        engine = solver({"metrics": [], "custom_metrics": {"tail": "loss_cte_90 + 0 * p97_5"}})
        records = PricingEvaluator().records({})
        engine.run_chunk(records, None)

        losses = np.sort(-records["npv"])
        assert float(losses[-20:].mean()) == pytest.approx(engine.get_outputs()["metrics"]["tail"])


class TestNonFiniteMetrics:
    @pytest.mark.parametrize(
        ("npv", "message"),
        [
            # Two finite records of one scenario whose sum overflows to -inf.
            ([-1e308, -1e308, 1.0, 2.0], r"scenario 0's summed npv overflows to -inf"),
            # Finite scenario totals whose mean overflows.
            ([-1.5e308, 0.0, -1.5e308, 0.0], r"too large to combine"),
        ],
    )
    def test_an_overflowing_sum_is_refused(self, npv: list[float], message: str) -> None:
        """Finite NPVs whose sums overflow give an ExecutionError naming the metric, never a
        metric of -inf (issue 19 item 16)."""
        records = np.zeros(4, RESULT_DTYPE)
        records["scenario_id"] = [0, 0, 1, 1] if "summed" in message else [0, 1, 2, 3]
        records["npv"] = npv

        with pytest.raises(ExecutionError, match=message):
            solver({}).run_chunk(records, None)

    def test_the_cli_fails_the_solver_node_with_exit_1(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """Policies with sum_assured 1e306 through ESG -> projection -> solver: exit 1, the
        solver named, no traceback, no summary claiming a mean of -inf."""
        import json
        import subprocess
        import sys

        policies = generate_policies(50, seed=3, max_term=10)
        policies.records["sum_assured"] = 1e306
        write_policies(tmp_path / "policies.parquet", policies)
        config = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "esg",
                    "type": "esg",
                    "config": {"outer": 2, "inner": 10, "years": 10, "seed": 1},
                    "outputs": ["scenarios"],
                },
                {
                    "id": "projection",
                    "type": "projection",
                    "inputs": ["policies", "scenarios"],
                    "outputs": ["results"],
                },
                {"id": "risk", "type": "solver", "inputs": ["results"], "outputs": ["s"]},
            ],
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        exe = Path(sys.executable).with_name("livecalc")

        done = subprocess.run(
            [str(exe), "run", str(tmp_path / "config.json"), "--no-progress"],
            capture_output=True,
            text=True,
            timeout=300,
        )

        assert 1 == done.returncode, done.stderr[-2000:]
        assert "Traceback" not in done.stderr + done.stdout
        assert "[risk]" in done.stderr
        assert "the solver refuses non-finite metrics" in done.stderr


class TestGoalSeek:
    def test_premium_goal_seek_hits_the_target(self) -> None:
        """Mean NPV = 50 is solved exactly: the affine secant, verified, in three evaluations."""

        engine = solver(premium_goal(50.0))
        evaluator = PricingEvaluator()
        engine.bind_evaluator(evaluator)

        engine.run_chunk(evaluator.records({}), None)

        opt = engine.get_outputs()["optimization"]
        expected = (50.0 + claims().mean()) / PREMIUMS
        assert expected == pytest.approx(opt["parameters"]["premium_multiplier"], rel=1e-12)
        assert 50.0 == pytest.approx(opt["objective_value"], abs=1e-9)
        assert (True, True, 3, 3) == (
            opt["converged"],
            opt["affine"],
            opt["evaluations"],
            len(evaluator.calls),
        )

    def test_goal_seek_on_loss_cte(self) -> None:
        """A target on loss_cte_70.0 (basis prefix, decimal level) is hit, a constraint checked."""

        config = premium_goal(0.0, metric="loss_cte_70.0")
        config["optimization"]["algorithm"] = "brentq"
        config["optimization"]["constraints"] = [
            {"metric": "npv_mean", "operator": ">", "value": 0.0}
        ]
        engine = solver(config)
        evaluator = PricingEvaluator()
        engine.bind_evaluator(evaluator)

        engine.run_chunk(evaluator.records({}), None)

        opt = engine.get_outputs()["optimization"]
        worst = np.sort(claims())[-60:].mean()
        assert worst / PREMIUMS == pytest.approx(opt["parameters"]["premium_multiplier"])
        assert opt["converged"]
        assert [True] == [c["ok"] for c in opt["constraints"]]
        assert {"loss_cte_70", "npv_mean"} <= set(opt["metrics"])

    def test_target_from_an_assumption_table(self, tmp_path: Path) -> None:
        """A target read through resolve_reference from a name,value table is used."""

        table = tmp_path / "targets.csv"
        table.write_text("name,value\nmean,80\nstd,1\n")
        engine = solver(premium_goal(str(table)))
        evaluator = PricingEvaluator()
        engine.bind_evaluator(evaluator)

        engine.run_chunk(evaluator.records({}), None)

        opt = engine.get_outputs()["optimization"]
        assert 80.0 == opt["objective"]["target"]
        assert 80.0 == pytest.approx(opt["objective_value"], abs=1e-9)

    def test_missing_row_in_assumption_table(self, tmp_path: Path) -> None:
        """A table without the target's row raises ConfigurationError listing the rows."""

        table = tmp_path / "targets.csv"
        table.write_text("name,value\nstd,1\ncte_95,2\n")

        with pytest.raises(ConfigurationError, match=r"no row named 'mean' \(rows: std, cte_95\)"):
            solver(premium_goal(str(table)))

    def test_optimisation_needs_an_evaluator(self) -> None:
        """Without bind_evaluator, an optimisation fails with the fix in the message."""

        engine = solver(premium_goal())

        with pytest.raises(ExecutionError, match="bind_evaluator"):
            engine.run_chunk(PricingEvaluator().records({}), None)

    def test_evaluator_on_other_scenarios_is_refused(self) -> None:
        """An evaluator that returns other scenarios than the input is an ExecutionError."""

        engine = solver(premium_goal())
        engine.bind_evaluator(PricingEvaluator(np.arange(10)))

        with pytest.raises(ExecutionError, match="same scenarios"):
            engine.run_chunk(PricingEvaluator().records({}), None)

    def test_solver_supports_the_evaluator_protocol(self) -> None:
        """The runner recognises the solver as an engine that takes an evaluator."""

        assert isinstance(SolverEngine(), SupportsEvaluator)


class TestThroughTheRunner:
    def test_goal_seek_in_a_dag(self, tmp_path: Path) -> None:
        """livecalc's runner binds the evaluator and the solver hits the premium target."""

        write_policies(tmp_path / "policies.parquet", generate_policies(300, seed=5))
        factory = EngineFactory(discover=False)
        factory.register_engine("pricing", PricingEngine)
        raw = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "proj", "type": "pricing", "inputs": ["policies"], "outputs": ["results"]},
                {
                    "id": "solver",
                    "type": "solver",
                    "config": premium_goal(0.0),
                    "inputs": ["results"],
                    "outputs": ["solution"],
                },
            ],
            "run": {"chunk_size": 64},
        }

        summary = Runner(
            load_config(raw, factory=factory, base_dir=tmp_path), factory=factory
        ).run()

        opt = summary.nodes["solver"].outputs["optimization"]
        assert summary.success
        assert 0.0 == pytest.approx(opt["objective_value"], abs=1e-6)
        assert opt["converged"]
        assert 3 == opt["evaluations"]


class PricingEngine(ICalcEngine):
    """A small projection with set_parameters: per-scenario totals of premiums less claims.

    Premium income is the policies' premiums times the premium multiplier; claims are 1% of
    the sum assured times a scenario factor and the mortality multiplier.
    """

    factors = np.linspace(0.5, 1.5, 20)

    def initialize(self, config: Mapping[str, Any], credentials: Any = None) -> None:
        self.params = {"premium_multiplier": 1.0, "mortality_multiplier": 1.0}
        self._ready = True

    def get_info(self) -> EngineInfo:
        return EngineInfo("pricing", "1", "pricing")

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        return OutputSpec(SCENARIO_TOTAL_DTYPE, self.factors.size)

    def set_parameters(self, params: Mapping[str, float]) -> None:
        self.params.update(params)

    def get_parameters(self) -> dict[str, float]:
        return dict(self.params)

    def run_chunk(self, input_buffer: Any, output_buffer: np.ndarray | None) -> ExecutionResult:
        assert output_buffer is not None
        policies = next(a for a in input_buffer.values() if a.dtype == POLICY_DTYPE)
        out = output_buffer[: self.factors.size]
        out[:] = np.zeros(1, SCENARIO_TOTAL_DTYPE)
        out["scenario_id"] = np.arange(self.factors.size)
        out["policy_count"] = len(policies)
        out["premium_income"] = policies["premium"].sum() * self.params["premium_multiplier"]
        claims = policies["sum_assured"].sum() * 0.01 * self.factors
        out["death_benefits"] = claims * self.params["mortality_multiplier"]
        out["npv"] = out["premium_income"] - out["death_benefits"]
        return ExecutionResult(rows_processed=len(policies), bytes_written=out.nbytes)

    def dispose(self) -> None:
        self._ready = False

    @property
    def is_initialized(self) -> bool:
        return getattr(self, "_ready", False)


class TestAllProblemsAtOnce:
    def test_unknown_metric_reported_with_structural_errors(self) -> None:
        """A bad bound and an unknown objective metric are both reported in one error."""
        config = premium_goal(metric="meen")
        config["optimization"]["parameters"][0]["bounds"] = [2.0, 1.0]

        with pytest.raises(ConfigurationError) as info:
            solver(config)

        message = str(info.value)
        assert "config.optimization.parameters[0].bounds" in message
        assert "config.optimization.objective.metric: 'meen' is not a metric" in message
