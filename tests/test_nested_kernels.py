"""The valuation-at-t kernels: future cash flows on a grid, values on paths, Hull-White prices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.kernels.esg_models import integrated_ou_variance
from livecalc.kernels.projection_nested import (
    FutureFlows,
    future_flows,
    hull_white_bond_prices,
    values_at,
    values_at_reference,
)
from livecalc.runtime.buffers import CASHFLOW_DTYPE


def _cashflows(periods: int, per_year: int = 1) -> np.ndarray:
    """CASHFLOW records of one slot whose amounts say which period and field they are."""
    cf = np.zeros(periods, dtype=CASHFLOW_DTYPE)
    cf["period"] = np.arange(1, periods + 1)
    cf["time_years"] = np.arange(periods) / per_year
    k = np.arange(1, periods + 1, dtype=np.float64)
    cf["premiums"] = 1000.0 * k
    cf["expenses"] = 10.0 * k
    cf["commissions"] = 1.0 * k
    cf["death_claims"] = 100.0 * k
    cf["surrenders"] = 0.5 * k
    cf["maturities"] = np.where(k == periods, 7.0, 0.0)
    return cf


def _slow_values(rates: np.ndarray, future: FutureFlows) -> np.ndarray:
    """The value at t path by path, time by time, with the discount factor written out."""
    out = np.zeros(rates.shape[0])
    ppy = future.points_per_year
    for s in range(rates.shape[0]):
        for j, flow in enumerate(future.flows):
            whole, frac = divmod(j, ppy)
            factor = 1.0
            for y in range(whole):
                factor /= 1.0 + rates[s, future.valuation_year + y]
            if frac:
                factor *= (1.0 + rates[s, future.valuation_year + whole]) ** (-frac / ppy)
            out[s] += flow * factor
    return out


class TestFutureFlows:
    def test_annual_claims_at_end_by_hand(self) -> None:
        """From year 2 on: each period's start flows at its start, claims and surrenders at its
        end; period 2's end flows, which fall on t = 2, are the past and left out."""

        future = future_flows(_cashflows(4), 2, "end")

        # Periods 3 and 4 (k = 3, 4): start net = 989 k; end = -(100.5 k) (+ maturity 7 in 4).
        expected = [989.0 * 3, -100.5 * 3 + 989.0 * 4, -100.5 * 4 - 7.0]
        assert (2, 1) == (future.valuation_year, future.points_per_year)
        assert expected == pytest.approx(future.flows.tolist())
        assert 4 == future.horizon_years

    def test_claims_mid_year_take_half_years(self) -> None:
        """Middle claims put a grid point in each period's middle: two points a year."""

        future = future_flows(_cashflows(3), 1, "middle")

        expected = [989.0 * 2, -200.0, -1.0 + 989.0 * 3, -300.0, -1.5 - 7.0]
        assert 2 == future.points_per_year
        assert expected == pytest.approx(future.flows.tolist())

    def test_claims_at_start_fall_with_the_premium(self) -> None:
        """Start claims are paid at the period's start, with its premium."""

        future = future_flows(_cashflows(2), 1, "start")

        assert [989.0 * 2 - 200.0, -1.0 - 7.0] == pytest.approx(future.flows.tolist())

    def test_monthly_periods(self) -> None:
        """Monthly periods: twelve points a year, the valuation year's first month first."""

        future = future_flows(_cashflows(24, 12), 1, "end")

        assert 12 == future.points_per_year
        assert 13 == len(future.flows)
        assert 989.0 * 13 == pytest.approx(future.flows[0])
        assert 2 == future.horizon_years

    def test_valuation_past_the_last_period_leaves_nothing(self) -> None:
        """A valuation year after the last period values no flow."""

        future = future_flows(_cashflows(2), 5, "end")

        assert [0.0] == future.flows.tolist()

    def test_refuses_several_slots_and_gaps(self) -> None:
        """Several scenario slots, or periods out of order, are refused with the reason."""

        cf = _cashflows(3)
        cf["scenario_id"][1] = 7
        with pytest.raises(ValueError, match="several scenario slots"):
            future_flows(cf, 1, "end")
        cf = _cashflows(3)
        cf["period"][2] = 5
        with pytest.raises(ValueError, match="periods must run"):
            future_flows(cf, 1, "end")
        with pytest.raises(ValueError, match="claim_timing"):
            future_flows(_cashflows(3), 1, "later")


