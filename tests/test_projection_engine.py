"""The projection engine: config, inputs by dtype, outputs, parameters, audit, closed forms."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.engines.projection import ProjectionEngine, scenario_matrix
from livecalc.errors import ConfigurationError
from livecalc.kernels.projection_basis import COMPONENTS, ClaimTiming, ProjectionBasis
from livecalc.runtime.buffers import (
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferManager,
    BufferType,
)
from livecalc.runtime.factory import EngineFactory
from reference_projection import project_pair

FLAT_Q = pa.table({"age": list(range(121)), "q": [0.01] * 120 + [1.0]})
NO_COSTS: dict[str, Any] = {
    "mortality_table": None,
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


def policy_records(rows: list[tuple[Any, ...]]) -> np.ndarray:
    """POLICY records from (id, age, gender, class, product, term, sum_assured, premium)."""
    return np.array(rows, dtype=POLICY_DTYPE)


def scenario_records(rates: np.ndarray, first_id: int = 0) -> np.ndarray:
    """SCENARIO records for a (scenarios, years) rate matrix, sorted by scenario then year."""
    n_scen, n_years = rates.shape
    out = np.zeros(n_scen * n_years, dtype=SCENARIO_DTYPE)
    out["scenario_id"] = np.repeat(np.arange(n_scen) + first_id, n_years)
    out["year"] = np.tile(np.arange(1, n_years + 1), n_scen)
    out["rate"] = rates.reshape(-1)
    return out


def engine(tmp_path: Path | None = None, table: pa.Table = FLAT_Q, **config: Any) -> Any:
    """An initialised engine with no expenses or lapses unless the config says otherwise."""
    full = {**NO_COSTS, **config}
    if full["mortality_table"] is None:
        assert tmp_path is not None
        from pyarrow import parquet

        path = tmp_path / "q.parquet"
        parquet.write_table(table, path)
        full["mortality_table"] = str(path)
    eng = ProjectionEngine()
    eng.initialize(full)
    return eng


def run(eng: ProjectionEngine, inputs: Any) -> np.ndarray:
    """Allocate the output the engine asks for, run one chunk and return the records."""
    mapping = inputs if isinstance(inputs, dict) else {"policies": inputs}
    spec = eng.output_spec(mapping)
    out = np.zeros(spec.records, dtype=spec.dtype)
    result = eng.run_chunk(inputs, out)
    assert result.bytes_written == spec.records * spec.dtype.itemsize
    return out


ONE_TERM = policy_records([(1, 40, 0, 0, 0, 1, 100_000.0, 1_500.0)])


class TestClosedForms:
    """Hand-computed cases."""

    def test_one_year_term(self, tmp_path: Path) -> None:
        """One-year term, claims at year end: npv = P - q SA / (1 + i)."""
        eng = engine(tmp_path, discount_rate=0.04)

        out = run(eng, ONE_TERM)

        assert 1_500.0 - 0.01 * 100_000.0 / 1.04 == pytest.approx(out["npv"][0], rel=1e-14)

    def test_one_year_term_claims_mid_year(self, tmp_path: Path) -> None:
        """Mid-year claims discount half a year: npv = P - q SA (1 + i)^-1/2."""
        eng = engine(tmp_path, discount_rate=0.04, claim_timing="middle")

        out = run(eng, ONE_TERM)

        assert 1_500.0 - 1_000.0 * 1.04**-0.5 == pytest.approx(out["npv"][0], rel=1e-14)

    def test_two_year_endowment_with_lapses_and_expenses(self, tmp_path: Path) -> None:
        """Two-year endowment: deaths, lapses on survivors, surrender and maturity values."""
        eng = engine(
            tmp_path,
            output="detail",
            discount_rate=0.05,
            lapse_table=[0.1],
            surrender_values=[0.5],
            expenses={**NO_COSTS["expenses"], "maintenance": 10.0, "inflation": 0.1},
        )
        pol = policy_records([(7, 50, 1, 0, 2, 2, 1_000.0, 400.0)])
        q, w, v = 0.01, 0.1, 1 / 1.05
        lives1 = (1 - q) * (1 - w)
        lives2 = lives1 * (1 - q) * (1 - w)

        out = run(eng, pol)[0]

        assert 400.0 * (1 + lives1 * v) == pytest.approx(out["premium_income"], rel=1e-14)
        assert 10.0 * (1 + lives1 * 1.1 * v) == pytest.approx(out["expenses"], rel=1e-14)
        deaths = 1_000.0 * q * (v + lives1 * v**2)
        assert deaths == pytest.approx(out["death_benefits"], rel=1e-14)
        surr = 500.0 * (1 - q) * w * (v + lives1 * v**2)
        assert surr == pytest.approx(out["surrender_benefits"], rel=1e-14)
        assert 1_000.0 * lives2 * v**2 == pytest.approx(out["maturity_benefits"], rel=1e-14)

    def test_spot_curve_file(self, tmp_path: Path) -> None:
        """A spot yield curve from a file discounts year t at (1 + z_t)^-t."""
        curve = tmp_path / "curve.csv"
        curve.write_text("year,rate\n1,0.02\n2,0.03\n3,0.035\n")
        eng = engine(tmp_path, yield_curve=str(curve), rate_type="spot", output="detail")
        pol = policy_records([(1, 30, 0, 0, 0, 2, 50_000.0, 0.0)])

        out = run(eng, pol)[0]

        expected = 500.0 * (1.02**-1 + 0.99 * 1.03**-2)
        assert expected == pytest.approx(out["death_benefits"], rel=1e-14)


class TestInvariants:
    """Properties that hold for any policy."""

    @settings(max_examples=15, deadline=None)
    @given(st.integers(20, 70), st.integers(1, 30), st.sampled_from([0, 1, 2]))
    def test_no_decrements_give_the_annuity_value(self, age: int, term: int, product: int) -> None:
        """With zero mortality and lapses, premium income is P times the annuity-due."""
        eng = ProjectionEngine()
        zero_q = pa.table({"age": list(range(121)), "q": [0.0] * 121})
        eng.initialize({**NO_COSTS, "mortality_table": _csv(zero_q), "output": "detail"})
        rates = np.linspace(0.01, 0.05, 40).reshape(1, 40)
        pol = policy_records([(1, age, 0, 0, product, term, 1_000.0, 100.0)])

        out = run(eng, {"p": pol, "s": scenario_records(rates)})[0]

        disc = np.concatenate([[1.0], np.cumprod(1 / (1 + rates[0]))])
        assert 100.0 * disc[:term].sum() == pytest.approx(out["premium_income"], rel=1e-13)
        assert 0.0 == out["death_benefits"]
        maturity = 1_000.0 * disc[term] if product == 2 else 0.0
        assert maturity == pytest.approx(out["maturity_benefits"], rel=1e-13)

    def test_doubling_sum_assured_doubles_claims(self) -> None:
        """Twice the sum assured gives exactly twice the death benefits."""
        eng = ProjectionEngine()
        eng.initialize({"output": "detail"})
        pol = policy_records([(1, 45, 1, 1, t, 20, 200_000.0, 3_000.0) for t in (0, 1, 2)])
        double = pol.copy()
        double["sum_assured"] *= 2

        one, two = run(eng, pol), run(eng, double)

        assert np.allclose(2 * one["death_benefits"], two["death_benefits"], rtol=1e-14)

    @pytest.mark.parametrize(
        ("name", "direction"),
        [
            ("mortality_multiplier", -1),
            ("expense_multiplier", -1),
            ("premium_multiplier", 1),
        ],
    )
    def test_stress_moves_npv_the_right_way(self, name: str, direction: int) -> None:
        """Heavier mortality or expenses lower the npv; higher premiums raise it."""
        eng = ProjectionEngine()
        eng.initialize({"output": "npv"})
        pol = policy_records([(1, 50, 0, 0, 0, 20, 5e5, 2e3), (2, 30, 1, 0, 1, 0, 1e5, 900.0)])
        base = run(eng, pol)["npv"].copy()

        eng.set_parameters({name: 1.3})
        stressed = run(eng, pol)["npv"]

        assert (np.sign(stressed - base) == direction).all()

    def test_policy_count_scales_results(self) -> None:
        """A model point of 3 policies gives 3 times one policy's present values."""
        eng = ProjectionEngine()
        eng.initialize({"output": "detail"})
        pol = policy_records([(1, 45, 0, 0, 2, 15, 100_000.0, 6_000.0)])
        ext = np.array([(1, 0, 0, 3.0)], dtype=POLICY_EXT_DTYPE)

        one, three = run(eng, pol), run(eng, {"p": pol, "e": ext})

        assert np.allclose(3 * one["expenses"], three["expenses"], rtol=1e-14)
        assert np.allclose(3 * one["npv"], three["npv"], rtol=1e-13)

    def test_expired_policy_is_worth_nothing(self) -> None:
        """A policy in force beyond its term has no cash flows left."""
        eng = ProjectionEngine()
        eng.initialize({"output": "detail"})
        pol = policy_records([(3, 40, 0, 0, 2, 5, 1e5, 9_000.0)])
        ext = np.array([(3, 60, 0, 2.0)], dtype=POLICY_EXT_DTYPE)

        out = run(eng, {"p": pol, "e": ext})[0]

        assert [0.0] * 6 == [out[f] for f in ("npv", *COMPONENTS)]

    def test_in_force_policy_equals_older_new_policy(self, tmp_path: Path) -> None:
        """In force 2 years from entry age 40 equals new business at 42 for the remaining term."""
        eng = engine(tmp_path, output="detail", time_step="monthly", lapse_table=[0.05])
        old = policy_records([(1, 40, 0, 0, 2, 10, 1e5, 8_000.0)])
        ext = np.array([(1, 24, 0, 1.0)], dtype=POLICY_EXT_DTYPE)
        new = policy_records([(1, 42, 0, 0, 2, 8, 1e5, 8_000.0)])

        a, b = run(eng, {"p": old, "e": ext}), run(eng, new)

        assert np.allclose(b["npv"], a["npv"], rtol=1e-13)


