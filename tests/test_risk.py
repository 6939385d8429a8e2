"""Risk measures: per-scenario portfolio values, percentiles, VaR and fractional CTE."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.errors import ConfigurationError
from livecalc.runtime.buffers import (
    ALL_SCENARIOS,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)
from livecalc.solver.risk import (
    compute_metrics,
    find_results,
    metrics_per_outer,
    parse_metric,
    scenario_values,
)

values_strategy = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60
).map(lambda v: np.array(v, dtype=np.float64))
levels_strategy = st.floats(min_value=0.0, max_value=0.999)


def reference_var(losses: np.ndarray, level: float) -> float:
    """VaR of loss by numpy's inverted-CDF quantile (independent of livecalc.solver.risk)."""
    return float(np.quantile(losses, level, method="inverted_cdf"))


def reference_cte(losses: np.ndarray, level: float) -> float:
    """CTE of loss as a probability-weighted sum: scenario j of the sorted losses keeps the
    part of its 1/n mass that lies above ``level`` (written independently of
    livecalc.solver.risk)."""
    n = losses.size
    upper = np.arange(1, n + 1) / n
    mass = np.clip(upper - level, 0.0, 1.0 / n)
    return float((mass * np.sort(losses)).sum() / (1.0 - level))


class TestParseMetric:
    def test_levels_parse_from_decimal_text(self) -> None:
        """``cte_99.5``, ``cte_99_5`` and ``var_95`` give canonical names and exact levels."""

        specs = [parse_metric(n) for n in ("cte_99.5", "cte_99_5", "var_95", "p99.5", "p50")]

        assert [("cte_99_5", 0.995), ("cte_99_5", 0.995), ("var_95", 0.95)] == [
            (s.name, s.level) for s in specs[:3]
        ]
        assert ["p99_5", "p50"] == [s.name for s in specs[3:]]
        assert ["cte_70", "var_97_5"] == [parse_metric(n).name for n in ("cte_70.0", "var_97.50")]

    def test_unknown_metric_is_refused(self) -> None:
        """An unknown metric name raises ConfigurationError listing the known forms."""

        with pytest.raises(ConfigurationError, match=r"'ctee_95' is unknown.*cte_Q"):
            parse_metric("ctee_95")

    def test_level_above_100_is_refused(self) -> None:
        """A level above 100 percent is refused."""

        with pytest.raises(ConfigurationError, match=r"\[0, 100\]"):
            parse_metric("cte_150")


class TestComputeMetrics:
    losses = np.arange(1.0, 11.0)

    def test_hand_computed_tail_measures_on_loss(self) -> None:
        """Losses 1..10: cte_85 takes 10 and half of 9's mass, cte_70 is the mean of 8, 9, 10."""

        m = compute_metrics(self.losses * -1.0, ["var_85", "cte_85", "cte_70", "cte_95"], "loss")

        assert 9.0 == m["var_85"]
        assert (1.0 + 0.45) / 0.15 == pytest.approx(m["cte_85"], rel=1e-12)
        assert 9.0 == pytest.approx(m["cte_70"], rel=1e-12)
        assert 10.0 == pytest.approx(m["cte_95"], rel=1e-12)

    def test_npv_basis_flips_the_tail_signs(self) -> None:
        """On the npv basis var and cte are the loss figures negated; percentiles are of NPV."""

        npv = -self.losses
        m_npv = compute_metrics(npv, ["cte_85", "var_85"], "npv")
        m_loss = compute_metrics(npv, ["cte_85", "var_85"], "loss")

        assert -m_loss["cte_85"] == m_npv["cte_85"]
        assert -m_loss["var_85"] == m_npv["var_85"]
        assert -5.5 == m_npv["mean"]
        assert 5.5 == m_loss["mean"]
        assert float(np.quantile(npv, 0.9, method="inverted_cdf")) == m_npv["p90"]

    def test_standard_metrics_always_present(self) -> None:
        """count, mean, std, min, max and the six percentiles come without being asked."""

        m = compute_metrics(np.array([1.0, 2.0, 4.0]))

        expected = ["count", "mean", "std", "min", "max", "p50", "p75", "p90", "p95", "p99"]
        assert [*expected, "p99_5"] == list(m)
        assert float(np.std([1.0, 2.0, 4.0], ddof=1)) == m["std"]

    def test_one_scenario(self) -> None:
        """One scenario: every measure is its value and the std is 0."""

        m = compute_metrics(np.array([-3.0]), ["cte_95", "var_99_5"], "loss")

        assert {3.0} == {v for k, v in m.items() if k not in ("std", "count")}
        assert 0.0 == m["std"]

    def test_no_scenarios_is_refused(self) -> None:
        """Empty input raises ConfigurationError rather than returning NaNs."""

        with pytest.raises(ConfigurationError, match="no scenario results"):
            compute_metrics(np.empty(0))

    @settings(max_examples=60, deadline=None)
    @given(values_strategy, levels_strategy)
    def test_matches_independent_numpy(self, npv: np.ndarray, level: float) -> None:
        """VaR, CTE and percentiles equal an independent numpy computation at any level."""

        q = round(level * 100, 1)
        name = str(q).replace(".", "_").removesuffix("_0")
        a = float(name.replace("_", ".")) / 100
        m = compute_metrics(npv, [f"var_{name}", f"cte_{name}", f"p{name}"], "loss")
        losses = -npv

        assert reference_var(losses, a) == m[f"var_{name}"]
        assert reference_cte(losses, a) == pytest.approx(m[f"cte_{name}"], rel=1e-9, abs=1e-6)
        assert reference_var(losses, a) == m[f"p{name}"]
        assert float(np.mean(losses)) == pytest.approx(m["mean"], rel=1e-12, abs=1e-6)

    @settings(max_examples=60, deadline=None)
    @given(values_strategy)
    def test_cte_dominates_var_and_is_monotone(self, npv: np.ndarray) -> None:
        """On loss, CTE >= VaR at each level, both rise with the level, CTE_0 is the mean."""

        levels = ["0", "50", "70", "90", "95", "99", "99_5"]
        names = [f"{k}_{lv}" for lv in levels for k in ("var", "cte")]
        m = compute_metrics(npv, names, "loss")
        ctes = [m[f"cte_{lv}"] for lv in levels]
        vars_ = [m[f"var_{lv}"] for lv in levels]
        slack = 1e-9 * (1.0 + float(np.abs(npv).max()))

        assert all(c >= v - slack for c, v in zip(ctes, vars_, strict=True))
        assert all(b >= a - slack for a, b in pairwise(ctes))
        assert all(b >= a for a, b in pairwise(vars_))
        assert m["mean"] == pytest.approx(ctes[0], rel=1e-9, abs=slack)
        assert ctes[-1] <= m["max"] + slack


