"""The LSMC proxy (bases, ridge, fit statistics) and the nested distribution with MC errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.solver.lsmc import QUANTILE_LEVELS, fit_proxy, r_squared, validate
from livecalc.solver.nested import distribution, outer_estimates
from livecalc.solver.risk import compute_metrics


class TestFitProxy:
    @settings(max_examples=30, deadline=None)
    @given(
        coefficients=st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=5),
        seed=st.integers(0, 2**31),
    )
    def test_recovers_a_polynomial_exactly(self, coefficients: list[float], seed: int) -> None:
        """Noiseless values of a polynomial of the state are fitted exactly, at any state."""

        x = np.random.default_rng(seed).normal(0.03, 0.01, 50)
        poly = np.polynomial.Polynomial(coefficients)
        scale = 0.01  # a polynomial in (x - c) / s is a polynomial in x: keep it well scaled
        y = poly((x - 0.03) / scale)

        proxy = fit_proxy(x, y, "polynomial", len(coefficients) - 1)

        probe = np.linspace(0.0, 0.06, 7)
        np.testing.assert_allclose(poly((probe - 0.03) / scale), proxy.predict(probe), atol=1e-7)

    def test_polynomial_design_by_hand(self) -> None:
        """Columns 1, s, s^2 of the standardised state s = (x - mean) / std."""

        x = np.array([1.0, 2.0, 3.0, 6.0])
        proxy = fit_proxy(x, x**2, "polynomial", 2)
        s = (x - 3.0) / np.sqrt(14.0 / 4.0)

        np.testing.assert_allclose(np.column_stack([np.ones(4), s, s**2]), proxy.design(x))

    def test_laguerre_design_by_hand(self) -> None:
        """Columns 1, e^(-u/2), e^(-u/2) (1 - u) of u = s - min(s)."""

        x = np.array([0.0, 1.0, 2.0, 4.0])
        proxy = fit_proxy(x, np.exp(-x), "laguerre", 2)
        s = (x - x.mean()) / x.std()
        u = s - s.min()
        w = np.exp(-u / 2)

        np.testing.assert_allclose(np.column_stack([np.ones(4), w, w * (1 - u)]), proxy.design(x))

    def test_laguerre_fits_a_smooth_curve(self) -> None:
        """A degree-4 Laguerre proxy of an exponential decay is within 0.5% of it."""

        x = np.linspace(-0.01, 0.08, 400)
        y = 1000.0 * np.exp(-8.0 * x)

        proxy = fit_proxy(x, y, "laguerre", 4)

        assert np.max(np.abs(proxy.predict(x) / y - 1.0)) < 0.005

    def test_ridge_shrinks_but_not_the_intercept(self) -> None:
        """A large ridge leaves the intercept (the mean) and shrinks the slopes toward 0."""

        x = np.linspace(0.0, 1.0, 101)
        y = 5.0 + 3.0 * x

        plain = fit_proxy(x, y, "polynomial", 1)
        ridged = fit_proxy(x, y, "polynomial", 1, ridge=1e4)

        assert 5.0 + 3.0 * 0.5 == pytest.approx(ridged.coefficients[0])
        assert abs(ridged.coefficients[1]) < 1e-3 * abs(plain.coefficients[1])

    def test_ridge_equals_the_normal_equations(self) -> None:
        """The augmented least squares solves (X'X + n ridge D) b = X'y, D = diag(0, 1, ...)."""

        rng = np.random.default_rng(3)
        x = rng.normal(size=40)
        y = np.sin(x) + rng.normal(0, 0.1, 40)
        proxy = fit_proxy(x, y, "polynomial", 3, ridge=0.05)
        design = proxy.design(x)
        penalty = 40 * 0.05 * np.diag([0.0, 1.0, 1.0, 1.0])

        expected = np.linalg.solve(design.T @ design + penalty, design.T @ y)
        np.testing.assert_allclose(expected, proxy.coefficients, rtol=1e-10)

    def test_bad_arguments(self) -> None:
        """Unknown basis, degree 0, too few points, constant states and negative ridge fail."""

        x = np.linspace(0, 1, 10)
        with pytest.raises(ValueError, match="unknown"):
            fit_proxy(x, x, "spline", 2)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least 1"):
            fit_proxy(x, x, "polynomial", 0)
        with pytest.raises(ValueError, match="give more"):
            fit_proxy(x[:3], x[:3], "polynomial", 2)
        with pytest.raises(ValueError, match="do not vary"):
            fit_proxy(np.ones(10), x, "polynomial", 2)
        with pytest.raises(ValueError, match="ridge"):
            fit_proxy(x, x, "polynomial", 2, ridge=-1.0)


class TestFitStatistics:
    def test_r_squared_by_hand(self) -> None:
        """1 - 2/8 for residuals (1, -1, 0) around values (1, 3, 5)... spread 8."""

        y = np.array([1.0, 3.0, 5.0])

        assert 1.0 - 2.0 / 8.0 == pytest.approx(r_squared(y, y + np.array([1.0, -1.0, 0.0])))
        assert 1.0 == r_squared(y, y)

    def test_validate_by_hand(self) -> None:
        """Errors, z-scores and the central-range maximum, on a proxy that is exactly x."""

        x = np.linspace(1.0, 100.0, 100)
        proxy = fit_proxy(x, x, "polynomial", 1)
        values = x.copy()
        values[0] = 2.0  # off by 1 at the lowest state: outside the central 98%
        values[50] = x[50] * 1.01  # about 1% off inside

        check = validate(proxy, x, values, np.full(100, 0.5), central=0.98)

        assert 100 == check["points"]
        size = np.abs(values).mean()
        assert x[50] * 0.01 / size == pytest.approx(check["max_abs_rel_error_oos"], rel=1e-6)
        assert 1.0 / size == pytest.approx(check["max_abs_rel_error_all"])
        assert len(QUANTILE_LEVELS) == len(check["by_quantile"])
        assert check["r2_oos"] < 1.0


class TestOuterEstimates:
    def test_by_hand(self) -> None:
        """Mean and std/sqrt(n) of each row."""

        values = np.array([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])

        mean, se = outer_estimates(values)

        assert [3.0, 5.0] == mean.tolist()
        assert [np.std([1, 2, 3, 6], ddof=1) / 2.0, 0.0] == pytest.approx(se.tolist())

    def test_antithetic_pairs(self) -> None:
        """Antithetic pairs whose means agree have no error, whatever the spread within."""

        mean, se = outer_estimates(np.array([[1.0, 3.0, -10.0, 14.0]]), antithetic=True)

        assert [2.0] == mean.tolist()
        assert [0.0] == se.tolist()

    def test_one_draw_refused(self) -> None:
        """One inner draw has no standard error."""

        with pytest.raises(ValueError, match="two"):
            outer_estimates(np.ones((3, 2)), antithetic=True)


class TestDistribution:
    def test_capital_is_the_solvers_var_of_the_loss(self) -> None:
        """var_99_5 and cte_99_5 are the solver's loss-basis figures of d V_t - value_0."""

        rng = np.random.default_rng(0)
        v = rng.normal(100.0, 10.0, 1000)
        d = rng.uniform(0.95, 0.99, 1000)

        out = distribution(v, np.full(1000, 0.1), d, 96.0, bootstrap=20)

        metrics = compute_metrics(d * v - 96.0, ["var_99_5", "cte_99_5"], "loss")
        assert metrics["var_99_5"] == out["var_99_5"]
        assert metrics["cte_99_5"] == out["cte_99_5"]
        assert 96.0 == out["value_0"]
        assert np.quantile(v, 0.5) == out["value_t"]["quantiles"][3]["value"]

    def test_no_inner_noise_no_inner_error(self) -> None:
        """Exact values (standard errors 0) have inner errors of 0 and outer errors > 0."""

        v = np.random.default_rng(1).normal(0.0, 1.0, 500)

        out = distribution(v, np.zeros(500), np.ones(500), 0.0, bootstrap=10)

        assert 0.0 == out["var_99_5_se"]
        assert out["var_99_5_se_outer"] > 0.0

    def test_inner_error_of_the_mean_is_the_formula(self) -> None:
        """The mean's error is sqrt(sum se^2) / n; the median's, of the order of 1.25 se /
        sqrt(n) = 0.125 (a normal sample's median)."""

        n = 400
        se = np.full(n, 2.0)
        v = np.random.default_rng(2).normal(0.0, 1.0, n)

        out = distribution(v, se, np.ones(n), 0.0, bootstrap=400, seed=5)

        inner = [q["se"] for q in out["change"]["quantiles"]]
        assert out["value_t"]["mean_se"] == pytest.approx(2.0 / np.sqrt(n))
        assert 0.06 < inner[3] < 0.25

    def test_bad_input(self) -> None:
        """Unequal arrays, one outer path and a bootstrap of 1 are refused."""

        with pytest.raises(ValueError, match="equal"):
            distribution(np.ones(3), np.ones(2), np.ones(3), 0.0)
        with pytest.raises(ValueError, match="two outer"):
            distribution(np.ones(1), np.ones(1), np.ones(1), 0.0)
        with pytest.raises(ValueError, match="bootstrap"):
            distribution(np.ones(3), np.ones(3), np.ones(3), 0.0, bootstrap=1)