class TestConfigMapping:
    """Every model key of the config reaches the model the reference computes."""

    def test_all_keys_against_reference(self, tmp_path: Path) -> None:
        """A config using every model key gives the reference's present values."""
        config: dict[str, Any] = {
            "lapse_table": [0.2, 0.1],
            "commissions": [0.8, 0.1],
            "surrender_values": [0.0, 0.4],
            "underwriting_class_factors": [1.0, 1.7],
            "time_step": "monthly",
            "premium_frequency": "monthly",
            "claim_timing": "middle",
            "rate_type": "spot",
            "expenses": {
                "acquisition": 300.0,
                "maintenance": 60.0,
                "inflation": 0.03,
                "percent_of_premium": 0.05,
                "per_claim": 200.0,
            },
            "dynamic_lapse": {
                "reference_rate": 0.02,
                "sensitivity": 15.0,
                "min_factor": 0.3,
                "max_factor": 3.0,
            },
            "premium_multiplier": 1.1,
            "mortality_multiplier": 1.2,
            "lapse_multiplier": 0.9,
            "expense_multiplier": 1.3,
            "output": "detail",
        }
        eng = engine(tmp_path, **config)
        pol = policy_records(
            [
                (1, 30, 0, 1, 0, 2, 1e5, 900.0),
                (2, 117, 1, 0, 1, 0, 5e4, 2e3),  # whole life to age 120: three years
                (3, 60, 2, 1, 2, 3, 2e4, 7e3),
            ]
        )
        ext = np.array([(1, 0, 0, 1.0), (2, 5, 0, 2.0), (3, 13, 0, 0.5)], dtype=POLICY_EXT_DTYPE)
        rates = np.array([np.linspace(0.01, 0.04, 5), np.linspace(0.03, 0.0, 5)])
        basis = ProjectionBasis(
            mortality=np.stack([np.full((121, 1), 0.01)] * 3),
            mortality_age_min=0,
            lapse=np.array([0.2, 0.1]),
            commission=np.array([0.8, 0.1]),
            surrender=np.array([0.0, 0.4]),
            class_factors=np.array([1.0, 1.7]),
            steps_per_year=12,
            premium_monthly=True,
            claim_timing=ClaimTiming.MIDDLE,
            spot_rates=True,
            acquisition=300.0,
            maintenance=60.0,
            inflation=0.03,
            percent_of_premium=0.05,
            per_claim=200.0,
            dynamic_lapse=True,
            dynamic_reference_rate=0.02,
            dynamic_sensitivity=15.0,
            dynamic_min_factor=0.3,
            dynamic_max_factor=3.0,
            multipliers={name: config[name] for name in eng.get_parameters()},
        )
        basis.mortality[:, 120] = 1.0

        out = run(eng, {"p": pol, "e": ext, "s": scenario_records(rates)})

        for r, rec in enumerate(out):
            i, s = divmod(r, 2)
            months, count = int(ext["duration_months"][i]), float(ext["policy_count"][i])
            expected = project_pair(pol[i], months, count, list(rates[s]), basis)
            for name in ("npv", *COMPONENTS):
                assert expected[name] == pytest.approx(rec[name], rel=1e-12, abs=1e-9)