class TestValuesAt:
    def test_hand_computed(self) -> None:
        """Flows 100 at t, 200 at t+1, 300 at t+1.5 with rates 10% then 20%: 100 + 200/1.1 +
        300/1.1/1.2^0.5."""

        future = FutureFlows(1, 2, np.array([100.0, 0.0, 200.0, 300.0]))
        rates = np.array([[0.05, 0.10, 0.20]])

        expected = 100.0 + 200.0 / 1.1 + 300.0 / 1.1 / math.sqrt(1.2)
        assert expected == pytest.approx(values_at(rates, future)[0], rel=1e-14)

    @settings(max_examples=40, deadline=None)
    @given(
        t=st.integers(0, 3),
        ppy=st.sampled_from([1, 2, 12, 24]),
        n_points=st.integers(1, 30),
        n_paths=st.integers(1, 5),
        seed=st.integers(0, 2**31),
    )
    def test_kernel_matches_references(
        self, t: int, ppy: int, n_points: int, n_paths: int, seed: int
    ) -> None:
        """The kernel equals the projection's discount grid and the slow loop on any paths."""

        rng = np.random.default_rng(seed)
        future = FutureFlows(t, ppy, rng.normal(0.0, 100.0, n_points))
        rates = rng.uniform(-0.02, 0.2, (n_paths, future.horizon_years + rng.integers(0, 3)))

        got = values_at(rates, future)

        np.testing.assert_allclose(values_at_reference(rates, future), got, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(_slow_values(rates, future), got, rtol=1e-12, atol=1e-9)

    @settings(max_examples=25, deadline=None)
    @given(rate=st.floats(-0.05, 0.3), n=st.integers(1, 40))
    def test_flat_rate_annuity(self, rate: float, n: int) -> None:
        """Unit flows at t..t+n-1 under a flat rate: the annuity-due sum of v^k."""

        future = FutureFlows(1, 1, np.ones(n))
        rates = np.full((2, n + 1), rate)

        expected = sum((1.0 + rate) ** -k for k in range(n))
        np.testing.assert_allclose([expected, expected], values_at(rates, future), rtol=1e-12)

    def test_short_paths_refused(self) -> None:
        """Paths that end before the last flow are refused, naming the years needed."""

        with pytest.raises(ValueError, match="need 4"):
            values_at(np.zeros((2, 3)), FutureFlows(1, 1, np.ones(4)))


class TestHullWhiteBondPrices:
    def test_textbook_formula(self) -> None:
        """Equal to the textbook A(t,T) exp(-B(t,T) r_t), written with r and f(0,t)."""

        a, sigma, t = 0.15, 0.012, 2
        zero = 0.025  # continuously compounded flat curve
        dfs = np.exp(-zero * np.arange(31))
        maturities = np.array([2, 3, 7, 30])
        x = np.array([-0.02, 0.0, 0.013])
        phi = zero + sigma**2 / (2 * a**2) * (1 - math.exp(-a * t)) ** 2
        r = x + phi

        got = hull_white_bond_prices(a, sigma, dfs, t, maturities, x)

        b = (1 - np.exp(-a * (maturities - t))) / a
        log_a = (
            np.log(dfs[maturities] / dfs[t])
            + b * zero
            - sigma**2 / (4 * a) * (1 - math.exp(-2 * a * t)) * b**2
        )
        expected = np.exp(log_a[None, :] - np.outer(r, b))
        np.testing.assert_allclose(expected, got, rtol=1e-12)

    def test_today_is_the_curve(self) -> None:
        """At t = 0 with x = 0 the price is the initial curve's discount factor."""

        dfs = np.exp(-0.03 * np.arange(11))

        got = hull_white_bond_prices(0.1, 0.01, dfs, 0, np.arange(11), np.zeros(1))

        np.testing.assert_allclose(dfs[None, :], got, rtol=1e-12)

    def test_variance_function_is_the_esg_one(self) -> None:
        """The convexity uses the ESG's integrated OU variance (V(0) = 0 keeps P(t, t) = 1)."""

        assert 0.0 == integrated_ou_variance(0.1, 0.01, 0.0)
        got = hull_white_bond_prices(0.1, 0.01, np.ones(5), 3, np.array([3]), np.array([0.5]))
        assert [[1.0]] == got.tolist()
