"""Statistical checks of a scenario set: the martingale test and moment checks.

The martingale test compares, per maturity T, the mean over scenarios of the discount factor
``DF(T) = prod_{y<=T} 1/(1 + rate_y)`` with ``P(0, T)`` of the initial curve, in standard
errors: risk-neutral scenarios must reproduce the curve they were fitted to. The moment checks
compare, per year, the mean of the year's log-return ``I_y = ln(1 + rate_y)`` (the integral of
the short rate) with its closed form, and also its variance, measured as the mean of
``(I_y - E[I_y])**2`` (Gaussian models: exact; CIR: the continuous model's exact variance, so a
coarse sub-step scheme fails it). Nested sets get a per-outer-path test too: the inner paths of
each outer path must share its history up to the branching year, and their variance around
each other must be the model's variance given the outer path (``_per_outer_rows``).

Standard errors are taken over independent units: single scenarios, antithetic pairs, or, for
nested sets (``branching_year > 0``), all inner scenarios of one outer path, which share that
path's history. For the martingale rows (and CIR's mean rows) they are estimated from the
sample of unit means; for the Gaussian models' mean and variance rows they are the model's own,
exact under the null (see ``_Moments.unit_variances``). A row passes when
``|z| <= z_threshold``. The default 4 was set by measurement: over 300 correct 50-year
Hull-White sets the z of each row had mean 0 and standard deviation 1.00 (moment rows) and
1.05 (martingale rows); over 80 sets each of two layouts (iid, nested) a correct set failed
some one of its 150 correlated rows 4-5% of the time at 3.5 and 0-2.5% at 4, while a generator
without Hull-White's convexity term gives |z| > 20 (``tests/test_esg_check.py``).

The scenarios come from a Parquet file (the ESG metadata is read from its key-value metadata
``livecalc.esg``) or from an in-memory SCENARIO array with the metadata or a curve given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.assumptions.curves import ZeroCurve
from livecalc.engines.esg import METADATA_KEY, model_params
from livecalc.errors import ConfigurationError
from livecalc.kernels.esg import GaussianParams
from livecalc.kernels.esg_models import (
    FloatArray,
    cir_integral_means,
    cir_integral_variances,
    cir_rate_variance,
    gaussian_integral_moments,
)

__all__ = ["CheckRow", "ESGCheckReport", "check_scenarios", "read_scenario_file"]

DEFAULT_Z_THRESHOLD = 4.0
_SE_FLOOR = 1e-12  # antithetic Gaussian pairs can make a standard error vanish exactly


@dataclass(frozen=True)
class CheckRow:
    """One check at one maturity (year): expected, observed, standard error, z, verdict."""

    check: str
    maturity: int
    expected: float
    observed: float
    std_error: float
    z: float
    passed: bool


@dataclass(frozen=True)
class ESGCheckReport:
    """Every row of the martingale and moment checks, and the overall verdict."""

    model: str | None
    scenarios: int
    years: int
    independent_units: int
    z_threshold: float
    rows: tuple[CheckRow, ...]

    @property
    def passed(self) -> bool:
        """Whether every row passed."""
        return all(row.passed for row in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        """The rows that failed."""
        return tuple(row for row in self.rows if not row.passed)


def read_scenario_file(path: str | Path) -> tuple[np.ndarray, dict[str, Any] | None]:
    """SCENARIO records and the ESG metadata (None when absent) of a Parquet file."""
    from livecalc.runtime.buffers import SCENARIO_DTYPE

    columns, metadata = _read_columns(Path(path))
    records = np.empty(len(columns[0]), dtype=SCENARIO_DTYPE)
    for name, column in zip(("scenario_id", "year", "rate"), columns, strict=True):
        records[name] = column
    return records, metadata


_Columns = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``scenario_id``, ``year`` and ``rate`` as separate arrays (views of records, or a file's)."""