class TestOutputBuffers:
    """Records go straight into the caller's buffer."""

    def test_writes_into_a_managed_buffer(self) -> None:
        """A BufferManager buffer is filled in place, from index 0."""
        eng = ProjectionEngine()
        eng.initialize({"output": "detail"})
        scen = scenario_records(np.full((4, 10), 0.03))
        expected = run(eng, {"p": ONE_TERM, "s": scen})
        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.RESULT_DETAIL, "results", 6)

            result = eng.run_chunk({"p": ONE_TERM, "s": scen}, info.data)

            assert 4 == result.rows_processed
            assert expected.tobytes() == info.data[:4].tobytes()


class TestParameters:
    """set_parameters applies stress multipliers without re-initialising."""

    def test_same_as_configured_multipliers(self) -> None:
        """Overrides give the same records as a config with those multipliers."""
        stress = {"mortality_multiplier": 1.2, "lapse_multiplier": 0.7, "premium_multiplier": 1.1}
        pol = policy_records([(1, 35, 0, 0, 1, 25, 1e5, 1_200.0)])
        configured = ProjectionEngine()
        configured.initialize({"output": "detail", **stress})
        overridden = ProjectionEngine()
        overridden.initialize({"output": "detail"})

        overridden.set_parameters(stress)

        assert run(configured, pol).tobytes() == run(overridden, pol).tobytes()

    def test_get_parameters(self) -> None:
        """get_parameters reports the multipliers in force, overrides included."""
        eng = ProjectionEngine()
        eng.initialize({"expense_multiplier": 1.5})

        eng.set_parameters({"premium_multiplier": 0.9})

        expected = {
            "premium_multiplier": 0.9,
            "mortality_multiplier": 1.0,
            "lapse_multiplier": 1.0,
            "expense_multiplier": 1.5,
        }
        assert expected == eng.get_parameters()

    def test_unknown_parameter(self) -> None:
        """An unknown name is refused with the known ones listed."""
        eng = ProjectionEngine()
        eng.initialize({})

        with pytest.raises(ConfigurationError, match=r"interest_multiplier.*premium_multiplier"):
            eng.set_parameters({"interest_multiplier": 1.0})

    def test_negative_multiplier(self) -> None:
        """A negative multiplier is refused."""
        eng = ProjectionEngine()
        eng.initialize({})

        with pytest.raises(ConfigurationError, match="lapse_multiplier"):
            eng.set_parameters({"lapse_multiplier": -1.0})


