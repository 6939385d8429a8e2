"""The solver engine: risk measures of the projection's results, and parameter optimisation.

The solver reads the projection's output records (found by dtype), sums ``npv`` per scenario
and computes the risk measures of ``livecalc.solver.risk`` on the configured basis, for the
portfolio and, in nested runs, per outer scenario. With an ``optimization`` block it also
searches the projection parameters (``livecalc.solver.optimize``), evaluating each candidate
through the callback the runner binds with ``bind_evaluator``. It writes no record buffer:
``get_outputs()`` returns the statistics and the solution as a plain dict (its shape is in
docs/engines/solver.md).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from livecalc._version import __version__
from livecalc.assumptions.credentials import AMCredentials
from livecalc.engines._config_keys import unknown_key_in_model
from livecalc.errors import ConfigurationError, ExecutionError, InitializationError
from livecalc.runtime.engine import EngineInfo, Evaluator, ExecutionResult, ICalcEngine, InputBuffer
from livecalc.solver.expr import Expression, ExpressionError, parse_expression
from livecalc.solver.optimize import AutoOrBool, OptimizationConfig, OptimizationResult, optimize
from livecalc.solver.risk import (
    BASES,
    STANDARD_METRICS,
    Basis,
    ScenarioValues,
    compute_metrics,
    find_results,
    metrics_per_outer,
    parse_metric,
    scenario_values,
)

__all__ = ["DEFAULT_METRICS", "SolverConfig", "SolverEngine"]

DEFAULT_METRICS = ("var_95", "var_99_5", "cte_70", "cte_95", "cte_98", "cte_99_5")
"""Requested on top of the standard metrics when the config lists none."""

SIGN_CONVENTIONS = {
    "npv": "values are portfolio NPVs per scenario (positive = profit); var_a and cte_a "
    "describe the worst (1-a) of scenarios, the lowest NPVs: cte_a is their mean NPV",
    "loss": "values are portfolio losses per scenario, loss = -NPV (positive = loss); var_a "
    "and cte_a describe the worst (1-a) of scenarios, the highest losses: cte_a is their "
    "mean loss",
}


class SolverConfig(BaseModel):
    """The solver node's ``config`` object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    basis: Basis = "npv"
    metrics: list[str] = list(DEFAULT_METRICS)
    percentiles: list[float] = []
    per_outer: AutoOrBool = "auto"
    custom_metrics: dict[str, str] = {}
    optimization: OptimizationConfig | None = None

    @field_validator("metrics")
    @classmethod
    def _canonical(cls, names: list[str]) -> list[str]:
        try:
            return [parse_metric(n).name for n in names]
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("percentiles")
    @classmethod
    def _in_range(cls, levels: list[float]) -> list[float]:
        for q in levels:
            if not 0.0 <= q <= 100.0:
                raise ValueError(f"{q:g} is not a percentile: give levels in [0, 100]")
        return levels

    def requested(self) -> list[str]:
        """Canonical names of the requested metrics, percentiles included (no duplicates)."""
        extra = [parse_metric(f"p{q:g}".replace(".", "_")).name for q in self.percentiles]
        names = [*STANDARD_METRICS, *self.metrics, *extra]
        return [n for i, n in enumerate(names) if n not in names[:i]]


class _Namespace:
    """The names expressions and the objective may use: metric names on the solver's basis,
    the same with an explicit ``npv_``/``loss_`` prefix, and custom metrics defined so far."""

    def __init__(self, listed: list[str], custom: list[str]) -> None:
        self.listed = listed
        self.custom = custom

    @staticmethod
    def strip(name: str) -> str:
        for basis in BASES:
            if name.startswith(basis + "_"):
                return name[len(basis) + 1 :]
        return name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.custom:
            return True
        try:
            return parse_metric(self.strip(name)).name == self.strip(name)
        except ConfigurationError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter([*self.listed, *self.custom])

    def __len__(self) -> int:
        return len(self.listed) + len(self.custom)


def _path(loc: tuple[int | str, ...]) -> str:
    return "config" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _config_error(exc: ValidationError) -> ConfigurationError:
    """Every problem pydantic found, each with its JSON path and what to do."""
    lines = []
    for err in exc.errors():
        msg = str(err["msg"])
        if err["type"] == "extra_forbidden":
            lines.append(unknown_key_in_model(SolverConfig, err["loc"], _path(err["loc"])))
            continue
        if err["type"] == "missing":
            msg = "required: add it"
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{_path(err['loc'])}: {msg}")
    return ConfigurationError("; ".join(lines))