class TestScenarioValues:
    def test_sums_npv_per_scenario_over_policies(self) -> None:
        """RESULT records sum per scenario_id, whatever their order."""

        r = np.zeros(6, RESULT_DTYPE)
        r["scenario_id"] = [2, 1, 2, 1, 3, 3]
        r["npv"] = [1.0, 10.0, 2.0, 20.0, 0.5, 0.25]

        v = scenario_values(r)

        assert [1, 2, 3] == v.scenario_ids.tolist()
        assert [30.0, 3.0, 0.75] == v.npv.tolist()
        assert 6 == v.records

    def test_detail_skips_per_policy_means(self) -> None:
        """RESULT_DETAIL records with scenario_id ALL_SCENARIOS are not scenario results."""

        r = np.zeros(3, RESULT_DETAIL_DTYPE)
        r["scenario_id"] = [0, ALL_SCENARIOS, 0]
        r["npv"] = [1.0, 100.0, 2.0]

        v = scenario_values(r)

        assert ([0], [3.0]) == (v.scenario_ids.tolist(), v.npv.tolist())

    def test_sparse_ids_take_the_sorting_path(self) -> None:
        """Ids far apart (beyond the dense bincount range) still sum correctly."""

        r = np.zeros(3, SCENARIO_TOTAL_DTYPE)
        r["scenario_id"] = [4_000_000_000, 7, 4_000_000_000]
        r["npv"] = [1.0, 2.0, 3.0]

        v = scenario_values(r)

        assert ([7, 4_000_000_000], [2.0, 4.0]) == (v.scenario_ids.tolist(), v.npv.tolist())


class TestFindResults:
    def test_finds_results_by_dtype_in_a_mapping(self) -> None:
        """Result arrays are found by dtype whatever their names; others are ignored."""

        res = np.zeros(2, SCENARIO_TOTAL_DTYPE)
        found = find_results({"anything": res, "scen": np.zeros(2, SCENARIO_DTYPE)})

        assert 1 == len(found)
        assert found[0] is res

    def test_no_results_names_the_inputs(self) -> None:
        """Input without result records raises ConfigurationError naming what it got."""

        with pytest.raises(ConfigurationError, match=r"'scen'.*no projection results"):
            find_results({"scen": np.zeros(2, SCENARIO_DTYPE)})


class TestMetricsPerOuter:
    def test_groups_inner_scenarios_by_outer(self) -> None:
        """scenario_id // 1000 groups inner scenarios; each group matches its own metrics."""

        rng = np.random.default_rng(3)
        outer, inner = 3, 40
        r = np.zeros(outer * inner, SCENARIO_TOTAL_DTYPE)
        r["scenario_id"] = [o * 1000 + i for o in range(outer) for i in range(inner)]
        r["npv"] = rng.normal(size=r.size)
        v = scenario_values(r)

        per = metrics_per_outer(v, ["cte_90"], "loss")

        assert v.is_nested()
        assert [0, 1, 2] == list(per)
        for o in range(outer):
            losses = -r["npv"][o * inner : (o + 1) * inner]
            assert reference_cte(losses, 0.9) == pytest.approx(per[o]["cte_90"], rel=1e-12)
            assert float(inner) == per[o]["count"]

    def test_flat_ids_are_not_nested(self) -> None:
        """Ids below 1000 form one outer scenario."""

        r = np.zeros(5, SCENARIO_TOTAL_DTYPE)
        r["scenario_id"] = np.arange(5)

        assert not scenario_values(r).is_nested()
        assert math.isclose(0.0, metrics_per_outer(scenario_values(r))[0]["mean"])