class TestInputs:
    """Inputs are found by dtype and validated with errors naming rows and fixes."""

    def test_rates_are_a_view(self) -> None:
        """The scenario rates reshape to (scenarios, years) without a copy."""
        scen = scenario_records(np.full((3, 5), 0.02))

        rates, ids = scenario_matrix(scen)

        assert (3, 5) == rates.shape
        assert np.shares_memory(rates, scen)
        assert [0, 1, 2] == ids.tolist()

    def test_unsorted_scenarios(self) -> None:
        """Years out of order are refused, naming the row."""
        scen = scenario_records(np.full((2, 3), 0.02))
        scen["year"][4] = 3

        with pytest.raises(ConfigurationError, match="row 5"):
            scenario_matrix(scen)

    def test_descending_scenario_ids(self) -> None:
        """Scenario ids that do not ascend are refused."""
        scen = scenario_records(np.full((2, 3), 0.02))
        scen["scenario_id"] = np.repeat([4, 2], 3)

        with pytest.raises(ConfigurationError, match="unique and ascending"):
            scenario_matrix(scen)

    def test_scenarios_too_short(self) -> None:
        """Scenarios shorter than the longest projection are refused, naming the policy."""
        eng = ProjectionEngine()
        eng.initialize({})
        pol = policy_records([(9, 30, 0, 0, 0, 10, 1e5, 500.0)])
        scen = scenario_records(np.full((2, 5), 0.02))
        out = np.zeros(2, RESULT_DTYPE)

        with pytest.raises(ConfigurationError, match="cover 5 years but policy 9 runs 10"):
            eng.run_chunk({"p": pol, "s": scen}, out)

    def test_no_policies(self) -> None:
        """Without a POLICY input the engine says what it needs."""
        eng = ProjectionEngine()
        eng.initialize({})

        with pytest.raises(ConfigurationError, match="needs a POLICY input"):
            eng.run_chunk({"s": scenario_records(np.zeros((1, 3)))}, np.zeros(1, RESULT_DTYPE))

    def test_policy_id_too_big_for_result(self) -> None:
        """RESULT's 32-bit policy_id refuses larger ids and points to the detail output."""
        eng = ProjectionEngine()
        eng.initialize({})
        pol = policy_records([(2**33, 30, 0, 0, 0, 10, 1e5, 500.0)])

        with pytest.raises(ConfigurationError, match=r"policy 8589934592.*detail"):
            eng.run_chunk(pol, np.zeros(1, RESULT_DTYPE))

    def test_table_does_not_cover_age(self, tmp_path: Path) -> None:
        """A table ending before an age the run reaches names the policy and the age."""
        short = pa.table({"age": list(range(18, 61)), "q": [0.01] * 43})
        eng = engine(tmp_path, table=short)
        pol = policy_records([(5, 55, 0, 0, 0, 10, 1e5, 500.0)])

        with pytest.raises(ConfigurationError, match=r"policy 5 .*reaches age 61"):
            eng.run_chunk(pol, np.zeros(1, RESULT_DTYPE))

    def test_part_year_duration_with_annual_steps(self) -> None:
        """Annual steps count completed policy years, and say so in a warning."""
        eng = ProjectionEngine()
        eng.initialize({})
        pol = policy_records([(1, 40, 0, 0, 2, 10, 1e5, 9e3)])
        part, whole = (np.array([(1, d, 0, 1.0)], dtype=POLICY_EXT_DTYPE) for d in (30, 24))
        out_part, out_whole = np.zeros(1, RESULT_DTYPE), np.zeros(1, RESULT_DTYPE)

        result = eng.run_chunk({"p": pol, "e": part}, out_part)
        eng.run_chunk({"p": pol, "e": whole}, out_whole)

        assert out_whole["npv"] == out_part["npv"]
        assert ["policies in force for part of a policy year: 1"] == [
            w.split(";")[0] for w in result.warnings
        ]

    def test_output_buffer_too_small(self) -> None:
        """An output buffer with too few records is refused before any work."""
        eng = ProjectionEngine()
        eng.initialize({})
        scen = scenario_records(np.full((3, 5), 0.02))

        with pytest.raises(ConfigurationError, match="3 records"):
            eng.run_chunk({"p": ONE_TERM, "s": scen}, np.zeros(2, RESULT_DTYPE))

    @pytest.mark.parametrize(
        ("output", "dtype", "records"),
        [
            ("npv", RESULT_DTYPE, 6),
            ("detail", RESULT_DETAIL_DTYPE, 6),
            ("scenario_totals", SCENARIO_TOTAL_DTYPE, 3),
            ("policy_means", RESULT_DETAIL_DTYPE, 2),
        ],
    )
    def test_output_spec(self, output: str, dtype: np.dtype[Any], records: int) -> None:
        """output_spec gives each mode's record dtype and count for two policies, 3 scenarios."""
        eng = ProjectionEngine()
        eng.initialize({"output": output})
        pol = np.concatenate([ONE_TERM, ONE_TERM])
        scen = scenario_records(np.full((3, 5), 0.02))

        spec = eng.output_spec({"anything": pol, "named": scen})

        assert (dtype, records) == (spec.dtype, spec.records)


