"""The nested engine: config errors, its plumbing against the ESG engine, and the Hull-White
closed-form check of the nested estimate and of the LSMC proxy."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.engines.esg import ESGEngine
from livecalc.engines.nested import NestedEngine, parse_nested_config
from livecalc.errors import ConfigurationError
from livecalc.io.generate import PolicyData, write_policies
from livecalc.kernels.projection_nested import future_flows, values_at_reference
from livecalc.pipeline.api import RunResult, run
from livecalc.runtime.buffers import CASHFLOW_DTYPE, POLICY_DTYPE, SCENARIO_DTYPE

A, SIGMA, CURVE, LAMBDA, T = 0.1, 0.01, 0.03, 0.3, 1
OUTER, INNER = 100, 100


def _term_policies(path: Path, n: int = 20) -> Path:
    """``n`` ten-year term policies: deterministic decrements, claims at year ends."""
    records = np.zeros(n, dtype=POLICY_DTYPE)
    records["policy_id"] = np.arange(1, n + 1)
    records["age"] = 30 + np.arange(n)
    records["term"] = 10
    records["sum_assured"] = 100_000.0
    records["premium"] = 50.0
    write_policies(path, PolicyData(records, None))
    return path


def _config(policies: Path, nested: dict[str, Any] | None = None) -> dict[str, Any]:
    esg = {
        "model": "hull_white", "a": A, "sigma": SIGMA, "curve": CURVE, "outer": OUTER,
        "inner": INNER, "seed": 3, "market_price_of_risk": LAMBDA,
    }  # fmt: skip
    node = {
        "valuation_year": T,
        "esg": esg,
        "bootstrap": 20,
        "lsmc": {"fit_outer": 1000, "fit_inner": 10, "proxy_outer": 2000, "degree": 3},
        **(nested or {}),
    }
    return {
        "data_sources": {"policies": {"path": str(policies)}},
        "engines": [
            {
                "id": "projection",
                "type": "projection",
                # No per-claim expenses: every flow then falls on a whole year exactly.
                "config": {"output": "cashflows", "expenses": {"per_claim": 0}},
                "inputs": ["policies"],
                "outputs": ["cashflows"],
            },
            {"id": "nested", "type": "nested", "config": node, "inputs": ["cashflows"]},
        ],
    }


@pytest.fixture(scope="module")
def hull_white_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One nested run of the term portfolio under Hull-White (real-world outer paths)."""
    folder = tmp_path_factory.mktemp("nested")
    result = run(_config(_term_policies(folder / "term.parquet")))
    assert result.success, result.summary
    return result


def _textbook_values(result: RunResult, short_rates: np.ndarray) -> np.ndarray:
    """sum_k CF_k P(t, T_k | r_t), P the textbook Hull-White price A exp(-B r) on the flat
    curve, the flows read from the projection's cash-flow table (not the engine's grid)."""
    table = result.table("cashflows")
    cf = {name: table.column(name).to_numpy() for name in table.column_names}
    start = np.asarray(cf["time_years"]).astype(int)
    keep = start >= T
    flows: dict[int, float] = {}
    for k in np.flatnonzero(keep):
        s = int(start[k])
        at_start = cf["premiums"][k] - cf["expenses"][k] - cf["commissions"][k]
        at_end = cf["death_claims"][k] + cf["surrenders"][k] + cf["maturities"][k]
        flows[s] = flows.get(s, 0.0) + at_start
        flows[s + 1] = flows.get(s + 1, 0.0) - at_end
    zero = math.log1p(CURVE)  # the annual flat curve, continuously compounded
    phi = zero + SIGMA**2 / (2 * A**2) * (1 - math.exp(-A * T)) ** 2
    assert phi > 0
    total = np.zeros(len(short_rates))
    for maturity, amount in flows.items():
        b = (1 - math.exp(-A * (maturity - T))) / A
        log_a = (
            -zero * (maturity - T)
            + b * zero
            - SIGMA**2 / (4 * A) * (1 - math.exp(-2 * A * T)) * b**2
        )
        total += amount * np.exp(log_a - b * short_rates)
    return total


