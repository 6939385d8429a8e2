"""ESG kernels: layout, agreement with the numpy references, reproducibility, model laws."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.kernels.esg import (
    PathLayout,
    SimpleParams,
    cir_params,
    generate,
    hull_white_params,
    vasicek_params,
)
from livecalc.kernels.esg_models import (
    GaussianStep,
    cir_discount_factors,
    cir_integral_means,
    gaussian_integral_moments,
    hull_white_shifts,
    integrated_ou_variance,
    ou_integral_factor,
    vasicek_discount_factors,
)
from livecalc.kernels.esg_reference import generate_reference
from livecalc.kernels.esg_rng import seed_key
from livecalc.runtime.buffers import SCENARIO_DTYPE

FLAT = 1.03 ** -np.arange(21.0)
SLOPED = np.exp(-np.cumsum(np.concatenate(([0.0], np.linspace(0.01, 0.05, 20)))))


def _layout(
    inner: int = 6, years: int = 20, branching: int = 0, antithetic: bool = False, seed: int = 7
) -> PathLayout:
    return PathLayout(inner, years, branching, antithetic, seed_key(seed))


def _run(
    layout: PathLayout, params: object, outer: int, state: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(outer * layout.inner * layout.years, dtype=SCENARIO_DTYPE)
    st_ = np.empty(len(out)) if state else None
    generate(out, layout, params, 0, outer, st_)  # type: ignore[arg-type]
    return out, (st_ if st_ is not None else np.empty(0))


MODELS = {
    "hull_white": hull_white_params(0.1, 0.01, SLOPED, 4, 0.3),
    "vasicek": vasicek_params(0.2, 0.04, 0.01, 0.02, 20, 4, -0.2),
    "simple": SimpleParams(0.03, 0.001, 0.01, 0.0, 0.08),
}


class TestGenerateLayout:
    def test_ids_and_years_sorted(self) -> None:
        """Records run by scenario_id = outer * 1000 + inner, then year 1..years."""
        layout = _layout(inner=3, years=4)

        out, _ = _run(layout, MODELS["vasicek"], 2)

        assert [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2] == out["scenario_id"][:12].tolist()
        assert [1000, 1001, 1002] == out["scenario_id"][12::4].tolist()
        assert [1, 2, 3, 4] * 6 == out["year"].tolist()

    @pytest.mark.parametrize("model", sorted(MODELS))
    @pytest.mark.parametrize("antithetic", [False, True])
    def test_matches_numpy_reference(self, model: str, antithetic: bool) -> None:
        """The numba kernel writes the numpy reference's records, to rounding."""
        layout = _layout(branching=4, antithetic=antithetic)
        out = np.empty(5 * 6 * 20, dtype=SCENARIO_DTYPE)

        generate(out, layout, MODELS[model], 3, 8)
        ref = generate_reference(layout, MODELS[model], 3, 8)  # type: ignore[arg-type]

        assert ref["scenario_id"].tolist() == out["scenario_id"].tolist()
        assert ref["year"].tolist() == out["year"].tolist()
        np.testing.assert_allclose(ref["rate"], out["rate"], rtol=1e-12, atol=1e-15)

    @settings(max_examples=15, deadline=None)
    @given(
        inner_pairs=st.integers(min_value=1, max_value=4),
        years=st.integers(min_value=1, max_value=8),
        branching=st.integers(min_value=0, max_value=8),
        antithetic=st.booleans(),
        seed=st.integers(min_value=0, max_value=2**40),
        outer_start=st.integers(min_value=0, max_value=10**6),
    )
    def test_any_layout_matches_reference(
        self,
        inner_pairs: int,
        years: int,
        branching: int,
        antithetic: bool,
        seed: int,
        outer_start: int,
    ) -> None:
        """For any layout, seed and outer range the kernel equals the numpy reference."""
        layout = PathLayout(
            2 * inner_pairs, years, min(branching, years), antithetic, seed_key(seed)
        )
        params = vasicek_params(0.3, 0.03, 0.02, 0.01, years, layout.branching_year, 0.5)
        out = np.empty(2 * layout.inner * years, dtype=SCENARIO_DTYPE)

        generate(out, layout, params, outer_start, outer_start + 2)
        ref = generate_reference(layout, params, outer_start, outer_start + 2)

        assert ref["scenario_id"].tolist() == out["scenario_id"].tolist()
        np.testing.assert_allclose(ref["rate"], out["rate"], rtol=1e-12, atol=1e-15)

    @settings(max_examples=8, deadline=None)
    @given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=6))
    def test_same_records_whatever_the_chunking(self, sizes: list[int]) -> None:
        """Generating outer paths in any blocks gives the records of one call, bit for bit."""
        layout = _layout(branching=3)
        params = MODELS["hull_white"]
        per_outer = layout.inner * layout.years
        total = sum(sizes)
        whole, _ = _run(layout, params, total)
        pieces = np.empty_like(whole)
        start = 0
        for size in sizes:
            generate(pieces[start * per_outer :], layout, params, start, start + size)
            start += size

        assert whole.tobytes() == pieces.tobytes()

    def test_same_records_on_one_thread(self) -> None:
        """One thread and all threads give the same records, bit for bit."""
        layout = _layout(branching=3)
        many, _ = _run(layout, cir_params(0.2, 0.04, 0.08, 0.03, 20, 4, 3, 0.1), 4)
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            one, _ = _run(layout, cir_params(0.2, 0.04, 0.08, 0.03, 20, 4, 3, 0.1), 4)
        finally:
            numba.set_num_threads(before)

        assert many.tobytes() == one.tobytes()

    def test_inner_paths_share_the_outer_segment(self) -> None:
        """Years up to the branching year carry the outer path's rates in every inner path."""
        layout = _layout(branching=5)

        out, _ = _run(layout, MODELS["hull_white"], 2)
        rates = out["rate"].reshape(2, 6, 20)

        assert bool(np.all(rates[:, :, :5] == rates[:, :1, :5]))
        assert bool(np.all(rates[:, 1:, 5] != rates[:, :1, 5]))

    def test_antithetic_pairs_mirror(self) -> None:
        """With antithetic Hull-White, a pair's log-returns mirror around the yearly shift."""
        layout = _layout(antithetic=True)  # no real-world segment: both legs start at x = 0

        out, state = _run(layout, hull_white_params(0.1, 0.01, SLOPED), 3, state=True)
        log_returns = np.log1p(out["rate"]).reshape(9, 2, 20)
        states = state.reshape(9, 2, 20)

        np.testing.assert_allclose(
            2 * hull_white_shifts(0.1, 0.01, SLOPED), log_returns.sum(axis=1)[0], atol=1e-14
        )
        np.testing.assert_allclose(0.0, states.sum(axis=1), atol=1e-15)

    def test_simple_model_respects_floor_and_cap(self) -> None:
        """The simple model's rates stay within floor..cap."""

        out, _ = _run(_layout(inner=50), SimpleParams(0.03, 0.0, 0.05, 0.0, 0.06), 4)

        assert (0.0, 0.06) == (float(out["rate"].min()), float(out["rate"].max()))

    def test_rejects_wrong_dtype_and_short_buffer(self) -> None:
        """A buffer of the wrong dtype or too few records raises ValueError naming it."""
        layout = _layout()

        with pytest.raises(ValueError, match="SCENARIO_DTYPE"):
            generate(np.empty(120), layout, MODELS["simple"], 0, 1)
        with pytest.raises(ValueError, match="120 are needed"):
            generate(np.empty(119, SCENARIO_DTYPE), layout, MODELS["simple"], 0, 1)
        with pytest.raises(ValueError, match="inner=1001"):
            generate(np.empty(0, SCENARIO_DTYPE), _layout(inner=1001), MODELS["simple"], 0, 0)