def _canonical_metric(name: str, custom: list[str]) -> str | None:
    """``name`` as a key of the solver's metrics (``loss_cte_99.5`` -> ``loss_cte_99_5``), or
    None when it names no metric."""
    if name in custom:
        return name
    prefix = next((b + "_" for b in BASES if name.startswith(b + "_")), "")
    try:
        return prefix + parse_metric(name[len(prefix) :]).name
    except ConfigurationError:
        return None


def _canonical_optimization(
    cfg: SolverConfig, listed: list[str], custom: list[str], problems: list[str]
) -> SolverConfig:
    """``cfg`` with the objective's and constraints' metrics canonical; unknown ones added to
    ``problems`` with the closest known name."""
    opt = cfg.optimization
    assert opt is not None
    known = list(_Namespace(listed, custom))

    def canonical(where: str, metric: str) -> str:
        found = _canonical_metric(metric, custom)
        if found is None:
            close = difflib.get_close_matches(metric, known, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"config.optimization.{where}.metric: {metric!r} is not a metric{hint}; use "
                "a metric name (mean, cte_95, p99_5...), optionally prefixed npv_ or loss_, "
                "or a custom_metrics name"
            )
        return found or metric

    objective = opt.objective.model_copy(
        update={"metric": canonical("objective", opt.objective.metric)}
    )
    constraints = [
        c.model_copy(update={"metric": canonical(f"constraints[{i}]", c.metric)})
        for i, c in enumerate(opt.constraints)
    ]
    opt = opt.model_copy(update={"objective": objective, "constraints": constraints})
    return cfg.model_copy(update={"optimization": opt})


def _raw_metric_problems(raw: Mapping[str, Any]) -> list[str]:
    """Unknown objective and constraint metrics of a config that failed validation."""
    opt = raw.get("optimization")
    if not isinstance(opt, Mapping):
        return []
    custom = raw.get("custom_metrics")
    names = [str(n) for n in custom] if isinstance(custom, Mapping) else []
    places = [("objective", opt.get("objective"))]
    constraints = opt.get("constraints")
    if isinstance(constraints, list):
        places += [(f"constraints[{i}]", c) for i, c in enumerate(constraints)]
    problems = []
    for where, block in places:
        metric = block.get("metric") if isinstance(block, Mapping) else None
        if isinstance(metric, str) and _canonical_metric(metric, names) is None:
            problems.append(
                f"config.optimization.{where}.metric: {metric!r} is not a metric; use a metric "
                "name (mean, cte_95, p99_5...), optionally prefixed npv_ or loss_, or a "
                "custom_metrics name"
            )
    return problems


def _parse_config(raw: Mapping[str, Any]) -> tuple[SolverConfig, dict[str, Expression]]:
    """The validated config and its compiled custom metrics; every problem reported at once."""
    try:
        cfg = SolverConfig.model_validate(dict(raw))
    except ValidationError as exc:
        # Unknown metric names too, so one pass reports every problem.
        found = [str(_config_error(exc)), *_raw_metric_problems(raw)]
        raise ConfigurationError("; ".join(found)) from None
    problems: list[str] = []
    listed = cfg.requested()
    custom: dict[str, Expression] = {}
    for name, text in cfg.custom_metrics.items():
        where = f"config.custom_metrics.{name}"
        if not name.isidentifier() or name in _Namespace(listed, []):
            problems.append(f"{where}: use an identifier that is not a metric name")
            continue
        try:
            custom[name] = parse_expression(text, _Namespace(listed, list(custom)))
        except ExpressionError as exc:
            problems.append(f"{where}: {exc}")
    if cfg.optimization is not None:
        cfg = _canonical_optimization(cfg, listed, list(custom), problems)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return cfg, custom


def _per_outer(values: ScenarioValues, names: list[str], basis: Basis) -> dict[int, Any]:
    with np.errstate(over="ignore", invalid="ignore"):  # checked by _refuse_non_finite
        return metrics_per_outer(values, names, basis)