class TestConfig:
    """Config errors name the key and the fix."""

    def test_every_problem_reported(self) -> None:
        """Two bad keys are reported together, by their config path."""
        with pytest.raises(ConfigurationError) as info:
            ProjectionEngine().initialize({"time_step": "weekly", "expenses": {"acq": 1}})

        assert "config.time_step" in str(info.value)
        assert "config.expenses.acq" in str(info.value)

    def test_missing_table_file(self) -> None:
        """A missing mortality file is named with its key."""
        with pytest.raises(ConfigurationError, match=r"config.mortality_table.*nope.csv"):
            ProjectionEngine().initialize({"mortality_table": "nope.csv"})

    def test_separable_with_dynamic_lapses(self) -> None:
        """Forcing the separable path with dynamic lapses is refused."""
        dyn = {"reference_rate": 0.03, "sensitivity": 5.0}

        with pytest.raises(ConfigurationError, match=r"config.method"):
            ProjectionEngine().initialize({"method": "separable", "dynamic_lapse": dyn})

    def test_assumptions_reference(self, tmp_path: Path) -> None:
        """An am:// mortality reference is fetched from a live Assumptions Manager."""
        from livecalc.assumptions.credentials import AMCredentials
        from livecalc.assumptions.server import BackgroundServer, create_app, issue_token

        secret = "s" * 40
        (tmp_path / "root" / "m").mkdir(parents=True)
        pa_csv.write_csv(FLAT_Q, tmp_path / "root" / "m" / "v1.csv")
        with BackgroundServer(create_app(tmp_path / "root", secret)) as server:
            creds = AMCredentials(
                am_url=server.url,
                am_token=issue_token(secret, "tests"),
                cache_dir=str(tmp_path / "cache"),
            )
            eng = ProjectionEngine()
            eng.initialize(
                {**NO_COSTS, "mortality_table": "am://m@v1", "discount_rate": 0.04}, creds
            )

        out = run(eng, ONE_TERM)

        assert 1_500.0 - 1_000.0 / 1.04 == pytest.approx(out["npv"][0], rel=1e-14)

    def test_factory_creates_it_under_both_names(self) -> None:
        """The factory builds the engine as "projection" and as the seed's "cpp_projection"."""
        factory = EngineFactory(discover=False)

        engines = [factory.create_engine(t) for t in ("projection", "cpp_projection")]

        assert [ProjectionEngine, ProjectionEngine] == [type(e) for e in engines]