class TestModelMath:
    @settings(max_examples=30, deadline=None)
    @given(st.floats(min_value=1e-6, max_value=5.0))
    def test_ou_integral_factor_matches_quadrature(self, a: float) -> None:
        """Var of a unit OU integral equals the double integral of its covariance."""
        # Var(int_0^1 x) = sigma^2/a^2 * (1 - 2B + B2); check against a fine midpoint rule of
        # 2 * int_0^1 int_0^t cov(x_s, x_t) ds dt for x started at a known value.
        n = 400
        grid = (np.arange(n) + 0.5) / n
        s, t = np.meshgrid(grid, grid)
        lo, hi = np.minimum(s, t), np.maximum(s, t)
        cov = np.exp(-a * (hi - lo)) * -np.expm1(-2 * a * lo) / (2 * a)

        assert math.isclose(cov.mean(), ou_integral_factor(a), rel_tol=1e-4)

    def test_series_and_closed_form_meet_at_one(self) -> None:
        """The small-argument series and the closed form agree where they hand over."""

        below, above = ou_integral_factor(1.0 - 1e-12), ou_integral_factor(1.0)

        assert math.isclose(below, above, rel_tol=1e-10)

    def test_step_variance_matches_integrated_variance(self) -> None:
        """A one-year step's integral variance is the OU integral variance over one year."""

        step = GaussianStep.of(0.3, 0.02)

        assert math.isclose(integrated_ou_variance(0.3, 0.02, 1.0), step.var_i, rel_tol=1e-12)

    def test_vasicek_prices_match_textbook_formula(self) -> None:
        """Vasicek prices equal A(T) exp(-B(T) r0) of the textbook."""
        a, b, sigma, r0 = 0.3, 0.05, 0.02, 0.01
        t = np.array([0.5, 1.0, 7.0, 30.0])
        big_b = (1 - np.exp(-a * t)) / a
        log_a = (b - sigma**2 / (2 * a * a)) * (big_b - t) - sigma**2 * big_b**2 / (4 * a)
        actual = vasicek_discount_factors(a, b, sigma, r0, t)

        np.testing.assert_allclose(np.exp(log_a - big_b * r0), actual, rtol=1e-12)

    def test_cir_prices_solve_the_riccati_equations(self) -> None:
        """CIR prices equal exp(ln A - B r0) from integrating the Riccati ODEs numerically."""
        from scipy.integrate import solve_ivp

        a, b, sigma, r0 = 0.3, 0.05, 0.1, 0.01

        def riccati(_: float, y: np.ndarray) -> list[float]:
            big_b = y[0]
            return [1.0 - a * big_b - 0.5 * sigma**2 * big_b**2, -a * b * big_b]

        t = np.array([1.0, 10.0, 30.0])
        sol = solve_ivp(riccati, (0.0, 30.0), [0.0, 0.0], t_eval=t, rtol=1e-12, atol=1e-14)
        expected = np.exp(sol.y[1] - sol.y[0] * r0)

        np.testing.assert_allclose(expected, cir_discount_factors(a, b, sigma, r0, t), rtol=1e-9)

    def test_hull_white_shifts_without_volatility_are_forwards(self) -> None:
        """With sigma near 0, the shifts are the curve's yearly log forward rates."""

        shifts = hull_white_shifts(0.1, 1e-9, SLOPED)

        np.testing.assert_allclose(-np.diff(np.log(SLOPED)), shifts, rtol=1e-12)