@pytest.mark.slow
class TestClosedFormCheck:
    def test_nested_estimate_within_its_standard_error(self, hull_white_run: RunResult) -> None:
        """z = (nested value - closed form) / se over 100 outer paths: max |z| < 4 (for 100
        standard normals, P(max |z| > 4) is about 0.6%), mean near 0, spread near 1."""

        paths = hull_white_run.statistics["nested"]["nested"]["outer_paths"]
        r = np.array(paths["short_rate"])
        z = (np.array(paths["value"]) - _textbook_values(hull_white_run, r)) / np.array(
            paths["standard_error"]
        )

        assert np.abs(z).max() < 4.0
        assert abs(z.mean()) < 4.0 / math.sqrt(OUTER)
        assert 0.75 < z.std(ddof=1) < 1.3

    def test_proxy_within_half_a_percent_over_the_central_99(
        self, hull_white_run: RunResult
    ) -> None:
        """The LSMC proxy (1,000 outer x 10 inner) is within 0.5% of the closed form at every
        short rate of the central 99% of the nested set's rates."""

        lsmc = hull_white_run.statistics["nested"]["lsmc"]
        lo, hi = lsmc["central_range"]
        r = np.linspace(lo, hi, 101)
        proxy = _proxy(lsmc, r)

        exact = _textbook_values(hull_white_run, r)

        assert np.max(np.abs(proxy / exact - 1.0)) < 0.005
        assert lsmc["closed_form"]["max_abs_rel_error_central"] < 0.005

    def test_outer_paths_are_real_world(self, hull_white_run: RunResult) -> None:
        """With a market price of risk the outer state at t has the real-world mean
        lambda sigma / a (1 - e^-a t), within four standard errors."""

        state = np.array(hull_white_run.statistics["nested"]["nested"]["outer_paths"]["state"])
        expected = LAMBDA * SIGMA / A * (1 - math.exp(-A * T))
        sd = SIGMA * math.sqrt(-math.expm1(-2 * A * T) / (2 * A))

        assert abs(state.mean() - expected) < 4 * sd / math.sqrt(OUTER)

    def test_short_rate_is_the_state_plus_phi(self, hull_white_run: RunResult) -> None:
        """r_t = x_t + phi(t), phi(t) = f(0, t) + sigma^2 / (2 a^2) (1 - e^(-a t))^2."""

        paths = hull_white_run.statistics["nested"]["nested"]["outer_paths"]
        phi = math.log1p(CURVE) + SIGMA**2 / (2 * A**2) * (1 - math.exp(-A * T)) ** 2

        shift = np.array(paths["short_rate"]) - np.array(paths["state"])
        np.testing.assert_allclose(np.full(OUTER, phi), shift, rtol=1e-7)

    def test_figures_are_there(self, hull_white_run: RunResult) -> None:
        """The four headline figures, finite, and the cost ratio of fitting to nested paths."""

        stats = hull_white_run.statistics["nested"]
        figures = [
            stats["nested"]["var_99_5"],
            stats["nested"]["var_99_5_se"],
            stats["lsmc"]["r2"],
            stats["lsmc"]["max_abs_rel_error_oos"],
        ]

        assert all(math.isfinite(f) for f in figures)
        assert stats["nested"]["var_99_5_se"] > 0
        assert 0.0 < stats["lsmc"]["r2"] <= 1.0
        assert 1000 * 10 / (OUTER * INNER) == stats["lsmc"]["cost_ratio"]


def _proxy(lsmc: dict[str, Any], r: np.ndarray) -> np.ndarray:
    """The proxy evaluated from its published description (basis, scaling, coefficients)."""
    assert "polynomial" == lsmc["basis"]
    s = (r - lsmc["center"]) / lsmc["scale"]
    return np.vander(s, lsmc["degree"] + 1, increasing=True) @ np.array(lsmc["coefficients"])


