"""Numerical QA: engine figures against hand-derived values and an independent model.

Written from the reference pages (docs/engines/*.md) without the project's reference
implementation: each expected value is derived here from the documented model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.engines.esg import ESGEngine
from livecalc.engines.esg_check import check_scenarios
from livecalc.engines.projection import ProjectionEngine
from livecalc.engines.solver import SolverEngine
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.runtime.buffers import (
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
)

NO_EXPENSES = {
    "acquisition": 0.0,
    "maintenance": 0.0,
    "inflation": 0.0,
    "percent_of_premium": 0.0,
    "per_claim": 0.0,
}
AGES = np.arange(18, 121)
Q_MALE = np.minimum(1.0, 0.0005 * np.exp(0.09 * (AGES - 18)))
Q_FEMALE = 0.6 * Q_MALE
Q_MALE[-1] = Q_FEMALE[-1] = 1.0


def write_table(path: Path, header: str, columns: list[np.ndarray]) -> str:
    """A CSV mortality table by attained age 18..120 with the given rate columns."""
    lines = [header]
    for i, age in enumerate(AGES):
        lines.append(",".join([str(int(age)), *(repr(float(c[i])) for c in columns)]))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def scenarios(rates: np.ndarray) -> np.ndarray:
    """SCENARIO records (ids 0..n-1) for a (scenarios, years) rate matrix."""
    n_scen, n_years = rates.shape
    out = np.zeros(n_scen * n_years, dtype=SCENARIO_DTYPE)
    out["scenario_id"] = np.repeat(np.arange(n_scen), n_years)
    out["year"] = np.tile(np.arange(1, n_years + 1), n_scen)
    out["rate"] = rates.reshape(-1)
    return out


def project(config: dict[str, Any], inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Run a freshly initialised projection engine on one chunk and return its records."""
    eng = ProjectionEngine()
    eng.initialize(config)
    spec = eng.output_spec(inputs)
    out = np.zeros(spec.records, dtype=spec.dtype)
    assert eng.run_chunk(inputs, out).success
    return out


