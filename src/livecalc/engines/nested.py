"""NestedEngine: the value at a future date t on nested scenarios, and its LSMC proxy.

Engine type ``nested``. It reads the portfolio's expected cash flows by period (the
projection's ``"output": "cashflows"`` of a deterministic run: CASHFLOW records, found by
dtype) and values the periods from year t on, on inner risk-neutral paths that branch from
each outer path at t, discounted to t: per outer path the value at t (the inner mean), its
Monte Carlo standard error and the state at t (the short rate). It generates the paths itself
with the ESG's kernels (config ``esg``, the ESG engine's keys), outer block by outer block,
because it needs each outer path's state at t, which scenario records do not carry. Then the
distribution, the 99.5% VaR and CTE of the discounted change in value with their MC errors
(``livecalc.solver.nested``) and, with an ``lsmc`` block, the least-squares proxy
(``livecalc.solver.lsmc``): fitted on other outer paths with few inner paths each, validated
on the nested ones, and used to value a large set of outer paths.

It writes no records: ``get_outputs()`` returns ``{"nested": {...}, "lsmc": {...}}`` (plain
JSON, in the run's summary). Method, formulas, keys and limits: docs/engines/nested.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.engines._nested_config import NestedSettings, parse_nested_config
from livecalc.engines.esg import initial_discount_factors, model_params
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.kernels.esg import PathLayout, generate
from livecalc.kernels.projection_nested import (
    FutureFlows,
    future_flows,
    hull_white_bond_prices,
    values_at,
)
from livecalc.runtime.buffers import CASHFLOW_DTYPE, SCENARIO_DTYPE
from livecalc.runtime.engine import EngineInfo, ExecutionResult, ICalcEngine, InputBuffer
from livecalc.solver.lsmc import fit_proxy, r_squared, validate
from livecalc.solver.nested import distribution, outer_estimates
from livecalc.solver.risk import compute_metrics

__all__ = ["NestedEngine", "OuterSet", "parse_nested_config"]

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class OuterSet:
    """Outer paths valued at t: state, short rate and discount factor to t, and the values."""

    outer_ids: Array
    state: Array  # the model's state at t (Hull-White: x = r - phi; else the short rate)
    short_rate: Array
    deflator: Array  # exp(-integral_0^t r) along the outer path
    value: Array  # mean over the inner paths (empty when only states were generated)
    standard_error: Array


class NestedEngine(ICalcEngine):
    """Valuation at t on nested paths, its distribution, capital figure and LSMC proxy."""

    BLOCK_RECORDS = 1 << 22
    """Outer paths are generated and valued in blocks of about this many path-years."""

    def __init__(self) -> None:
        self._settings: NestedSettings | None = None
        self._outputs: dict[str, Any] = {}

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Validate ``config``; raises ConfigurationError naming every bad key."""
        self._settings = parse_nested_config(config)
        self._outputs = {}

    def get_info(self) -> EngineInfo:
        """The engine's metadata."""
        return EngineInfo(
            name="LiveCalc nested valuation",
            version="1.0.0",
            engine_type="nested",
            supports_assumptions_manager=False,
            max_buffer_size=0,
        )

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Value the cash flows in ``input_buffer`` at t; the results are in ``get_outputs``."""
        start = time.perf_counter()
        settings = self._require()
        cashflows = _find_cashflows(input_buffer)
        cfg = settings.config
        try:
            future = future_flows(cashflows, cfg.valuation_year, cfg.claim_timing)
        except ValueError as exc:
            raise ConfigurationError(f"the nested engine's CASHFLOW input: {exc}") from None
        years = max(future.horizon_years, cfg.valuation_year + 1)
        if settings.years_given is not None and settings.years_given < years:
            raise ConfigurationError(
                f"config.esg.years: {settings.years_given} years, but the cash flows run to "
                f"year {years}; give at least {years} or leave it out"
            )
        valuer = _Valuer(settings, future, years)
        self._outputs = valuer.run()
        return ExecutionResult(
            success=True,
            execution_time_ms=(time.perf_counter() - start) * 1e3,
            rows_processed=len(cashflows),
            bytes_written=0,
        )

    def get_outputs(self) -> Mapping[str, Any]:
        """``{"nested": {...}, "lsmc": {...}}`` of the last run (shape: docs/engines/nested.md)."""
        return self._outputs

    def dispose(self) -> None:
        """Forget the config and the results."""
        self._settings = None
        self._outputs = {}

    @property
    def is_initialized(self) -> bool:
        """Whether ``initialize`` succeeded and ``dispose`` has not been called since."""
        return self._settings is not None

    def _require(self) -> NestedSettings:
        if self._settings is None:
            raise ExecutionError("the nested engine is not initialised: call initialize(config)")
        return self._settings


def _find_cashflows(input_buffer: InputBuffer) -> Array:
    arrays = input_buffer.values() if isinstance(input_buffer, Mapping) else [input_buffer]
    found = [a for a in arrays if isinstance(a, np.ndarray) and a.dtype == CASHFLOW_DTYPE]
    if len(found) != 1:
        raise ConfigurationError(
            f"the nested engine needs one CASHFLOW input (got {len(found)}): connect it to a "
            'projection with "output": "cashflows" and no scenario input'
        )
    return found[0]


class _Valuer:
    """One run: the ESG parameters for the paths' horizon, then the three sets of outer paths."""

    def __init__(self, settings: NestedSettings, future: FutureFlows, years: int) -> None:
        esg = settings.esg
        self.settings = settings
        self.future = future
        self.t = settings.config.valuation_year
        self.esg = dataclasses.replace(esg, layout=dataclasses.replace(esg.layout, years=years))
        dfs = initial_discount_factors(self.esg)
        if dfs is None or not np.isfinite(np.log(dfs)).all():
            raise ConfigurationError(
                f"config.esg: the {esg.model} model's bond prices overflow within {years} "
                "years; lower sigma, or raise a"
            )
        self.dfs = dfs
        self.params = model_params(
            esg.model, esg.parameters, years, self.t, esg.market_price_of_risk, dfs
        )

    # -- paths ---------------------------------------------------------------------------

    def value_set(self, first: int, count: int, inner: int) -> OuterSet:
        """Outer paths ``first .. first + count - 1`` valued on ``inner`` inner paths each."""
        layout = dataclasses.replace(self.esg.layout, inner=inner)
        years = layout.years
        block = max(1, NestedEngine.BLOCK_RECORDS // (inner * years))
        parts = []
        for lo in range(first, first + count, block):
            hi = min(lo + block, first + count)
            n = hi - lo
            out = np.empty(n * inner * years, dtype=SCENARIO_DTYPE)
            state = np.empty(len(out))
            generate(out, layout, self.params, lo, hi, state)
            rates = np.ascontiguousarray(out["rate"]).reshape(n * inner, years)
            values = values_at(rates, self.future).reshape(n, inner)
            draws = inner // 2 if layout.antithetic else inner
            if draws >= 2:
                mean, se = outer_estimates(values, layout.antithetic)
            else:  # a fitting set of one draw per path: its values need no error
                mean, se = values.mean(axis=1), np.full(n, np.nan)
            outer_rows = np.arange(n) * inner
            x_t = state.reshape(n * inner, years)[outer_rows, self.t - 1]
            deflator = 1.0 / np.prod(1.0 + rates[outer_rows, : self.t], axis=1)
            parts.append((x_t, deflator, mean, se))
        x, d, v, s = (np.concatenate([p[i] for p in parts]) for i in range(4))
        ids = np.arange(first, first + count)
        return OuterSet(ids, x, self.short_rate(x), d, v, s)

    def state_set(self, first: int, count: int) -> OuterSet:
        """Outer paths' states and discount factors at t only (no inner paths): the proxy's."""
        layout = PathLayout(1, self.t, self.t, False, self.esg.layout.key)
        block = max(1, NestedEngine.BLOCK_RECORDS // self.t)
        xs, ds = [], []
        for lo in range(first, first + count, block):
            hi = min(lo + block, first + count)
            out = np.empty((hi - lo) * self.t, dtype=SCENARIO_DTYPE)
            state = np.empty(len(out))
            generate(out, layout, self.params, lo, hi, state)
            rates = out["rate"].reshape(hi - lo, self.t)
            xs.append(state.reshape(hi - lo, self.t)[:, -1])
            ds.append(1.0 / np.prod(1.0 + rates, axis=1))
        x, d = np.concatenate(xs), np.concatenate(ds)
        empty = np.empty(0)
        return OuterSet(np.arange(first, first + count), x, self.short_rate(x), d, empty, empty)

    def short_rate(self, state: Array) -> Array:
        """The short rate at t from the model's state (Hull-White adds ``phi(t)``)."""
        if self.esg.model != "hull_white":
            return state
        p = self.esg.parameters
        a, sigma = p["a"], p["sigma"]
        assert self.esg.curve is not None
        h = 1e-4
        t = float(self.t)
        logs = np.log(self.esg.curve.discount_factor(np.array([t - h, t + h])))
        forward = -(logs[1] - logs[0]) / (2 * h)
        phi = float(forward) + sigma**2 / (2 * a**2) * (-math.expm1(-a * t)) ** 2
        return np.asarray(state + phi, dtype=np.float64)

    def value_0(self) -> float:
        """The value at 0 of the same cash flows: ``sum_j F_j P(0, t_j)``, geometric in a year."""
        ppy = self.future.points_per_year
        j = np.arange(len(self.future.flows))
        year = self.t + j // ppy
        frac = (j % ppy) / ppy
        nxt = np.minimum(year + 1, len(self.dfs) - 1)
        p = self.dfs[year] * (self.dfs[nxt] / self.dfs[year]) ** frac
        return float(p @ self.future.flows)

    def closed_form(self, states: Array) -> Array | None:
        """Hull-White's exact value at t of each state, when every flow is at a whole year."""
        if self.esg.model != "hull_white" or self.future.points_per_year != 1:
            return None
        p = self.esg.parameters
        maturities = self.t + np.arange(len(self.future.flows))
        prices = hull_white_bond_prices(p["a"], p["sigma"], self.dfs, self.t, maturities, states)
        return np.asarray(prices @ self.future.flows, dtype=np.float64)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """The nested set, its statistics and, with an ``lsmc`` block, the proxy's."""
        cfg, esg = self.settings.config, self.esg
        started = time.perf_counter()
        nested = self.value_set(0, esg.outer, esg.layout.inner)
        seconds = time.perf_counter() - started
        value_0 = self.value_0()
        paths = esg.outer * esg.layout.inner
        stats: dict[str, Any] = {
            "valuation_year": self.t,
            "model": esg.model,
            "market_price_of_risk": esg.market_price_of_risk,
            "outer": esg.outer,
            "inner": esg.layout.inner,
            "antithetic": esg.layout.antithetic,
            "inner_paths": paths,
            "years": esg.layout.years,
            "seconds": seconds,
            "paths_per_second": paths / seconds if seconds > 0 else None,
        }
        stats.update(
            distribution(
                nested.value, nested.standard_error, nested.deflator, value_0,
                cfg.bootstrap, esg.seed,
            )
        )  # fmt: skip
        exact = self.closed_form(nested.state)
        size = float(np.abs(exact).mean()) if exact is not None else 0.0
        if exact is not None and size > 0.0 and (nested.standard_error > 0.0).all():
            z = (nested.value - exact) / nested.standard_error
            stats["closed_form"] = {
                "max_abs_z": float(np.abs(z).max()),
                "mean_z": float(z.mean()),
                "std_z": float(z.std(ddof=1)),
                "max_abs_rel_error": float(np.abs(nested.value - exact).max() / size),
            }
        if esg.outer <= cfg.outer_paths_limit:
            stats["outer_paths"] = {
                "outer_id": nested.outer_ids.tolist(),
                "short_rate": nested.short_rate.tolist(),
                "state": nested.state.tolist(),
                "deflator": nested.deflator.tolist(),
                "value": nested.value.tolist(),
                "standard_error": nested.standard_error.tolist(),
            }
        outputs: dict[str, Any] = {"nested": stats}
        if cfg.lsmc is not None:
            outputs["lsmc"] = self.lsmc(nested, value_0, seconds, stats["var_99_5"])
        return outputs

    def lsmc(
        self, nested: OuterSet, value_0: float, nested_seconds: float, nested_var: float
    ) -> dict[str, Any]:
        """Fit the proxy, validate it on the nested set, and value the proxy set with it."""
        cfg, esg = self.settings.config, self.esg
        lcfg = cfg.lsmc
        assert lcfg is not None
        started = time.perf_counter()
        fit_set = self.value_set(esg.outer, lcfg.fit_outer, lcfg.fit_inner)
        fit_seconds = time.perf_counter() - started
        try:
            proxy = fit_proxy(
                fit_set.short_rate, fit_set.value, lcfg.basis, lcfg.degree, lcfg.ridge
            )
        except ValueError as exc:
            raise ExecutionError(f"the LSMC fit failed: {exc}", engine_id=None) from exc
        check = validate(proxy, nested.short_rate, nested.value, nested.standard_error)
        started = time.perf_counter()
        big = self.state_set(esg.outer + lcfg.fit_outer, lcfg.proxy_outer)
        proxy_values = proxy.predict(big.short_rate)
        proxy_seconds = time.perf_counter() - started
        figures = distribution(
            proxy_values, np.zeros_like(proxy_values), big.deflator, value_0,
            cfg.bootstrap, esg.seed + 1,
        )  # fmt: skip
        nested_paths = esg.outer * esg.layout.inner
        fit_paths = lcfg.fit_outer * lcfg.fit_inner
        lo, hi = check["central_range"]
        grid = np.linspace(float(nested.short_rate.min()), float(nested.short_rate.max()), 61)
        out: dict[str, Any] = {
            **proxy.describe(),
            "fit_outer": lcfg.fit_outer,
            "fit_inner": lcfg.fit_inner,
            "fit_paths": fit_paths,
            "r2": r_squared(fit_set.value, proxy.predict(fit_set.short_rate)),
            **check,
            "proxy_outer": lcfg.proxy_outer,
            "var_99_5": figures["var_99_5"],
            "var_99_5_se_outer": figures["var_99_5_se_outer"],
            "cte_99_5": figures["cte_99_5"],
            "cte_99_5_se_outer": figures["cte_99_5_se_outer"],
            "value_t": figures["value_t"],
            "var_99_5_vs_nested": figures["var_99_5"] - nested_var,
            "fit_seconds": fit_seconds,
            "proxy_seconds": proxy_seconds,
            "cost_ratio": fit_paths / nested_paths,
            "time_ratio": fit_seconds / nested_seconds if nested_seconds > 0 else None,
            "curve": {"short_rate": grid.tolist(), "proxy": proxy.predict(grid).tolist()},
        }
        exact = self.closed_form(self.state_of(grid))
        inside = (grid >= lo) & (grid <= hi)
        if exact is not None and inside.any() and np.abs(exact[inside]).mean() > 0.0:
            rel = np.abs(proxy.predict(grid) - exact) / np.abs(exact[inside]).mean()
            exact_big = self.closed_form(big.state)
            assert exact_big is not None
            change = big.deflator * exact_big - value_0
            out["closed_form"] = {
                "max_abs_rel_error_central": float(rel[inside].max()),
                # The capital on the proxy's outer paths with their exact values: what both
                # the nested and the proxy figure estimate, up to outer sampling.
                "var_99_5": compute_metrics(change, ["var_99_5"], "loss")["var_99_5"],
            }
            out["curve"]["closed_form"] = exact.tolist()
        return out

    def state_of(self, short_rate: Array) -> Array:
        """The model state of a short rate at t (the inverse of ``short_rate``)."""
        return np.asarray(short_rate - self.short_rate(np.zeros(1))[0], dtype=np.float64)