class TestAudit:
    """Period-by-period cash flows of chosen policies."""

    @pytest.mark.parametrize("dynamic", [False, True])
    def test_discounted_flows_sum_to_npv(self, dynamic: bool) -> None:
        """The audit's discounted net cash flows add up to the policy's npv."""
        config: dict[str, Any] = {"audit": {"policy_ids": [2], "scenario_id": 11}}
        if dynamic:
            config["dynamic_lapse"] = {"reference_rate": 0.03, "sensitivity": 8.0}
        eng = ProjectionEngine()
        eng.initialize({**config, "claim_timing": "middle", "time_step": "monthly"})
        pol = policy_records([(1, 30, 0, 0, 0, 5, 1e5, 300.0), (2, 40, 1, 1, 2, 3, 5e4, 1.5e4)])
        scen = scenario_records(np.linspace(0.0, 0.08, 2 * 6).reshape(2, 6), first_id=10)

        out = run(eng, {"p": pol, "s": scen})
        flows = pickle.loads(pickle.dumps(eng.get_outputs()))["cashflows"][2]

        assert 36 == len(flows["pv_net_cash_flow"])
        assert out["npv"][3] == pytest.approx(sum(flows["pv_net_cash_flow"]), rel=1e-12)

    def test_unknown_scenario(self) -> None:
        """Auditing a scenario that is not there is refused."""
        eng = ProjectionEngine()
        eng.initialize({"audit": {"policy_ids": [1], "scenario_id": 5}})

        with pytest.raises(ConfigurationError, match="scenario 5"):
            run(eng, ONE_TERM)


def _csv(table: pa.Table) -> str:
    """Write a table to a CSV file in a fresh temporary folder and return its path."""
    import tempfile

    from pyarrow import csv

    path = Path(tempfile.mkdtemp()) / "table.csv"
    csv.write_csv(table, path)
    return str(path)


class TestNestedConfigErrors:
    def test_unknown_nested_key_lists_that_blocks_keys(self) -> None:
        """A misspelt key inside `expenses` is named with a suggestion and the block's keys."""
        with pytest.raises(ConfigurationError) as info:
            ProjectionEngine().initialize({"expenses": {"maintenanc": 30.0}})

        message = str(info.value)
        assert "config.expenses.maintenanc: unknown key (did you mean 'maintenance'?)" in message
        assert "mortality_table" not in message