class TestHandComputedProjection:
    """Projection results derived by hand from the documented model."""

    def test_three_year_endowment_every_component(self, tmp_path: Path) -> None:
        """A 3-year endowment with lapses, surrenders, costs and mid-year claims matches."""
        table = write_table(tmp_path / "q.csv", "age,q", [np.full(len(AGES), 0.01)])
        config = {
            "mortality_table": table,
            "lapse_table": [0.1, 0.05],
            "commissions": [0.5, 0.1],
            "surrender_values": [0.0, 0.4, 0.8],
            "claim_timing": "middle",
            "expenses": {
                "acquisition": 100.0,
                "maintenance": 20.0,
                "inflation": 0.03,
                "percent_of_premium": 0.02,
                "per_claim": 50.0,
            },
            "output": "detail",
        }
        pol = np.array([(9, 40, 0, 0, 2, 3, 10_000.0, 3_000.0)], dtype=POLICY_DTYPE)
        scen = scenarios(np.array([[0.03, 0.04, 0.05, 0.06]]))
        v = [1.0, 1 / 1.03, 1 / (1.03 * 1.04), 1 / (1.03 * 1.04 * 1.05)]
        mid = [v[k] * math.sqrt(v[k + 1] / v[k]) for k in range(3)]
        lives = [1.0, 0.99 * 0.9, 0.99 * 0.9 * 0.99 * 0.95, 0.99 * 0.9 * (0.99 * 0.95) ** 2]
        deaths = [0.01 * lives[k] for k in range(3)]
        lapses = [0.99 * lives[0] * 0.1, 0.99 * lives[1] * 0.05, 0.99 * lives[2] * 0.05]
        commission = [0.5, 0.1, 0.1]
        expected_premiums = 3_000.0 * sum(lives[k] * v[k] for k in range(3))
        expected_expenses = 100.0 + sum(
            lives[k] * (20.0 * 1.03**k + 60.0 + commission[k] * 3_000.0) * v[k]
            + deaths[k] * 50.0 * 1.03 ** (k + 0.5) * mid[k]
            for k in range(3)
        )
        expected_deaths = sum(deaths[k] * 10_000.0 * mid[k] for k in range(3))
        expected_surrenders = sum(
            lapses[k] * s * 10_000.0 * v[k + 1] for k, s in enumerate([0.0, 0.4, 0.8])
        )
        expected_maturity = lives[3] * 10_000.0 * v[3]

        out = project(config, {"p": pol, "s": scen})[0]

        assert expected_premiums == pytest.approx(out["premium_income"], rel=1e-13)
        assert expected_expenses == pytest.approx(out["expenses"], rel=1e-13)
        assert expected_deaths == pytest.approx(out["death_benefits"], rel=1e-13)
        assert expected_surrenders == pytest.approx(out["surrender_benefits"], rel=1e-13)
        assert expected_maturity == pytest.approx(out["maturity_benefits"], rel=1e-13)
        net = (
            expected_premiums
            - expected_expenses
            - expected_deaths
            - expected_surrenders
            - expected_maturity
        )
        assert net == pytest.approx(out["npv"], rel=1e-12)

    def test_monthly_term_geometric_series(self, tmp_path: Path) -> None:
        """A 1-year monthly term with monthly premiums is two geometric series."""
        table = write_table(tmp_path / "q.csv", "age,q", [np.full(len(AGES), 0.012)])
        config = {
            "mortality_table": table,
            "lapse_table": [0.0],
            "commissions": [0.0],
            "expenses": NO_EXPENSES,
            "time_step": "monthly",
            "premium_frequency": "monthly",
            "discount_rate": 0.04,
            "output": "detail",
        }
        pol = np.array([(1, 30, 0, 0, 0, 1, 120_000.0, 1_200.0)], dtype=POLICY_DTYPE)
        qm = 1 - 0.988 ** (1 / 12)
        ratio = (1 - qm) * 1.04 ** (-1 / 12)
        series = (1 - ratio**12) / (1 - ratio)

        out = project(config, {"p": pol})[0]

        assert 100.0 * series == pytest.approx(out["premium_income"], rel=1e-13)
        death = 120_000.0 * qm * 1.04 ** (-1 / 12) * series
        assert death == pytest.approx(out["death_benefits"], rel=1e-13)

    def test_in_force_select_table_with_policy_count(self, tmp_path: Path) -> None:
        """In force 2 years, a select table's ultimate column applies; counts scale values."""
        select = [0.5 * Q_MALE, 0.75 * Q_MALE, Q_MALE]
        table = write_table(tmp_path / "s.csv", "age,select_1,select_2,ultimate", select)
        config = {
            "mortality_table": table,
            "lapse_table": [0.0],
            "commissions": [0.0],
            "surrender_values": [0.0],
            "expenses": NO_EXPENSES,
            "discount_rate": 0.0,
            "output": "detail",
        }
        pol = np.array(
            [(1, 50, 0, 0, 0, 4, 1_000.0, 0.0), (2, 50, 0, 0, 0, 2, 1_000.0, 0.0)],
            dtype=POLICY_DTYPE,
        )
        ext = np.zeros(2, dtype=POLICY_EXT_DTYPE)
        ext["policy_id"] = [1, 2]
        ext["duration_months"] = [24, 0]
        ext["policy_count"] = [5.0, 1.0]
        q = Q_MALE[52 - 18], Q_MALE[53 - 18]
        in_force = 5 * 1_000.0 * (q[0] + (1 - q[0]) * q[1])
        s1, s2 = 0.5 * Q_MALE[50 - 18], 0.75 * Q_MALE[51 - 18]
        new_business = 1_000.0 * (s1 + (1 - s1) * s2)

        out = project(config, {"p": pol, "e": ext})

        assert [in_force, new_business] == pytest.approx(list(out["death_benefits"]), rel=1e-13)

    def test_other_gender_takes_the_mean_of_a_table_from_age_18(self, tmp_path: Path) -> None:
        """Gender 2 uses the mean of male and female q; an age below 18 is refused."""
        table = write_table(tmp_path / "g.csv", "age,q_male,q_female", [Q_MALE, Q_FEMALE])
        config = {
            "mortality_table": table,
            "lapse_table": [0.0],
            "commissions": [0.0],
            "expenses": NO_EXPENSES,
            "discount_rate": 0.0,
            "output": "detail",
        }
        pol = np.array([(1, 18, 2, 0, 0, 1, 1_000.0, 0.0)], dtype=POLICY_DTYPE)
        young = np.array([(2, 17, 0, 0, 0, 1, 1_000.0, 0.0)], dtype=POLICY_DTYPE)

        out = project(config, {"p": pol})[0]

        assert 500.0 * (Q_MALE[0] + Q_FEMALE[0]) == pytest.approx(out["death_benefits"])
        with pytest.raises(ConfigurationError, match=r"policy 2 .*age 17"):
            project(config, {"p": young})

    def test_audit_counters_are_whole_numbers(self) -> None:
        """Audit periods and policy years are ints; the maturity sits in the last period."""
        eng = ProjectionEngine()
        eng.initialize({"audit": {"policy_ids": [3]}, "discount_rate": 0.0})
        pol = np.array([(3, 40, 0, 0, 2, 3, 1_000.0, 100.0)], dtype=POLICY_DTYPE)
        out = np.zeros(1, dtype=RESULT_DTYPE)
        eng.run_chunk({"p": pol}, out)
        flows = eng.get_outputs()["cashflows"][3]
        survivors = flows["lives_start"][-1] - flows["deaths"][-1] - flows["lapses"][-1]

        assert [1, 2, 3] == flows["period"]
        assert [int, int] == [type(flows["period"][0]), type(flows["policy_year"][0])]
        assert [0.0, 0.0, 1_000.0 * survivors] == flows["maturities"]
        assert float(out["npv"][0]) == pytest.approx(sum(flows["pv_net_cash_flow"]), rel=1e-12)