def _refuse_non_finite(metrics: Mapping[str, Any], values: ScenarioValues, where: str) -> None:
    """Raise when a metric is not a finite number: a sum of finite NPVs that overflowed
    (amounts near 1e306) or a custom metric that divided by zero is no result to report.

    Raises:
        ExecutionError: naming the metric, its value and the first scenario total that
            overflowed, if any.
    """
    bad = np.flatnonzero(~np.isfinite(values.npv))
    if bad.size and not metrics:
        raise ExecutionError(
            f"scenario {int(values.scenario_ids[bad[0]])}'s summed npv overflows to "
            f"{float(values.npv[bad[0]])!r}; the solver refuses non-finite metrics: check the "
            "projection's inputs (sum_assured, premium and the other amounts must be far "
            "below 1e300)"
        )
    for name, value in metrics.items():
        if isinstance(value, int | float) and not np.isfinite(value):
            cause = (
                f"scenario {int(values.scenario_ids[bad[0]])}'s summed npv overflows to "
                f"{float(values.npv[bad[0]])!r}"
                if bad.size
                else f"the scenario values (up to {float(np.abs(values.npv).max()):.3g} in "
                "size) are too large to combine"
            )
            raise ExecutionError(
                f"metric {where}{name} is {float(value)!r}: {cause}; the solver refuses "
                "non-finite metrics: check the projection's inputs (sum_assured, premium "
                "and the other amounts must be far below 1e300)"
            )


def _lookup_assumption(credentials: AMCredentials | None) -> Any:
    """``lookup(ref, row)``: the ``value`` of the row named ``row`` in an assumption table.

    The table has a string column ``name`` and a numeric column ``value``; a one-row table
    serves any name.
    """

    def lookup(ref: str, row: str) -> float:
        try:
            from livecalc.assumptions.client import resolve_reference

            table = resolve_reference(ref, credentials).table
        except ConfigurationError:
            raise
        except Exception as exc:
            raise InitializationError(f"cannot resolve {ref}: {exc}") from exc
        columns = set(table.column_names)
        if not {"name", "value"} <= columns:
            raise ConfigurationError(
                f"{ref}: a target table needs columns 'name' and 'value' (it has {sorted(columns)})"
            )
        names = [str(n) for n in table.column("name").to_pylist()]
        values = table.column("value").to_pylist()
        if len(names) == 1:
            return float(values[0])
        if row not in names:
            raise ConfigurationError(
                f"{ref}: no row named {row!r} (rows: {', '.join(names)}); set target_name or "
                "value_name to one of them"
            )
        return float(values[names.index(row)])

    return lookup