def _mc_close(sample: np.ndarray, expected: np.ndarray, axis: int = 0) -> bool:
    """Whether the sample means match ``expected`` within 4 standard errors everywhere."""
    se = sample.std(axis=axis) / math.sqrt(sample.shape[axis])
    return bool(np.all(np.abs(sample.mean(axis=axis) - expected) < 4 * se))


class TestGaussianLaws:
    def test_vasicek_short_rate_mean_and_variance(self) -> None:
        """Vasicek short rates have the closed-form mean and variance at every year end."""
        a, b, sigma, r0 = 0.2, 0.04, 0.015, 0.01
        layout = _layout(inner=1000, years=10)
        _, state = _run(layout, vasicek_params(a, b, sigma, r0, 10), 10, state=True)
        r = state.reshape(-1, 10)
        t = np.arange(1.0, 11.0)
        mean = r0 * np.exp(-a * t) + b * (1 - np.exp(-a * t))
        var = sigma**2 * (1 - np.exp(-2 * a * t)) / (2 * a)

        assert _mc_close(r, mean)
        assert _mc_close((r - mean) ** 2, var)

    def test_vasicek_log_return_mean_and_variance(self) -> None:
        """Vasicek's yearly log-returns have the closed-form mean and variance."""
        params = vasicek_params(0.2, 0.04, 0.015, 0.01, 10)
        out, _ = _run(_layout(inner=1000, years=10), params, 10)
        log_returns = np.log1p(out["rate"]).reshape(-1, 10)
        mean, var = gaussian_integral_moments(params.step, params.x0, params.levels, params.shifts)

        assert _mc_close(log_returns, mean)
        assert _mc_close((log_returns - mean) ** 2, var)

    @pytest.mark.parametrize("curve", [FLAT, SLOPED], ids=["flat", "sloped"])
    def test_hull_white_reproduces_the_curve(self, curve: np.ndarray) -> None:
        """Hull-White's mean discount factor equals P(0, T) of its curve (martingale)."""
        out, _ = _run(_layout(inner=1000, years=20), hull_white_params(0.05, 0.015, curve), 10)
        discount = np.cumprod(1.0 / (1.0 + out["rate"].reshape(-1, 20)), axis=1)

        assert _mc_close(discount, curve[1:])