def _read_columns(path: Path) -> tuple[_Columns, dict[str, Any] | None]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ConfigurationError(f"{path}: no such file; give a scenario Parquet file")
    try:
        schema = pq.read_schema(path)
        table = pq.read_table(path, columns=["scenario_id", "year", "rate"])
    except Exception as exc:  # pyarrow raises several types for unreadable files
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"{path}: not a scenario Parquet file with columns scenario_id, year, rate "
            f"({first_line})"
        ) from None
    ids, year, rate = (table.column(n).to_numpy() for n in ("scenario_id", "year", "rate"))
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        return (ids, year, rate), None
    try:
        metadata = json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{path}: metadata {METADATA_KEY!r} is not JSON") from None
    return (ids, year, rate), metadata


class _Accumulator:
    """Streaming mean and spread of unit means around their expected values, per year.

    Sums are taken of deviations from the expected value, so they stay small and exact
    enough however many units there are.
    """

    def __init__(self, expected: FloatArray) -> None:
        self.expected = expected
        self.units = 0
        self.sum = np.zeros_like(expected)
        self.sum_sq = np.zeros_like(expected)

    def add(self, unit_means: FloatArray) -> None:
        deviation = unit_means - self.expected
        self.units += len(unit_means)
        self.sum += deviation.sum(axis=0)
        self.sum_sq += (deviation * deviation).sum(axis=0)

    def rows(
        self, check: str, z_threshold: float, unit_variance: FloatArray | None
    ) -> list[CheckRow]:
        """One row per year; errors from ``unit_variance`` (the model's) or from the sample."""
        n = self.units
        mean_deviation = self.sum / n
        if unit_variance is None:
            spread = np.maximum(self.sum_sq - n * mean_deviation**2, 0.0) / (n - 1)
        else:
            spread = np.maximum(unit_variance, 0.0)
        std_error = np.sqrt(spread / n)
        rows = []
        for t in range(len(self.expected)):
            z = float(mean_deviation[t] / max(float(std_error[t]), _SE_FLOOR))
            rows.append(
                CheckRow(
                    check=check,
                    maturity=t + 1,
                    expected=float(self.expected[t]),
                    observed=float(self.expected[t] + mean_deviation[t]),
                    std_error=float(std_error[t]),
                    z=z,
                    passed=bool(abs(z) <= z_threshold),
                )
            )
        return rows


_BLOCK_ROWS = 1 << 20
"""Records checked per step: the temporaries stay a few tens of MB whatever the set's size."""