def independent_model(
    pol: np.ndarray, rates: np.ndarray, q_of_age: np.ndarray, cfg: dict[str, Any]
) -> dict[str, float]:
    """The documented model for one new-business policy, step by step in plain Python."""
    x, prod, term = int(pol["age"]), int(pol["product_type"]), int(pol["term"])
    sa, prem_annual = float(pol["sum_assured"]), float(pol["premium"])
    m = 12 if cfg["time_step"] == "monthly" else 1
    tau = {"start": 0.0, "middle": 0.5, "end": 1.0}[cfg["claim_timing"]]
    years = term if prod != 1 else (min(term, 120 - x) if term > 0 else 120 - x)
    whole = [1.0]
    for y, r in enumerate(rates[:years], start=1):
        whole.append((1 + r) ** -y if cfg["rate_type"] == "spot" else whole[-1] / (1 + r))

    def disc(t: float) -> float:
        y = math.floor(t + 1e-12)
        f = t - y
        return whole[y] if f < 1e-12 else whole[y] * (whole[y + 1] / whole[y]) ** f

    lapse, comm, surr = cfg["lapse_table"], cfg["commissions"], cfg["surrender_values"]
    exp = cfg["expenses"]
    lives, pv = 1.0, dict.fromkeys(("prem", "death", "surr", "exp", "mat"), 0.0)
    for k in range(years * m):
        py = k // m + 1
        q = min(1.0, float(q_of_age[x + py - 1 - 18]))
        w = lapse[min(py, len(lapse)) - 1]
        if m == 12:
            q, w = 1 - (1 - q) ** (1 / 12), 1 - (1 - w) ** (1 / 12)
        deaths = lives * q
        lapses = (lives - deaths) * w
        paid = 1.0 if k % m == 0 else 0.0
        premium = prem_annual * paid
        t = k / m
        costs = exp["maintenance"] * paid * (1 + exp["inflation"]) ** t
        costs += exp["percent_of_premium"] * premium + comm[min(py, len(comm)) - 1] * premium
        costs += exp["acquisition"] if k == 0 else 0.0
        claim_t = (k + tau) / m
        sv = surr[min(py, len(surr)) - 1] * sa if prod != 0 else 0.0
        pv["prem"] += lives * premium * disc(t)
        pv["exp"] += lives * costs * disc(t)
        pv["exp"] += deaths * exp["per_claim"] * (1 + exp["inflation"]) ** claim_t * disc(claim_t)
        pv["death"] += deaths * sa * disc(claim_t)
        pv["surr"] += lapses * sv * disc((k + 1) / m)
        lives -= deaths + lapses
    if prod == 2:
        pv["mat"] = lives * sa * disc(years)
    return pv