class TestCIRLaws:
    A, B, SIGMA, R0 = 0.3, 0.04, 0.1, 0.02

    def _paths(self, substeps: int) -> tuple[np.ndarray, np.ndarray]:
        params = cir_params(self.A, self.B, self.SIGMA, self.R0, 10, substeps)
        out, state = _run(_layout(inner=1000, years=10), params, 8, state=True)
        return out["rate"].reshape(-1, 10), state.reshape(-1, 10)

    def test_short_rate_mean_and_variance(self) -> None:
        """CIR short rates (exact transition) have the closed-form mean and variance."""
        a, b, s, r0 = self.A, self.B, self.SIGMA, self.R0
        _, r = self._paths(substeps=2)
        e = np.exp(-a * np.arange(1.0, 11.0))
        mean = r0 * e + b * (1 - e)
        var = r0 * s * s / a * (e - e * e) + b * s * s / (2 * a) * (1 - e) ** 2

        assert _mc_close(r, mean)
        assert _mc_close((r - mean) ** 2, var)

    def test_log_return_mean_and_curve(self) -> None:
        """CIR log-returns have the exact mean; discount factors match CIR's closed-form prices."""
        rates, _ = self._paths(substeps=12)
        speeds, levels = np.full(10, self.A), np.full(10, self.B)
        prices = cir_discount_factors(self.A, self.B, self.SIGMA, self.R0, np.arange(1.0, 11.0))

        assert _mc_close(np.log1p(rates), cir_integral_means(self.R0, speeds, levels))
        assert _mc_close(np.cumprod(1.0 / (1.0 + rates), axis=1), prices)

    def test_feller_violated_rates_stay_non_negative(self) -> None:
        """With 2ab < sigma^2 (df <= 1) the exact transition keeps rates >= 0."""
        params = cir_params(0.1, 0.02, 0.2, 0.01, 10, 4)

        _, state = _run(_layout(inner=200, years=10), params, 2, state=True)

        assert bool(np.all(state >= 0.0))