class TestPlumbing:
    def test_values_match_the_esg_engines_scenarios(self, tmp_path: Path) -> None:
        """Each outer path's value is the mean over the ESG engine's inner scenarios of the
        reference valuation, and its discount factor to t is the outer segment's."""

        cf = np.zeros(6, dtype=CASHFLOW_DTYPE)
        cf["period"] = np.arange(1, 7)
        cf["time_years"] = np.arange(6)
        cf["premiums"] = 100.0
        cf["death_claims"] = np.arange(6) * 30.0
        esg = {"model": "vasicek", "outer": 3, "inner": 8, "seed": 11, "sigma": 0.02}
        engine = NestedEngine()
        engine.initialize({"valuation_year": 2, "esg": esg, "bootstrap": 5})
        engine.run_chunk({"cashflows": cf}, None)
        paths = engine.get_outputs()["nested"]["outer_paths"]

        scenarios_engine = ESGEngine()
        scenarios_engine.initialize({**esg, "years": 6, "branching_year": 2})
        scenarios = np.empty(3 * 8 * 6, dtype=SCENARIO_DTYPE)
        scenarios_engine.run_chunk(None, scenarios)
        rates = scenarios["rate"].reshape(24, 6)
        values = values_at_reference(rates, future_flows(cf, 2, "end")).reshape(3, 8)
        deflators = 1.0 / np.prod(1.0 + rates[::8, :2], axis=1)

        np.testing.assert_allclose(values.mean(axis=1), paths["value"], rtol=1e-12)
        np.testing.assert_allclose(deflators, paths["deflator"], rtol=1e-12)
        assert [0, 1, 2] == paths["outer_id"]
        assert paths["short_rate"] == paths["state"]  # Vasicek's state is the short rate

    def test_chunks_give_the_same_figures(self, tmp_path: Path) -> None:
        """Policy chunks merge into the same cash flows: the figures do not depend on them."""

        config = _config(_term_policies(tmp_path / "p.parquet", 9), {"lsmc": None})
        config["engines"][1]["config"]["esg"]["outer"] = 20
        config["engines"][1]["config"]["esg"]["inner"] = 10

        one = run(config, chunk_size=100).statistics["nested"]["nested"]
        many = run(config, chunk_size=2).statistics["nested"]["nested"]

        assert one["var_99_5"] == pytest.approx(many["var_99_5"], rel=1e-12)
        assert one["outer_paths"]["value"] == pytest.approx(many["outer_paths"]["value"])


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("config", "message"),
        [
            (
                {"valuation_yr": 1},
                "config.valuation_yr: unknown key (did you mean 'valuation_year'",
            ),
            ({"valuation_year": 0}, "config.valuation_year: Input should be greater than"),
            ({"esg": {"sigma": -1}}, "config.esg.sigma: -1 is out of range"),
            ({"esg": {"model": "simple"}}, "config.esg.model: the simple model"),
            ({"esg": {"branching_year": 3}}, "config.esg.branching_year: 3 differs"),
            ({"lsmc": {"degree": 0}}, "config.lsmc.degree: Input should be greater"),
            ({"lsmc": {"basis": "spline"}}, "config.lsmc.basis: Input should be"),
            ({"lsmc": {"fit_inner": 3}, "esg": {"antithetic": True}}, "config.lsmc.fit_inner: 3"),
            ({"esg": {"inner": 1}}, "config.esg.inner: a standard error needs"),
        ],
    )
    def test_each_problem_names_its_key(self, config: dict[str, Any], message: str) -> None:
        """A bad key is reported by its path under config, with the fix."""

        with pytest.raises(ConfigurationError) as info:
            parse_nested_config(config)

        assert message in str(info.value)

    def test_no_cashflow_input(self) -> None:
        """Without CASHFLOW records the engine says which projection output it needs."""

        engine = NestedEngine()
        engine.initialize({})

        with pytest.raises(ConfigurationError, match='"output": "cashflows"'):
            engine.run_chunk({"x": np.zeros(3)}, None)

    def test_paths_shorter_than_the_cash_flows(self) -> None:
        """An esg.years below the cash flows' horizon names the years needed."""

        cf = np.zeros(8, dtype=CASHFLOW_DTYPE)
        cf["period"] = np.arange(1, 9)
        cf["time_years"] = np.arange(8)
        engine = NestedEngine()
        engine.initialize({"esg": {"years": 5}})

        with pytest.raises(ConfigurationError, match=r"config\.esg\.years: 5 years.*at least 8"):
            engine.run_chunk(cf, None)