class TestIndependentModel:
    """The engine against a second, independently written model, mode by mode."""

    @pytest.mark.parametrize("time_step", ["annual", "monthly"])
    @pytest.mark.parametrize("claim_timing", ["start", "middle", "end"])
    @pytest.mark.parametrize("rate_type", ["forward", "spot"])
    def test_every_mode(
        self, tmp_path: Path, time_step: str, claim_timing: str, rate_type: str
    ) -> None:
        """Every component agrees to 1e-12 relative to the gross flows, in each mode."""
        table = write_table(tmp_path / "q.csv", "age,q", [Q_MALE])
        cfg: dict[str, Any] = {
            "mortality_table": table,
            "lapse_table": [0.1, 0.07, 0.05],
            "commissions": [1.0, 0.1, 0.03],
            "surrender_values": [0.0, 0.2, 0.5, 0.9],
            "time_step": time_step,
            "claim_timing": claim_timing,
            "rate_type": rate_type,
            "expenses": {
                "acquisition": 300.0,
                "maintenance": 50.0,
                "inflation": 0.04,
                "percent_of_premium": 0.05,
                "per_claim": 200.0,
            },
            "output": "detail",
        }
        pols = np.array(
            [
                (1, 40, 0, 0, 2, 3, 100_000.0, 30_000.0),
                (2, 18, 0, 0, 0, 10, 50_000.0, 500.0),
                (3, 90, 0, 0, 1, 0, 20_000.0, 1_200.0),
            ],
            dtype=POLICY_DTYPE,
        )
        years = np.arange(1, 41)
        rates = np.stack([np.full(40, 0.03), 0.01 + 0.001 * years, 0.04 + 0.02 * np.sin(years)])

        out = project(cfg, {"p": pols, "s": scenarios(rates)}).reshape(3, 3)

        names = {
            "premium_income": "prem",
            "death_benefits": "death",
            "surrender_benefits": "surr",
            "expenses": "exp",
            "maturity_benefits": "mat",
        }
        for i in range(3):
            for s in range(3):
                pv = independent_model(pols[i], rates[s], Q_MALE, cfg)
                gross = sum(pv.values())
                actual = [float(out[i, s][f]) / gross for f in names]
                assert [pv[k] / gross for k in names.values()] == pytest.approx(actual, abs=1e-12)