def check_scenarios(
    source: str | Path | np.ndarray,
    *,
    metadata: Mapping[str, Any] | None = None,
    curve: ZeroCurve | None = None,
    z_threshold: float = DEFAULT_Z_THRESHOLD,
    group_size: int | None = None,
) -> ESGCheckReport:
    """Run the martingale test and the moment checks on a scenario set.

    The set is read in blocks of whole units, so memory beyond the records themselves stays
    small.

    Args:
        source: a Parquet file written from the ESG, or SCENARIO records.
        metadata: the ESG metadata (``get_outputs()["esg_metadata"]``); read from the file
            when ``source`` is a path and this is None.
        curve: the initial curve to test against; default: the metadata's curve.
        group_size: consecutive scenarios that form one independent unit; default from the
            metadata (inner paths when nested, 2 when antithetic, else 1).

    Raises:
        ConfigurationError: the input is not a sorted scenario set, or nothing tells which
            curve to test against.
    """
    where = str(source) if isinstance(source, str | Path) else "scenarios"
    if isinstance(source, str | Path):
        columns, file_metadata = _read_columns(Path(source))
        metadata = metadata if metadata is not None else file_metadata
    else:
        columns = _record_columns(source, where)
    meta = dict(metadata or {})
    ids, year, rate = columns
    if len(rate) == 0:
        raise ConfigurationError(f"{where}: no scenario records")
    years = int(meta.get("years", int(year.max())))
    if len(rate) % years:
        raise ConfigurationError(
            f"{where}: {len(rate)} records are not whole scenarios of {years} years"
        )
    n_scen = len(rate) // years
    group = group_size or _default_group(meta)
    if n_scen % group or n_scen // group < 2:
        raise ConfigurationError(
            f"{where}: {n_scen} scenarios do not split into 2 or more independent units of "
            f"{group}; generate more outer paths"
        )
    initial = _initial_discount_factors(curve, meta, years, where)
    moments = _expected_moments(meta, initial)
    martingale = _Accumulator(initial[1:])
    means = _Accumulator(moments.mean) if moments is not None else None
    variances = (
        _Accumulator(moments.var) if moments is not None and moments.var is not None else None
    )
    branching = int(meta.get("branching_year", 0))
    nested = branching > 0 and group > 1 and group == _default_group(meta)
    inner_expected = moments.inner_variances(branching) if moments and nested else None
    inner = _Accumulator(inner_expected) if inner_expected is not None else None
    # Antithetic Gaussian pairs average to the conditional mean exactly: deviations from the
    # sample mean are then deviations from the true mean, so divide by n, not n - 1.
    ddof = 0 if meta.get("antithetic") else 1
    history_spread = 0.0
    units_per_block = max(1, _BLOCK_ROWS // (group * years))
    for first_unit in range(0, n_scen // group, units_per_block):
        first_row = first_unit * group * years
        rows = slice(first_row, first_row + units_per_block * group * years)
        _check_layout(ids[rows], year[rows], years, first_row, where)
        rates = np.asarray(rate[rows], dtype=np.float64).reshape(-1, years)
        if np.any(rates <= -1.0):
            row = first_row + int(np.argmax((rates <= -1.0).ravel()))
            raise ConfigurationError(f"{where}: row {row} has a rate <= -1; not a scenario rate")
        log_returns = np.log1p(rates)
        martingale.add(_unit_means(np.exp(-np.cumsum(log_returns, axis=1)), group))
        if means is not None:
            means.add(_unit_means(log_returns, group))
        if variances is not None and moments is not None:
            variances.add(_unit_means((log_returns - moments.mean) ** 2, group))
        if nested:
            by_outer = log_returns.reshape(-1, group, years)
            shared = by_outer[:, :, :branching]
            history_spread = max(history_spread, float(np.abs(shared - shared[:, :1]).max()))
            if inner is not None:
                inner.add(by_outer.var(axis=1, ddof=ddof))
    report_rows = martingale.rows("martingale", z_threshold, None)
    if moments is not None and means is not None:
        # Model-based errors need the metadata's unit structure; an override drops them.
        exact = moments.unit_variances(meta, group) if group == _default_group(meta) else None
        mean_var, square_var = exact if exact is not None else (None, None)
        report_rows += means.rows("mean", z_threshold, mean_var)
        if variances is not None:
            report_rows += variances.rows("variance", z_threshold, square_var)
    if nested:
        report_rows += _per_outer_rows(inner, history_spread, branching, z_threshold)
    return ESGCheckReport(
        model=meta.get("model"),
        scenarios=n_scen,
        years=years,
        independent_units=n_scen // group,
        z_threshold=z_threshold,
        rows=tuple(report_rows),
    )


_HISTORY_TOLERANCE = 1e-12


def _per_outer_rows(
    inner: _Accumulator | None, history_spread: float, branching: int, z_threshold: float
) -> list[CheckRow]:
    """Rows of the per-outer-path test of a nested set.

    ``inner_history`` (at the branching year): the inner paths of each outer path must share
    its first ``branching_year`` years exactly (observed: the largest gap in ``I_y``).
    ``inner_variance`` (each later year): the variance of ``I_y`` among the inner paths of one
    outer path, averaged over outer paths, against the model's conditional variance given the
    outer path; the error is the sample's, over outer paths. Inner paths that do not continue
    their own outer path's state (drawn from the initial state, or from another path) pass the
    pooled rows but not these.
    """
    shared = history_spread <= _HISTORY_TOLERANCE
    rows = [
        CheckRow(
            check="inner_history",
            maturity=branching,
            expected=0.0,
            observed=history_spread,
            std_error=0.0,
            z=0.0 if shared else math.inf,
            passed=shared,
        )
    ]
    if inner is not None:
        rows += [
            r for r in inner.rows("inner_variance", z_threshold, None) if r.maturity > branching
        ]
    return rows


def _unit_means(values: FloatArray, group: int) -> FloatArray:
    return np.asarray(values.reshape(-1, group, values.shape[1]).mean(axis=1))


def _record_columns(records: np.ndarray, where: str) -> _Columns:
    names = records.dtype.names or ()
    if not {"scenario_id", "year", "rate"} <= set(names):
        raise ConfigurationError(f"{where}: needs fields scenario_id, year, rate; has {names}")
    return records["scenario_id"], records["year"], records["rate"]


def _check_layout(
    ids: np.ndarray, year: np.ndarray, years: int, first_row: int, where: str
) -> None:
    """Raise unless a block holds whole scenarios, years 1..years, one id per scenario."""
    expected_year = np.tile(np.arange(1, years + 1), len(year) // years)
    bad = np.flatnonzero(year != expected_year)
    if len(bad):
        row = first_row + int(bad[0])
        raise ConfigurationError(
            f"{where}: row {row} has year {int(year[bad[0]])}, expected "
            f"{int(expected_year[bad[0]])}; sort by scenario_id then year 1..{years}"
        )
    by_scenario = ids.reshape(-1, years)
    mixed = np.flatnonzero((by_scenario != by_scenario[:, :1]).any(axis=1))
    if len(mixed):
        row = first_row + int(mixed[0]) * years
        raise ConfigurationError(
            f"{where}: rows {row}..{row + years - 1} mix scenario ids; sort by scenario_id "
            "then year"
        )


def _default_group(meta: Mapping[str, Any]) -> int:
    if int(meta.get("branching_year", 0)) > 0:
        return int(meta.get("inner", 1))
    return 2 if meta.get("antithetic") else 1


def _initial_discount_factors(
    curve: ZeroCurve | None, meta: Mapping[str, Any], years: int, where: str
) -> FloatArray:
    """``P(0, t)`` for t = 0..years from the given curve or the metadata's."""
    if int(meta.get("branching_year", 0)) > 0 and float(meta.get("market_price_of_risk", 0)):
        raise ConfigurationError(
            f"{where}: the first {meta['branching_year']} years follow real-world dynamics "
            f"(market_price_of_risk {meta['market_price_of_risk']}), so the mean discount "
            "factor need not match the curve; check a risk-neutral set (market_price_of_risk "
            "0 or branching_year 0)"
        )
    if curve is None:
        stored = meta.get("curve")
        if not stored and meta.get("model") == "simple":
            raise ConfigurationError(
                f"{where}: no initial curve to test against: the 'simple' model has none (its "
                "rates are not risk-neutral), so esg check does not apply; generate with "
                "hull_white, vasicek or cir, or pass a curve to "
                "livecalc.engines.esg_check.check_scenarios"
            )
        if not stored:
            raise ConfigurationError(
                f"{where}: no initial curve to test against (no {METADATA_KEY!r} metadata with "
                "a curve); write the scenarios with the ESG's metadata, or pass a curve to "
                "livecalc.engines.esg_check.check_scenarios"
            )
        try:
            curve = ZeroCurve(
                tuple(map(float, stored["maturities"])),
                tuple(map(float, stored["discount_factors"])),
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                f"{where}: metadata curve needs 'maturities' and 'discount_factors' lists"
            ) from None
    return curve.yearly_discount_factors(years)


@dataclass(frozen=True)
class _Moments:
    """Closed-form moments of each year's log-return ``I_y`` under the recorded model."""

    mean: FloatArray
    var: FloatArray | None = None
    params: GaussianParams | None = None
    cir: tuple[float, float, float, float] | None = None  # a, b, sigma, r0

    def inner_variances(self, branching: int) -> FloatArray | None:
        """Expected variance of ``I_y`` among the inner paths of one outer path, per year.

        Given the outer path up to the branching year, ``Var(I_y | F_b) = Var(I_y) -
        Var(E[I_y | F_b])``, and ``E[I_y | F_b]`` is affine in the state at the branching
        year with the known factor ``bfac e^(-a (y - 1 - b))`` (Gaussian and CIR alike). Before
        the branching year the inner paths share the outer path: 0.
        """
        if self.var is None:
            return None
        out = np.zeros_like(self.var)
        if self.params is not None:
            step = self.params.step
            decay, bfac = step.e, step.bfac
            var_state = 0.0
            for _ in range(branching):
                var_state = step.e**2 * var_state + step.var_x
        elif self.cir is not None:
            a, b, sigma, r0 = self.cir
            decay, bfac = math.exp(-a), -math.expm1(-a) / a
            var_state = cir_rate_variance(a, b, sigma, r0, float(branching))
        else:
            return None
        for y in range(branching, len(self.var)):
            explained = (bfac * decay ** (y - branching)) ** 2 * var_state
            out[y] = float(self.var[y]) - explained
        return out

    def unit_variances(
        self, meta: Mapping[str, Any], group: int
    ) -> tuple[FloatArray, FloatArray] | None:
        """Exact variances of a unit's mean of ``I_y`` and of ``(I_y - E I_y)**2`` (Gaussian).

        Sample standard errors of a squared deviation are themselves skewed, and the
        t-statistic with them leans left (a low variance estimate comes with a low error
        estimate). For the Gaussian models the errors are known: for jointly normal ``X, Y``
        with mean 0, ``Cov(X**2, Y**2) = 2 Cov(X, Y)**2``, and two scenarios of one unit are
        correlated only through what they share: the whole path up to the branching year,
        the state ``x`` at it afterwards, and, for an antithetic pair, mirrored innovations.
        """
        if self.params is None or self.var is None:
            return None
        step, branching = self.params.step, int(meta.get("branching_year", 0))
        antithetic = bool(meta.get("antithetic", False))
        var_x_branch = 0.0
        for _ in range(branching):
            var_x_branch = step.e**2 * var_x_branch + step.var_x
        mean_var = np.empty_like(self.var)
        square_var = np.empty_like(self.var)
        partners = group if antithetic else 0  # ordered (i, j) pairs that mirror each other
        others = group * (group - 1) - partners
        for y in range(len(self.var)):
            total = float(self.var[y])
            if y < branching:
                shared = total  # every scenario of the unit carries the outer path's year
            else:
                shared = step.bfac**2 * step.e ** (2 * (y - branching)) * var_x_branch
            mirrored = 2.0 * shared - total
            mean_var[y] = (group * total + partners * mirrored + others * shared) / group**2
            square_var[y] = (
                2.0 * (group * total**2 + partners * mirrored**2 + others * shared**2) / group**2
            )
        return mean_var, square_var


def _expected_moments(meta: Mapping[str, Any], initial: FloatArray) -> _Moments | None:
    """Closed-form mean (and, for Gaussian models, variance) of each year's log-return."""
    model = meta.get("model")
    if model not in ("hull_white", "vasicek", "cir"):
        return None
    try:
        params: Mapping[str, float] = meta["parameters"]
        years, branching = int(meta["years"]), int(meta.get("branching_year", 0))
        lam = float(meta.get("market_price_of_risk", 0.0))
        built = model_params(model, params, years, branching, lam, initial)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"metadata: incomplete {model} parameters ({exc})") from None
    if isinstance(built, GaussianParams):
        mean, var = gaussian_integral_moments(built.step, built.x0, built.levels, built.shifts)
        return _Moments(mean, var, built)
    speeds = np.full(years, params["a"])
    levels = np.full(years, params["b"])
    speeds[:branching] = params["a"] - lam * params["sigma"]
    levels[:branching] = params["a"] * params["b"] / speeds[:branching]
    means = cir_integral_means(float(params["r0"]), speeds, levels)
    if branching and lam:
        return _Moments(means)  # real-world years first: refused before the check anyway
    cir = (float(params["a"]), float(params["b"]), float(params["sigma"]), float(params["r0"]))
    return _Moments(means, cir_integral_variances(*cir, years), cir=cir)