@pytest.mark.slow
class TestWorkerProcesses:
    def test_runs_on_worker_processes(self, tmp_path: Path) -> None:
        """Under the processes executor the merged cash flows reach the nested node's worker
        through shared memory, with the figures of the local run."""

        config = _config(_term_policies(tmp_path / "p.parquet", 9), {"lsmc": None})
        config["engines"][1]["config"]["esg"].update(outer=10, inner=10)

        local = run(config, chunk_size=3)
        workers = run(config, chunk_size=3, executor="processes")

        assert workers.success, workers.summary
        assert local.statistics["nested"]["nested"]["var_99_5"] == pytest.approx(
            workers.statistics["nested"]["nested"]["var_99_5"], rel=1e-12
        )


class TestEveryProblemAtOnce:
    def test_model_and_esg_problems_together(self) -> None:
        """A bad key of the engine and a bad ESG key are reported in one error, one a line."""

        with pytest.raises(ConfigurationError) as info:
            parse_nested_config({"lsmc": {"degree": 0}, "esg": {"sigmaa": 1, "outer": -1}})

        lines = str(info.value).splitlines()
        assert "3 problems in the nested config:" == lines[0]
        assert lines[1].strip().startswith("config.lsmc.degree:")
        assert lines[2].strip().startswith("config.esg.sigmaa: unknown key (did you mean 'sigma'")
        assert lines[3].strip().startswith("config.esg.outer: -1 is out of range")


class TestMartingale:
    @pytest.mark.parametrize("model", ["hull_white", "vasicek", "cir"])
    def test_risk_neutral_outer_paths_keep_the_value(self, model: str) -> None:
        """With risk-neutral outer paths E[D(0, t) V_t] = V_0: the mean discounted change is 0
        within four of its Monte Carlo errors (deflators, value at 0 and values agree)."""

        cf = np.zeros(12, dtype=CASHFLOW_DTYPE)
        cf["period"] = np.arange(1, 13)
        cf["time_years"] = np.arange(12)
        cf["premiums"] = 100.0
        cf["death_claims"] = 1000.0 + 50.0 * np.arange(12)
        cf["maturities"][-1] = 5000.0
        engine = NestedEngine()
        esg = {"model": model, "outer": 400, "inner": 10, "seed": 5, "sigma": 0.02}
        if model == "cir":
            esg["sigma"] = 0.08
        engine.initialize({"valuation_year": 2, "esg": esg, "bootstrap": 50})

        engine.run_chunk(cf, None)

        change = engine.get_outputs()["nested"]["change"]
        assert abs(change["mean"]) < 4.0 * change["mean_se_outer"]
        assert change["mean_se_outer"] > 0.0


class TestDegenerateCases:
    def test_outputs_stay_plain_finite_json(self) -> None:
        """No flow after t, or one inner draw per fitting path: the run succeeds and every
        output is finite JSON (no NaN in the summary)."""

        cf = np.zeros(3, dtype=CASHFLOW_DTYPE)
        cf["period"] = np.arange(1, 4)
        cf["time_years"] = np.arange(3)
        cf["death_claims"] = 100.0
        lsmc = {"fit_outer": 20, "fit_inner": 1, "proxy_outer": 10, "degree": 2}
        for year in (1, 5):
            engine = NestedEngine()
            config = {"esg": {"outer": 5, "inner": 4}, "lsmc": lsmc, "bootstrap": 3}
            engine.initialize({"valuation_year": year, **config})

            engine.run_chunk(cf, None)

            json.dumps(engine.get_outputs(), allow_nan=False)

    def test_no_volatility_no_proxy(self) -> None:
        """sigma 0 with an lsmc block is refused: every outer state is the same."""

        with pytest.raises(ConfigurationError, match=r"config\.esg\.sigma: 0 leaves"):
            parse_nested_config({"esg": {"sigma": 0}, "lsmc": {}})