class TestProjectionConfigChecks:
    """Bad configs and parameters found in QA are refused, naming the field."""

    def test_dynamic_lapse_factor_bounds_inverted(self) -> None:
        """min_factor above max_factor is refused instead of silently clipping to one."""
        config = {"dynamic_lapse": {"reference_rate": 0.03, "sensitivity": 5.0, "min_factor": 3.0}}

        with pytest.raises(ConfigurationError, match=r"config\.dynamic_lapse: min_factor 3"):
            ProjectionEngine().initialize(config)

    def test_underwriting_class_error_names_the_class(self) -> None:
        """A class without a factor is named in the error."""
        pol = np.array([(5, 30, 0, 6, 0, 5, 1_000.0, 10.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match=r"policy 5 .*underwriting_class 6 has no"):
            project({}, {"p": pol})

    def test_boolean_multiplier_is_refused(self) -> None:
        """set_parameters refuses True as a multiplier (a bool is not a number here)."""
        eng = ProjectionEngine()
        eng.initialize({})

        with pytest.raises(ConfigurationError, match="mortality_multiplier = True"):
            eng.set_parameters({"mortality_multiplier": True})


class TestEsgLaws:
    """ESG moments against closed forms derived here."""

    def test_hull_white_martingale_on_a_sloped_curve(self) -> None:
        """Mean discount factors match P(0, T) interpolated log-linearly from spot nodes."""
        maturities, spots = [1.0, 5.0, 10.0, 30.0], [0.01, 0.025, 0.035, 0.04]
        eng = ESGEngine()
        eng.initialize(
            {
                "model": "hull_white",
                "outer": 4,
                "inner": 1000,
                "years": 30,
                "seed": 7,
                "sigma": 0.012,
                "curve": {"maturities": maturities, "rates": spots},
            }
        )
        out = np.zeros(eng.output_spec({}).records, dtype=SCENARIO_DTYPE)
        eng.run_chunk({}, out)
        log_p = [0.0, *(-t * math.log1p(z) for t, z in zip(maturities, spots, strict=True))]
        expected = np.exp(np.interp(np.arange(1, 31), [0.0, *maturities], log_p))
        df = np.exp(-np.cumsum(np.log1p(out["rate"].reshape(-1, 30)), axis=1))
        z = (df.mean(axis=0) - expected) / (df.std(axis=0, ddof=1) / math.sqrt(len(df)))

        assert expected == pytest.approx(eng.metadata["curve"]["discount_factors"], rel=1e-13)
        assert np.abs(z).max() < 4.5

    def test_vasicek_yearly_integral_variance(self) -> None:
        """Var of ln(1 + rate_y) is the OU integral's variance, within sampling error."""
        a, sigma = 0.15, 0.01
        eng = ESGEngine()
        eng.initialize(
            {"model": "vasicek", "outer": 4, "inner": 1000, "years": 20, "seed": 3, "a": a}
        )
        out = np.zeros(eng.output_spec({}).records, dtype=SCENARIO_DTYPE)
        eng.run_chunk({}, out)
        y = np.arange(1, 21)
        e, b = math.exp(-a), (1 - math.exp(-a)) / a
        expected = b**2 * sigma**2 * (1 - np.exp(-2 * a * (y - 1))) / (2 * a)
        expected += sigma**2 / a**2 * (1 - 2 * b + (1 - e**2) / (2 * a))
        sample = np.log1p(out["rate"].reshape(-1, 20)).var(axis=0, ddof=1)

        # Relative standard error of a normal sample variance: sqrt(2 / (n - 1)) ~ 0.022.
        assert np.abs(sample / expected - 1).max() < 0.1

    def test_simple_floor_above_cap_is_named(self) -> None:
        """A floor above the cap is reported as such, not as a bad initial rate."""
        with pytest.raises(ConfigurationError, match=r"config\.floor: 0\.1 is above config\.cap"):
            ESGEngine().initialize({"model": "simple", "floor": 0.1, "cap": 0.05})

    def test_check_of_a_simple_set_says_why(self) -> None:
        """esg check on the curve-less simple model says the model has no curve."""
        eng = ESGEngine()
        eng.initialize({"model": "simple", "inner": 4, "years": 5})
        out = np.zeros(eng.output_spec({}).records, dtype=SCENARIO_DTYPE)
        eng.run_chunk({}, out)

        with pytest.raises(ConfigurationError, match="the 'simple' model has none"):
            check_scenarios(out, metadata=eng.metadata)


def reference_measures(values: np.ndarray, level: float) -> tuple[float, float, float]:
    """(var, cte, percentile) on the loss basis from the documented formulas."""
    losses = np.sort(-values)
    n = len(losses)
    k = max(1, math.ceil(level * n))
    cte = ((k / n - level) * losses[k - 1] + losses[k:].sum() / n) / (1 - level)
    return float(losses[k - 1]), float(cte), float(losses[k - 1])


class TestSolverMeasures:
    """Risk measures of the solver against the documented formulas, computed here."""

    @settings(max_examples=25, deadline=None)
    @given(
        n=st.integers(1, 60),
        level=st.sampled_from([0.5, 0.7, 0.85, 0.95, 0.995]),
        seed=st.integers(0, 1_000),
    )
    def test_loss_var_cte_percentile(self, n: int, level: float, seed: int) -> None:
        """VaR, CTE with a fractional boundary scenario and pQ match, on both bases."""
        rng = np.random.default_rng(seed)
        values = np.round(rng.normal(0.0, 100.0, n), 1)  # ties are likely
        rec = np.zeros(2 * n, dtype=RESULT_DTYPE)
        rec["scenario_id"] = np.tile(np.arange(n), 2)
        rec["npv"] = np.tile(values / 2, 2)
        tag = f"{level * 100:g}".replace(".", "_")
        loss, npv = SolverEngine(), SolverEngine()
        config = {"metrics": [f"var_{tag}", f"cte_{tag}"], "percentiles": [level * 100]}
        loss.initialize({**config, "basis": "loss"})
        npv.initialize(config)
        loss.run_chunk({"r": rec}, None)
        npv.run_chunk({"r": rec}, None)
        var, cte, pct = reference_measures(values, level)
        lm, nm = loss.get_outputs()["metrics"], npv.get_outputs()["metrics"]

        assert [var, cte, pct] == pytest.approx(
            [lm[f"var_{tag}"], lm[f"cte_{tag}"], lm[f"p{tag}"]], abs=1e-9
        )
        assert [-var, -cte] == pytest.approx([nm[f"var_{tag}"], nm[f"cte_{tag}"]], abs=1e-9)
        good_side = np.sort(values)[max(1, math.ceil(level * n)) - 1]
        assert float(good_side) == pytest.approx(nm[f"p{tag}"], abs=1e-9)

    def test_detail_means_are_left_out(self) -> None:
        """Per-policy mean records (scenario ALL_SCENARIOS) do not enter the measures."""
        rec = np.zeros(3, dtype=RESULT_DETAIL_DTYPE)
        rec["scenario_id"] = [0, 1, 0xFFFFFFFF]
        rec["npv"] = [1.0, 3.0, 1e9]
        solver = SolverEngine()
        solver.initialize({})
        solver.run_chunk({"r": rec}, None)

        assert [2.0, 2.0] == [solver.get_outputs()["metrics"][k] for k in ("mean", "count")]

    def test_non_finite_npv_is_refused(self) -> None:
        """A NaN npv is an error naming its scenario, not a NaN statistic."""
        rec = np.zeros(3, dtype=RESULT_DTYPE)
        rec["scenario_id"] = [0, 1, 2]
        rec["npv"] = [1.0, np.nan, 3.0]
        solver = SolverEngine()
        solver.initialize({})

        with pytest.raises(ConfigurationError, match="scenario 1: a result record has npv nan"):
            solver.run_chunk({"r": rec}, None)

    def test_evaluation_on_other_scenarios_names_them(self) -> None:
        """An evaluator that returns other scenario ids is refused, naming the odd ids."""
        rec = np.zeros(2, dtype=RESULT_DTYPE)
        rec["scenario_id"] = [0, 1]
        rec["npv"] = [1.0, 2.0]
        moved = rec.copy()
        moved["scenario_id"] = [0, 7]
        solver = SolverEngine()
        solver.initialize(
            {
                "optimization": {
                    "parameters": [{"name": "premium_multiplier", "bounds": [0.5, 2.0]}],
                    "objective": {"metric": "mean", "direction": "maximize"},
                }
            }
        )
        solver.bind_evaluator(lambda overrides: moved)

        with pytest.raises(ExecutionError, match=r"ids in one but not the other: \[1, 7\]"):
            solver.run_chunk({"r": rec}, None)