class SolverEngine(ICalcEngine):
    """Risk measures of projection results and, optionally, an optimisation of parameters."""

    config_file_keys = ("optimization.objective.target", "optimization.constraints.*.value")

    def __init__(self) -> None:
        self._config: SolverConfig | None = None
        self._custom: dict[str, Expression] = {}
        self._optimization: OptimizationConfig | None = None
        self._evaluator: Evaluator | None = None
        self._outputs: dict[str, Any] = {}

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Validate the config and resolve ``am://`` targets; see docs/engines/solver.md."""
        cfg, custom = _parse_config(config)
        opt = cfg.optimization
        if opt is not None:
            opt = opt.resolved(_lookup_assumption(credentials))
        self._config, self._custom, self._optimization = cfg, custom, opt
        self._outputs = {}

    def get_info(self) -> EngineInfo:
        return EngineInfo(
            name="LiveCalc solver",
            version=__version__,
            engine_type="solver",
            supports_assumptions_manager=True,
        )

    def bind_evaluator(self, evaluator: Evaluator) -> None:
        """Receive the callback that re-runs the projection with parameter overrides."""
        self._evaluator = evaluator

    def _metrics(self, values: ScenarioValues) -> dict[str, float]:
        """Metrics on the basis, the same prefixed npv_/loss_, then the custom metrics."""
        assert self._config is not None
        names = self._config.requested()
        wanted = {n for e in self._custom.values() for n in e.names}
        if self._optimization is not None:
            wanted |= self._optimization.metric_names()
        names += [_Namespace.strip(n) for n in sorted(wanted) if n not in self._custom]
        out: dict[str, float] = {}
        _refuse_non_finite({}, values, "")
        for basis in BASES:
            # Sums of huge finite values may overflow: the metrics are checked after.
            with np.errstate(over="ignore", invalid="ignore"):
                found = compute_metrics(values.npv, names, basis)
            out.update({f"{basis}_{k}": v for k, v in found.items()})
            if basis == self._config.basis:
                out.update(found)
        for name, expr in self._custom.items():
            try:
                out[name] = expr.evaluate(out)
            except ExpressionError as exc:
                raise ExecutionError(f"custom metric {name}: {exc}") from exc
        return out

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Compute the risk measures of ``input_buffer``'s results; optimise if configured."""
        if self._config is None:
            raise ExecutionError("the solver is not initialised: call initialize(config) first")
        start = time.perf_counter()
        cfg = self._config
        values = scenario_values(find_results(input_buffer))
        metrics = self._metrics(values)
        shown = [*cfg.requested(), *self._custom]
        nested = values.is_nested() if cfg.per_outer == "auto" else cfg.per_outer
        outputs: dict[str, Any] = {
            "basis": cfg.basis,
            "sign_convention": SIGN_CONVENTIONS[cfg.basis],
            "scenarios": int(values.scenario_ids.size),
            "records": values.records,
            "metrics": {k: metrics[k] for k in shown},
            "per_outer": _per_outer(values, cfg.requested(), cfg.basis) if nested else {},
            "optimization": None,
            "solution": None,
        }
        _refuse_non_finite(outputs["metrics"], values, "")
        for outer, found in outputs["per_outer"].items():
            _refuse_non_finite(found, values, f"per_outer.{outer}.")
        warnings: list[str] = []
        if self._optimization is not None:
            solution = self._optimize(self._optimization, values).as_dict()
            # Show the metrics on the basis and the ones the search used, not every prefix.
            keep = {*shown, *self._optimization.metric_names()}
            solution["metrics"] = {k: v for k, v in solution["metrics"].items() if k in keep}
            _refuse_non_finite(solution["metrics"], values, "optimization.metrics.")
            outputs["optimization"] = solution
            # A flat digest, which the CLI's summary prints one line per key.
            outputs["solution"] = {
                **solution["parameters"],
                **{k: solution[k] for k in ("objective_value", "converged", "partial")},
                **{k: solution[k] for k in ("iterations", "evaluations", "seconds")},
            }
            if not solution["converged"]:
                warnings.append(f"optimisation did not converge: {solution['reason']}")
        self._outputs = outputs
        return ExecutionResult(
            success=True,
            execution_time_ms=(time.perf_counter() - start) * 1e3,
            rows_processed=values.records,
            bytes_written=0,
            warnings=warnings,
        )

    def _optimize(self, opt: OptimizationConfig, base: ScenarioValues) -> OptimizationResult:
        evaluator = self._evaluator
        if evaluator is None:
            raise ExecutionError(
                "the solver's optimization needs the projection: run it through the DAG runner "
                "(livecalc.run), or call bind_evaluator(fn) before run_chunk"
            )

        def evaluate(overrides: Mapping[str, float]) -> Mapping[str, float]:
            try:
                records = evaluator(dict(overrides))
            except Exception as exc:
                raise ExecutionError(f"evaluating {dict(overrides)} failed: {exc}") from exc
            values = scenario_values(find_results(records))
            if not np.array_equal(values.scenario_ids, base.scenario_ids):
                got, want = set(values.scenario_ids.tolist()), set(base.scenario_ids.tolist())
                odd = sorted(got ^ want)[:3]
                raise ExecutionError(
                    f"evaluating {dict(overrides)} returned {values.scenario_ids.size} scenarios "
                    f"where the input has {base.scenario_ids.size} (ids in one but not the "
                    f"other: {odd}): the evaluator must re-run "
                    "the projection on the same scenarios"
                )
            return self._metrics(values)

        return optimize(opt, evaluate)

    def get_outputs(self) -> Mapping[str, Any]:
        """The last run's statistics and solution (plain, picklable dict)."""
        return self._outputs

    def dispose(self) -> None:
        self._config = None
        self._custom = {}
        self._optimization = None
        self._evaluator = None

    @property
    def is_initialized(self) -> bool:
        return self._config is not None
