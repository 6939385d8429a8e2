"""Discounting conventions, premiums from the model, future new business and cash flows.

The kernels against the pure-Python reference on hypothesis portfolios (premiums to 1e-9
relative), a hand-derived single policy to the cent, the ``cashflows`` output reconciled with
the policies' npv through the runner at several chunk sizes, and the config's refusals.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings

from livecalc.engines._projection_premiums import EquivalencePremium, equivalence_premiums
from livecalc.engines.projection import ProjectionEngine
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.io.parquet import write_records
from livecalc.kernels.projection import PREMIUM
from livecalc.kernels.projection_basis import OutputMode, prepare_chunk
from livecalc.kernels.projection_discount import Discounting, to_effective
from livecalc.kernels.projection_run import cashflow_slots, project, project_cashflows
from livecalc.pipeline.api import run as run_pipeline
from livecalc.runtime.buffers import (
    ALL_SCENARIOS,
    CASHFLOW_DTYPE,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_EXT_DTYPE,
    SCENARIO_DTYPE,
)
from reference_projection import (
    CASHFLOW_COLUMNS,
    equivalence_premium,
    project_pair,
)
from strategies import ProjectionCase, projection_cases

NO_COSTS: dict[str, Any] = {
    "lapse_table": [0.0],
    "commissions": [0.0],
    "surrender_values": [0.0],
    "expenses": {
        "acquisition": 0.0,
        "maintenance": 0.0,
        "inflation": 0.0,
        "percent_of_premium": 0.0,
        "per_claim": 0.0,
    },
}


def flat_q_table(tmp_path: Path, q: float = 0.01) -> str:
    """A mortality table with q at every age 0-119 (1 at 120)."""
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"age": list(range(121)), "q": [q] * 120 + [1.0]}), path)
    return str(path)


def engine(**config: Any) -> ProjectionEngine:
    eng = ProjectionEngine()
    eng.initialize(config)
    return eng


def run_chunk(eng: ProjectionEngine, inputs: dict[str, np.ndarray]) -> np.ndarray:
    spec = eng.output_spec(inputs)
    out = np.zeros(spec.records, dtype=spec.dtype)
    eng.run_chunk(inputs, out)
    return out


def close(expected: Any, actual: Any, rel: float = 1e-9, scale: Any = None) -> None:
    """Agreement to ``rel`` relative to ``scale`` (default: the expected values)."""
    expected, actual = np.asarray(expected, float), np.asarray(actual, float)
    scale = np.abs(expected) if scale is None else np.abs(np.asarray(scale, float))
    bad = np.abs(expected - actual) > rel * scale + 1e-300
    assert not bad.any(), f"expected {expected[bad]} got {actual[bad]}"


def _months_and_counts(case: ProjectionCase, i: int) -> tuple[int, float]:
    if case.extension is None:
        return 0, 1.0
    return int(case.extension["duration_months"][i]), float(case.extension["policy_count"][i])


class TestPremiumsAgainstReference:
    """Equivalence premiums of the kernels against the reference's linear solve."""

    @settings(max_examples=30, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_equivalence_premiums_match(self, case: ProjectionCase) -> None:
        """Any cover and loading, every convention, new business: 1e-9 relative (unrounded)."""
        rates = case.rates[:1]
        cover = ("claims", "surrenders", "maturities", "expenses", "commissions")
        n_cover = 1 + int(case.policies["policy_id"][0]) % len(cover)
        cfg = EquivalencePremium(
            method="equivalence", loading=0.25, cover=list(cover[:n_cover]), rounding=None
        )
        # Keep premium-related outgo well below the premium so the equation has a solution
        # and is well conditioned: commissions <= 30% and 5% expenses of the premium, with the
        # premium and expense multipliers (which scale them) at most 1. Near a loaded outgo of
        # the whole premium the denominator cancels and no two solves agree (the engine
        # refuses <= 0 with a clear error: TestPremiumErrors).
        mult = case.basis.multipliers
        basis = dataclasses.replace(
            case.basis,
            commission=np.minimum(case.basis.commission, 0.3),
            percent_of_premium=0.05,
            multipliers={
                **mult,
                "premium_multiplier": min(mult["premium_multiplier"], 1.0),
                "expense_multiplier": min(mult["expense_multiplier"], 1.0),
            },
        )
        if case.extension is not None:
            # A per-model-point acquisition shared by 1e-38 lives is 1e38 per life: the
            # reference's two-point solve then cancels every digit of the slope.
            case.extension["policy_count"] = np.maximum(case.extension["policy_count"], 0.01)
        chunk = prepare_chunk(basis, case.policies, case.extension, rates, np.zeros(1), case.rate0)

        got = equivalence_premiums(cfg, basis, chunk)

        for i, pol in enumerate(case.policies):
            months, count = _months_and_counts(case, i)
            want = equivalence_premium(
                pol, months, list(rates[0]), basis, 0.25, cover[:n_cover], None,
                rate0=case.rate0, policy_count=count,
            )  # fmt: skip
            close([want], [got[i]])

    @settings(max_examples=30, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_values_with_derived_premiums_match(self, case: ProjectionCase) -> None:
        """With the solved premiums, every present value matches the reference's."""
        chunk = prepare_chunk(
            case.basis, case.policies, case.extension, case.rates, np.zeros(len(case.rates)),
            case.rate0,
        )  # fmt: skip
        premiums = np.linspace(1.0, 900.0, chunk.n_policies)
        chunk.pol_float[:, PREMIUM] = premiums
        n_scen = chunk.n_scenarios
        out = np.zeros(chunk.n_policies * n_scen, RESULT_DETAIL_EXT_DTYPE)
        project(chunk, case.basis, OutputMode.DETAIL_EXT, out, False)

        for i, pol in enumerate(case.policies):
            months, count = _months_and_counts(case, i)
            for s in range(n_scen):
                ref = project_pair(
                    pol, months, count, list(case.rates[s]), case.basis, case.rate0,
                    premium=float(premiums[i]),
                )  # fmt: skip
                r = out[i * n_scen + s]
                gross = sum(abs(ref[c]) for c in ("premium_income", "death_benefits",
                            "surrender_benefits", "expenses", "maturity_benefits"))  # fmt: skip
                close([ref["npv"]], [r["npv"]], scale=[gross])
                close([ref["premium_annuity"]], [r["premium_annuity"]])
                close([ref["commissions"]], [r["commissions"]])
                close([ref["expenses"] - ref["commissions"]], [r["expenses"]], scale=[gross])
                assert premiums[i] == r["premium"]


class TestCashflowKernel:
    """The cash-flow kernel against the reference's period-by-period flows."""

    @settings(max_examples=30, deadline=None)
    @given(projection_cases())
    def test_periods_match_reference(self, case: ProjectionCase) -> None:
        """Each period's totals (scenario mean) match the reference; pv sums to the npv."""
        n_scen = len(case.rates)
        ids = np.arange(n_scen, dtype=np.uint32) + 3
        chunk = prepare_chunk(
            case.basis, case.policies, case.extension, case.rates, ids, case.rate0
        )
        chosen = [int(ids[-1])]
        slot_ids, weights = cashflow_slots(ids, chosen, deterministic=False)
        out = np.zeros(len(slot_ids) * chunk.n_steps_max, CASHFLOW_DTYPE)
        written = project_cashflows(chunk, case.basis, out, slot_ids, weights)
        assert written == len(out)
        k_max = chunk.n_steps_max
        mean_rows = out[:k_max]
        last_rows = out[k_max:]
        assert (mean_rows["scenario_id"] == ALL_SCENARIOS).all()
        assert (last_rows["scenario_id"] == ids[-1]).all()
        assert list(mean_rows["period"]) == list(range(1, k_max + 1))

        per_scen: list[list[dict[str, float]]] = []
        npv = np.zeros(n_scen)
        for s in range(n_scen):
            periods: list[dict[str, float]] = []
            for i, pol in enumerate(case.policies):
                months, count = _months_and_counts(case, i)
                ref = project_pair(
                    pol, months, count, list(case.rates[s]), case.basis, case.rate0,
                    periods=periods,
                )  # fmt: skip
                npv[s] += ref["npv"]
            per_scen.append(periods)
        for col in CASHFLOW_COLUMNS:
            want = np.zeros((n_scen, k_max))
            for s, periods in enumerate(per_scen):
                for k, row in enumerate(periods):
                    want[s, k] = row[col]
            scale = np.abs(want).max() if want.size else 0.0
            close(want.mean(axis=0), mean_rows[col], scale=np.full(k_max, scale))
            close(want[-1], last_rows[col], scale=np.full(k_max, scale))
        gross = sum(
            np.abs(np.array([[r[c] for r in p] for p in per_scen])).sum() if k_max else 0.0
            for c in ("premiums", "death_claims", "surrenders", "maturities", "expenses")
        )
        close([npv.mean()], [mean_rows["pv_net_cash_flow"].sum()], scale=[gross])


def _hand_case() -> dict[str, Any]:
    """The documented single policy, derived by hand: 10-year term, monthly, step_spot.

    Flat q = 0.01 a year, so the monthly survival is ``p = 0.99^(1/12)`` and ``L_k = p^k``;
    no lapses or expenses; claims at the end of each month; the spot rate of projection
    year ``y`` is ``z_y = 2% + 0.2% y`` (``z_0`` given as the year-0 rate).
    """
    sa, loading = 100_000.0, 0.5
    p = 0.99 ** (1.0 / 12.0)

    def v(t: float) -> float:
        return (1.0 + 0.02 + 0.002 * math.floor(t)) ** (-t)

    claims = sum(p**k * (1.0 - p) * sa * v((k + 1) / 12.0) for k in range(120))
    annuity = sum(p**k * v(k / 12.0) for k in range(120))
    premium = math.floor((1.0 + loading) * claims / annuity * 100.0 + 0.5) / 100.0
    return {"claims": claims, "annuity": annuity, "premium": premium, "p": p, "v": v}


class TestHandDerivedPolicy:
    """One policy worked by hand (docs/engines/projection.md shows its monthly table)."""

    def _engine(self, tmp_path: Path, output: str) -> ProjectionEngine:
        curve = tmp_path / "curve.csv"
        curve.write_text(
            "year,rate\n" + "".join(f"{y},{0.02 + 0.002 * y:.3f}\n" for y in range(0, 11))
        )
        return engine(
            **NO_COSTS,
            mortality_table=flat_q_table(tmp_path),
            time_step="monthly",
            premium_frequency="monthly",
            yield_curve=str(curve),
            discounting={"convention": "step_spot"},
            premium={"method": "equivalence", "loading": 0.5, "cover": ["claims"], "rounding": 2},
            output=output,
        )

    def _policy(self) -> np.ndarray:
        return np.array([(1, 40, 0, 0, 0, 10, 100_000.0, 0.0)], dtype=POLICY_DTYPE)

    def test_premium_and_values_to_the_cent(self, tmp_path: Path) -> None:
        """Premium per month, claims PV, annuity and npv agree with the hand derivation."""
        hand = _hand_case()

        rec = run_chunk(self._engine(tmp_path, "detail_ext"), {"p": self._policy()})[0]

        assert round(rec["premium"], 2) == hand["premium"]
        assert abs(rec["premium"] - hand["premium"]) < 1e-9
        assert abs(rec["death_benefits"] - hand["claims"]) < 0.005
        assert abs(rec["premium_annuity"] - hand["annuity"]) < 1e-8
        npv = hand["premium"] * hand["annuity"] - hand["claims"]
        assert abs(rec["npv"] - npv) < 0.005
        assert rec["commissions"] == 0.0

    def test_monthly_table_to_the_cent(self, tmp_path: Path) -> None:
        """The cashflows output, month by month, is the hand-derived table."""
        hand = _hand_case()
        p, v, prem = hand["p"], hand["v"], hand["premium"]

        rows = run_chunk(self._engine(tmp_path, "cashflows"), {"p": self._policy()})

        assert 120 == len(rows)
        for k, row in enumerate(rows):
            lives = p**k
            assert abs(row["policies_in_force"] - lives) < 1e-12
            assert abs(row["premiums"] - prem * lives) < 0.005
            assert abs(row["death_claims"] - 100_000.0 * lives * (1.0 - p)) < 0.005
            assert abs(row["discount_factor"] - v(k / 12.0)) < 1e-12
            want_pv = prem * lives * v(k / 12.0) - 100_000.0 * lives * (1 - p) * v((k + 1) / 12)
            assert abs(row["pv_net_cash_flow"] - want_pv) < 0.005


def _write_inputs(
    tmp_path: Path, n: int, n_scen: int, monthly: bool = True, years: int = 60
) -> None:
    data = generate_policies(n, seed=5, in_force_fraction=0.4, max_policy_count=3, max_term=30)
    assert data.ext is not None
    # A few policies become future new business, issued 1-23 months (monthly steps) or one
    # or two years after valuation.
    delay = 1 + np.arange(len(data.ext[::5])) % 23
    data.ext["duration_months"][::5] = -(delay if monthly else 12 * (1 + delay % 2))
    write_policies(tmp_path / "policies.parquet", data)
    rng = np.random.default_rng(4)
    scen = np.zeros(n_scen * years, SCENARIO_DTYPE)
    scen["scenario_id"] = np.repeat(np.arange(n_scen) + 10, years)
    scen["year"] = np.tile(np.arange(1, years + 1), n_scen)
    scen["rate"] = 0.03 + 0.01 * rng.standard_normal(n_scen * years)
    write_records(tmp_path / "scenarios.parquet", scen)


MODES: dict[str, dict[str, Any]] = {
    "deterministic annual": {},
    "deterministic monthly step_spot equivalence": {
        "time_step": "monthly",
        "premium_frequency": "monthly",
        "discounting": {"convention": "step_spot", "compounding": "continuous"},
        "premium": {"method": "equivalence", "loading": 0.3, "cover": ["claims", "expenses"]},
        "claim_timing": "middle",
    },
    "scenarios": {"scenarios": True},
    "scenarios dynamic lapses": {
        "scenarios": True,
        "dynamic_lapse": {"reference_rate": 0.03, "sensitivity": 8.0},
        "time_step": "monthly",
    },
}


class TestCashflowsOutput:
    """The cashflows output through the runner: merged over chunks, reconciled with npv."""

    @pytest.mark.parametrize("mode", list(MODES))
    @pytest.mark.parametrize("chunk_size", [1, 7, 1000])
    def test_pv_of_net_cash_flow_is_the_sum_of_npvs(
        self, tmp_path: Path, mode: str, chunk_size: int
    ) -> None:
        """Sum over periods of pv_net_cash_flow = sum of policies' npv (scenario mean)."""
        cfg = dict(MODES[mode])
        _write_inputs(tmp_path, 40, 4, monthly=cfg.get("time_step") == "monthly")
        stochastic = cfg.pop("scenarios", False)
        inputs = ["policies", "scenarios"] if stochastic else ["policies"]
        config = {
            "data_sources": {
                "policies": {"path": "policies.parquet"},
                "scenarios": {"path": "scenarios.parquet"},
            },
            "engines": [
                {
                    "id": "values",
                    "type": "projection",
                    "inputs": inputs,
                    "outputs": ["values"],
                    "config": {**cfg, "output": "detail_ext"},
                },
                {
                    "id": "flows",
                    "type": "projection",
                    "inputs": inputs,
                    "outputs": ["cashflows"],
                    "config": {
                        **cfg,
                        "output": "cashflows",
                        **({"cashflow_scenarios": [11]} if stochastic else {}),
                    },
                },
            ],
            "output": {"path": "out/{name}.parquet", "write": ["values", "cashflows"]},
            "run": {"chunk_size": chunk_size, "executor": "local"},
        }

        result = run_pipeline(config, base_dir=tmp_path)

        result.raise_for_status()
        values = result.table("values").to_pandas()
        flows = result.table("cashflows").to_pandas()
        assert flows.equals(pq.read_table(tmp_path / "out" / "cashflows.parquet").to_pandas())
        gross = values[["premium_income", "death_benefits", "expenses", "commissions"]].abs()
        scale = float(gross.to_numpy().sum())
        main = ALL_SCENARIOS if stochastic else 0
        head = flows[flows["scenario_id"] == main]
        assert list(head["period"]) == list(range(1, len(head) + 1))
        n_scen = values["scenario_id"].nunique()
        close([values["npv"].sum() / n_scen], [head["pv_net_cash_flow"].sum()], scale=[scale])
        if stochastic:
            one = flows[flows["scenario_id"] == 11]
            npv_11 = values.loc[values["scenario_id"] == 11, "npv"].sum()
            close([npv_11], [one["pv_net_cash_flow"].sum()], scale=[scale])

    def test_chunk_sizes_give_the_same_table(self, tmp_path: Path) -> None:
        """Chunks of 1, 3 (not a divisor of 40) and all policies: the same rows to 1e-9."""
        _write_inputs(tmp_path, 40, 2)
        tables = []
        for size in (1, 3, 40):
            config = {
                "data_sources": {"policies": {"path": "policies.parquet"}},
                "engines": [{"id": "flows", "type": "projection", "inputs": ["policies"],
                             "outputs": ["cashflows"],
                             "config": {"output": "cashflows", "time_step": "monthly"}}],
                "run": {"chunk_size": size, "executor": "local"},
            }  # fmt: skip
            tables.append(run_pipeline(config, base_dir=tmp_path).table("cashflows").to_pandas())
        for other in tables[1:]:
            assert list(other["period"]) == list(tables[0]["period"])
            for col in CASHFLOW_COLUMNS:
                scale = np.abs(tables[0][col]).max()
                close(tables[0][col], other[col], scale=np.full(len(other), scale))


class TestNewBusiness:
    """Future new business (negative duration_months)."""

    def _ext(self, months: list[int], count: float = 3.0) -> np.ndarray:
        ext = np.zeros(len(months), POLICY_EXT_DTYPE)
        ext["policy_id"] = np.arange(1, len(months) + 1)
        ext["duration_months"] = months
        ext["policy_count"] = count
        return ext

    def test_nothing_before_issue_and_acquisition_at_issue(self, tmp_path: Path) -> None:
        """Issued in 5 months: no flows in months 1-5, the acquisition expense in month 6."""
        pol = np.array([(1, 40, 0, 0, 0, 2, 10_000.0, 1200.0)], dtype=POLICY_DTYPE)
        eng = engine(
            mortality_table=flat_q_table(tmp_path), time_step="monthly", output="cashflows",
            expenses={"acquisition": 100.0, "maintenance": 0.0, "percent_of_premium": 0.0,
                      "per_claim": 0.0},
        )  # fmt: skip

        rows = run_chunk(eng, {"p": pol, "e": self._ext([-5])})

        assert 5 + 24 == len(rows)
        for col in ("premiums", "death_claims", "expenses", "commissions", "deaths"):
            assert not rows[col][:5].any(), col
        assert rows[5]["expenses"] == pytest.approx(300.0, rel=1e-14)
        assert rows[5]["premiums"] == pytest.approx(3 * 1200.0)

    def test_acquisition_per_model_point(self, tmp_path: Path) -> None:
        """``acquisition_per: model_point`` charges it once per record, not per policy."""
        pol = np.array([(1, 40, 0, 0, 0, 2, 10_000.0, 0.0)], dtype=POLICY_DTYPE)
        costs = {"acquisition": 100.0, "maintenance": 0.0, "percent_of_premium": 0.0,
                 "per_claim": 0.0, "inflation": 0.0}  # fmt: skip
        by_policy = engine(mortality_table=flat_q_table(tmp_path), time_step="monthly",
                           output="cashflows", expenses=costs)  # fmt: skip
        per_point = {**costs, "acquisition_per": "model_point"}
        by_point = engine(mortality_table=flat_q_table(tmp_path), time_step="monthly",
                          output="cashflows", expenses=per_point)  # fmt: skip

        a = run_chunk(by_policy, {"p": pol, "e": self._ext([-2])})
        b = run_chunk(by_point, {"p": pol, "e": self._ext([-2])})

        assert a[2]["expenses"] == pytest.approx(300.0)
        assert b[2]["expenses"] == pytest.approx(100.0)

    def test_issue_beyond_the_horizon_is_refused(self, tmp_path: Path) -> None:
        """An issue date at or past the curve's last year names the policy."""
        curve = tmp_path / "c.csv"
        curve.write_text("year,rate\n1,0.03\n2,0.03\n")
        eng = engine(mortality_table=flat_q_table(tmp_path), time_step="monthly",
                     yield_curve=str(curve))  # fmt: skip
        pol = np.array([(1, 40, 0, 0, 0, 1, 10_000.0, 0.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match=r"policy 1 .*issued 30 months after"):
            run_chunk(eng, {"p": pol, "e": self._ext([-30])})

    def test_ages_checked_are_the_ages_used(self, tmp_path: Path) -> None:
        """A pipeline of policies aged 20, one issued in 31 months, against a table from age
        18: the projection reads ages 20 on, so the data check lets it run (issue 19 item
        29: refused as "age 17" before), and a row for age 17 of any q changes nothing."""

        def table(first: int, q17: float = 0.01) -> str:
            ages = list(range(first, 121))
            path = tmp_path / f"q{first}-{q17}.parquet"
            qs = [q17 if a == 17 else 0.01 for a in ages[:-1]] + [1.0]
            pq.write_table(pa.table({"age": ages, "q": qs}), path)
            return str(path)

        data = generate_policies(4, seed=5, in_force_fraction=1.0, max_term=30)
        assert data.ext is not None
        data.records["age"] = 20
        data.ext["duration_months"] = [-31, 0, 5, 13]
        write_policies(tmp_path / "policies.parquet", data)

        def npv(mortality_table: str) -> bytes:
            raw = {
                "data_sources": {"policies": {"path": "policies.parquet"}},
                "engines": [
                    {
                        "id": "projection",
                        "type": "projection",
                        "config": {
                            "mortality_table": mortality_table,
                            "time_step": "monthly",
                            "output": "detail",
                        },
                        "inputs": ["policies"],
                        "outputs": ["results"],
                    }
                ],
            }
            result = run_pipeline(raw, base_dir=tmp_path)
            assert result.success
            return bytes(result.summary.datasets["results"].tobytes())

        assert npv(table(18)) == npv(table(17, q17=0.9))

    def test_annual_steps_need_whole_years(self, tmp_path: Path) -> None:
        """Annual steps refuse an issue 5 months after valuation, pointing at monthly steps."""
        eng = engine(mortality_table=flat_q_table(tmp_path))
        pol = np.array([(1, 40, 0, 0, 0, 3, 10_000.0, 0.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match="time_step"):
            run_chunk(eng, {"p": pol, "e": self._ext([-5])})


class TestConventions:
    """Closed forms and the conventions' inputs."""

    def test_step_spot_discounts_each_year_at_its_spot_rate(self, tmp_path: Path) -> None:
        """A month-6 premium is discounted by (1 + z_0)^-0.5 and a month-18 one by
        (1 + z_1)^-1.5, with z_0 from the curve's year-0 row."""
        curve = tmp_path / "c.csv"
        curve.write_text("year,rate\n0,0.01\n1,0.02\n2,0.05\n")
        eng = engine(**NO_COSTS, mortality_table=flat_q_table(tmp_path, 0.0),
                     time_step="monthly", premium_frequency="monthly", yield_curve=str(curve),
                     discounting={"convention": "step_spot"}, output="cashflows")  # fmt: skip
        pol = np.array([(1, 40, 0, 0, 0, 2, 0.0, 12.0)], dtype=POLICY_DTYPE)

        rows = run_chunk(eng, {"p": pol})

        assert rows[6]["discount_factor"] == pytest.approx(1.01**-0.5, rel=1e-14)
        assert rows[18]["discount_factor"] == pytest.approx(1.02**-1.5, rel=1e-14)
        assert rows[18]["pv_net_cash_flow"] == pytest.approx(1.02**-1.5, rel=1e-14)

    @pytest.mark.parametrize("compounding", ["annual", "continuous", "monthly"])
    def test_compounding_of_a_flat_rate(self, tmp_path: Path, compounding: str) -> None:
        """A 3% rate quoted with each compounding discounts year 1 by its effective rate."""
        eng = engine(**NO_COSTS, mortality_table=flat_q_table(tmp_path, 0.0), discount_rate=0.03,
                     discounting={"compounding": compounding}, output="cashflows")  # fmt: skip
        pol = np.array([(1, 40, 0, 0, 0, 3, 0.0, 1.0)], dtype=POLICY_DTYPE)

        rows = run_chunk(eng, {"p": pol})

        effective = {"annual": 0.03, "continuous": math.exp(0.03) - 1,
                     "monthly": (1 + 0.03 / 12) ** 12 - 1}[compounding]  # fmt: skip
        assert rows[1]["discount_factor"] == pytest.approx(1 / (1 + effective), rel=1e-13)
        assert float(to_effective(0.03, compounding)) == pytest.approx(effective, rel=1e-13)

    @pytest.mark.parametrize("column", ["discount_factor", "rate"])
    def test_curve_per_step_file(self, tmp_path: Path, column: str) -> None:
        """Factors (or spot rates) by month are used as given, with no interpolation."""
        factors = np.cumprod(np.full(37, 0.997))
        factors[0] = 1.0
        steps = np.arange(37)
        values = (
            factors if column == "discount_factor" else factors ** (-12 / np.maximum(steps, 1)) - 1
        )
        path = tmp_path / "steps.parquet"
        pq.write_table(pa.table({"step": steps[1:], column: values[1:]}), path)
        eng = engine(**NO_COSTS, mortality_table=flat_q_table(tmp_path, 0.0),
                     time_step="monthly", premium_frequency="monthly",
                     discounting={"convention": "curve_per_step", "file": str(path)},
                     output="cashflows")  # fmt: skip
        pol = np.array([(1, 40, 0, 0, 0, 3, 0.0, 12.0)], dtype=POLICY_DTYPE)

        rows = run_chunk(eng, {"p": pol})

        close(factors[:36], rows["discount_factor"], rel=1e-12)

    def test_curve_per_step_refuses_scenarios(self, tmp_path: Path) -> None:
        """Stochastic scenarios keep their money-market discounting."""
        path = tmp_path / "steps.csv"
        path.write_text("step,discount_factor\n1,0.99\n2,0.98\n")
        eng = engine(mortality_table=flat_q_table(tmp_path),
                     discounting={"convention": "curve_per_step", "file": str(path)})  # fmt: skip
        scen = np.zeros(3, SCENARIO_DTYPE)
        scen["year"] = [1, 2, 3]
        pol = np.array([(1, 40, 0, 0, 0, 1, 1000.0, 0.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match="curve_per_step"):
            eng.run_chunk({"p": pol, "s": scen}, np.zeros(1, RESULT_DETAIL_EXT_DTYPE))


class TestPremiumMethods:
    """The premium block through the engine."""

    def test_rate_table(self, tmp_path: Path) -> None:
        """Premium per payment = round(rate x sum assured / 12), by age at entry and term."""
        table = tmp_path / "rates.csv"
        table.write_text("age_at_entry,term,rate\n40,10,0.0031\n41,10,0.0033\n")
        eng = engine(mortality_table=flat_q_table(tmp_path), time_step="monthly",
                     premium_frequency="monthly", output="detail_ext",
                     premium={"method": "rate_table", "table": str(table),
                              "keys": ["age_at_entry", "term"], "rounding": 2})  # fmt: skip
        pol = np.array(
            [(1, 40, 0, 0, 0, 10, 100_000.0, 0.0), (2, 41, 0, 0, 0, 10, 50_000.0, 0.0)],
            dtype=POLICY_DTYPE,
        )

        out = run_chunk(eng, {"p": pol})

        assert [25.83, 13.75] == [round(x, 2) for x in out["premium"]]
        close(out["premium"] * out["premium_annuity"], out["premium_income"], rel=1e-12)

    def test_rate_table_missing_key_names_the_policy(self, tmp_path: Path) -> None:
        table = tmp_path / "rates.csv"
        table.write_text("age_at_entry,term,rate\n40,10,0.0031\n")
        eng = engine(mortality_table=flat_q_table(tmp_path),
                     premium={"method": "rate_table", "table": str(table),
                              "keys": ["age_at_entry", "term"]})  # fmt: skip
        pol = np.array([(7, 41, 0, 0, 0, 10, 1000.0, 0.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match=r"policy 7 .*age_at_entry=41, term=10"):
            run_chunk(eng, {"p": pol})

    @pytest.mark.parametrize(("mode", "want"), [("half_up", 0.13), ("half_even", 0.12)])
    def test_rounding_modes(self, mode: str, want: float) -> None:
        """0.125 rounds to 0.13 half-up and to 0.12 half-even."""
        from livecalc.engines._projection_premiums import round_premiums

        assert [want] == list(round_premiums(np.array([0.125]), 2, mode))

    def test_equivalence_with_scenarios_uses_the_curve(self, tmp_path: Path) -> None:
        """With scenarios the premium is priced on the deterministic curve, not the scenarios."""
        cfg = {"mortality_table": flat_q_table(tmp_path), "output": "detail_ext",
               "premium": {"method": "equivalence", "loading": 0.2}}  # fmt: skip
        pol = np.array([(1, 40, 0, 0, 0, 10, 100_000.0, 0.0)], dtype=POLICY_DTYPE)
        scen = np.zeros(20, SCENARIO_DTYPE)
        scen["scenario_id"] = np.repeat([0, 1], 10)
        scen["year"] = np.tile(np.arange(1, 11), 2)
        scen["rate"] = np.repeat([0.01, 0.08], 10)

        det = run_chunk(engine(**cfg), {"p": pol})
        sto = run_chunk(engine(**cfg), {"p": pol, "s": scen})

        assert det["premium"][0] == sto["premium"][0] == sto["premium"][1]

    @pytest.mark.parametrize(
        ("commissions", "loading"), [([0.8], 0.25), ([1.0], 0.0), ([0.7, 0.1], 0.5)]
    )
    def test_equivalence_refuses_commissions_taking_the_whole_premium(
        self, tmp_path: Path, commissions: list[float], loading: float
    ) -> None:
        """Loaded commissions of at least the whole premium have no equivalence premium: the
        policy and the fix are named (an ill-conditioned solve is never returned)."""
        eng = engine(mortality_table=flat_q_table(tmp_path), output="detail_ext",
                     commissions=commissions,
                     premium={"method": "equivalence", "loading": loading,
                              "cover": ["claims", "commissions"]})  # fmt: skip
        pol = np.array([(5, 40, 0, 0, 0, 1, 1000.0, 0.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match=r"policy 5 \(row 1\).*whole premium.*loading"):
            run_chunk(eng, {"p": pol})


class TestConfigErrors:
    """Bad config names the key and the fix."""

    @pytest.mark.parametrize(
        ("config", "match"),
        [
            ({"premium": {"method": "equivalence", "loadng": 0.5}},
             r"config\.premium\.loadng: unknown key \(did you mean 'loading'\?\)"),
            ({"premium": {"method": "bogus"}}, r"config\.premium"),
            ({"discounting": {"convention": "step_spot", "compoundng": "annual"}},
             r"config\.discounting\.compoundng: unknown key"),
            ({"discounting": {"convention": "curve_per_step"}}, r"config\.discounting\.file"),
            ({"discounting": {"convention": "step_spot"}, "rate_type": "forward"},
             r"config\.rate_type"),
            ({"discounting": {"file": "x.csv"}}, r"config\.discounting\.file: only"),
            ({"cashflow_scenarios": [1]}, r"config\.cashflow_scenarios"),
            ({"premium": {"method": "equivalence", "cover": ["claimz"]}},
             r"config\.premium\.cover\.0"),
        ],
    )  # fmt: skip
    def test_refused(self, config: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match):
            ProjectionEngine().initialize(config)

    def test_year0_rate_needs_step_spot(self, tmp_path: Path) -> None:
        curve = tmp_path / "c.csv"
        curve.write_text("year,rate\n0,0.01\n1,0.02\n")
        with pytest.raises(ConfigurationError, match="year-0 rate is used by step_spot"):
            ProjectionEngine().initialize({"yield_curve": str(curve)})

    def test_unknown_cashflow_scenario(self, tmp_path: Path) -> None:
        eng = engine(mortality_table=flat_q_table(tmp_path), output="cashflows",
                     cashflow_scenarios=[99])  # fmt: skip
        scen = np.zeros(2, SCENARIO_DTYPE)
        scen["year"] = [1, 2]
        pol = np.array([(1, 40, 0, 0, 0, 1, 1000.0, 0.0)], dtype=POLICY_DTYPE)

        with pytest.raises(ConfigurationError, match=r"config\.cashflow_scenarios: scenario 99"):
            run_chunk(eng, {"p": pol, "s": scen})


def test_discounting_enum_values() -> None:
    """The config's convention names are the enum's values."""
    assert {d.value for d in Discounting} == {"flat_forward", "step_spot", "curve_per_step"}


class TestSingleScenarioPath:
    """The one-pass single-scenario path (deterministic runs) against the reference."""

    @settings(max_examples=40, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_matches_reference_in_every_mode(self, case: ProjectionCase) -> None:
        """npv, detail, detail_ext, totals and means from the parts, to 1e-12 relative."""
        from livecalc.kernels.projection_single import single_parts, write_single

        rates = case.rates[:1]
        chunk = prepare_chunk(
            case.basis, case.policies, case.extension, rates, np.array([5]), case.rate0
        )
        parts = single_parts(chunk, case.basis)
        refs = []
        for i, pol in enumerate(case.policies):
            months, count = _months_and_counts(case, i)
            refs.append(project_pair(pol, months, count, list(rates[0]), case.basis, case.rate0))
        comps = ("premium_income", "death_benefits", "surrender_benefits", "maturity_benefits")
        gross = np.array([sum(abs(r[c]) for c in (*comps, "expenses")) for r in refs])

        for mode in (OutputMode.NPV, OutputMode.DETAIL, OutputMode.DETAIL_EXT):
            out = np.zeros(chunk.n_policies, mode.dtype)
            assert chunk.n_policies == write_single(chunk, case.basis, mode, out, parts)
            close([r["npv"] for r in refs], out["npv"], rel=1e-12, scale=gross)
            assert (out["scenario_id"] == 5).all()
            if mode is OutputMode.NPV:
                continue
            for c in comps:
                close([r[c] for r in refs], out[c], rel=1e-12, scale=gross)
            if mode is OutputMode.DETAIL:
                close([r["expenses"] for r in refs], out["expenses"], rel=1e-12, scale=gross)
            else:
                close([r["commissions"] for r in refs], out["commissions"], rel=1e-12)
                close([r["premium_annuity"] for r in refs], out["premium_annuity"], rel=1e-12)
                want = [r["expenses"] - r["commissions"] for r in refs]
                close(want, out["expenses"], rel=1e-12, scale=gross)
        totals = np.zeros(1, OutputMode.SCENARIO_TOTALS.dtype)
        write_single(chunk, case.basis, OutputMode.SCENARIO_TOTALS, totals, parts)
        close([sum(r["npv"] for r in refs)], totals["npv"], rel=1e-12, scale=[gross.sum()])
        means = np.zeros(chunk.n_policies, OutputMode.POLICY_MEANS.dtype)
        write_single(chunk, case.basis, OutputMode.POLICY_MEANS, means, parts)
        assert (means["scenario_id"] == ALL_SCENARIOS).all()
        close([r["npv"] for r in refs], means["npv"], rel=1e-12, scale=gross)


class TestNumpyBaseline:
    """The benchmark's numpy implementation computes the same model as the engine."""

    @settings(max_examples=25, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_deterministic_numpy_matches_single_path(self, case: ProjectionCase) -> None:
        """Equivalence premiums (unrounded) and npv agree with the kernels to 1e-9."""
        from livecalc.kernels.projection_numpy import deterministic_numpy
        from livecalc.kernels.projection_single import single_parts, single_pvs

        basis = dataclasses.replace(
            case.basis, commission=np.minimum(case.basis.commission, 0.3), percent_of_premium=0.05
        )
        if case.extension is not None:
            case.extension["policy_count"] = np.maximum(case.extension["policy_count"], 0.01)
        chunk = prepare_chunk(
            basis, case.policies, case.extension, case.rates[:1], np.zeros(1), case.rate0
        )
        cover = ("claims", "expenses", "commissions")
        cfg = EquivalencePremium(
            method="equivalence", loading=0.2, cover=list(cover), rounding=None
        )

        premium, npv = deterministic_numpy(chunk, basis, 0.2, cover, None)

        want = equivalence_premiums(cfg, basis, chunk)
        close(want, premium)
        pv = single_pvs(single_parts(chunk, basis), basis, want)
        gross = pv.premium_income + pv.death_benefits + pv.expenses + pv.commissions
        scale = chunk.pol_float[:, 2] * (gross + pv.surrender_benefits + pv.maturity_benefits)
        close(chunk.pol_float[:, 2] * pv.npv, npv, scale=scale)


def test_merge_cashflows_aligns_periods() -> None:
    """A chunk with fewer periods adds into the matching (scenario, period) records."""
    from livecalc.pipeline._node import merge_cashflows

    def part(ids: list[int], periods: int, value: float) -> np.ndarray:
        rec = np.zeros(len(ids) * periods, CASHFLOW_DTYPE).reshape(len(ids), periods)
        rec["scenario_id"] = np.array(ids)[:, None]
        rec["period"] = np.arange(1, periods + 1)[None, :]
        rec["premiums"] = value
        rec["discount_factor"] = 0.5
        return rec.reshape(-1)

    merged = merge_cashflows(merge_cashflows(None, part([7, 9], 2, 1.0)), part([7, 9], 3, 10.0))

    view = merged.reshape(2, 3)
    assert [[7] * 3, [9] * 3] == view["scenario_id"].tolist()
    assert [[11.0, 11.0, 10.0]] * 2 == view["premiums"].tolist()
    assert (view["discount_factor"] == 0.5).all()
    same = merge_cashflows(part([7], 3, 1.0), part([7], 3, 2.0))
    assert [3.0] * 3 == same["premiums"].tolist()


def test_single_path_parallel_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Policy-parallel blocks give the same parts as the one-thread loop, bit for bit (each
    policy's sums are computed by one thread in the same order either way)."""
    import livecalc.kernels.projection_single as single
    from strategies import fixed_basis

    rng = np.random.default_rng(3)
    pol = np.zeros(500, POLICY_DTYPE)
    pol["policy_id"] = np.arange(500)
    pol["age"] = rng.integers(20, 60, 500)
    pol["term"] = rng.integers(1, 30, 500)
    pol["product_type"] = rng.integers(0, 3, 500)
    pol["sum_assured"] = 1000.0
    basis = fixed_basis(steps_per_year=12, surrender=np.array([0.1]), maintenance=20.0)
    chunk = prepare_chunk(basis, pol, None, np.full((1, 121), 0.03), np.zeros(1))

    serial = single.single_parts(chunk, basis)
    monkeypatch.setattr(single, "PARALLEL_FROM_STEPS", 0)
    parallel = single.single_parts(chunk, basis)

    assert serial.tobytes() == parallel.tobytes()
