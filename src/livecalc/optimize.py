"""Optimisation of projection parameters: goal-seek (brentq), SLSQP and differential evolution.

``optimize(config, evaluate)`` searches the parameters of ``config`` (premium, mortality, lapse
and expense multipliers) for the best value of an objective metric under constraints, where
``evaluate(overrides)`` re-runs the projection with those overrides and returns the metrics.
Each distinct point is evaluated once: a cache shares it between the objective, the constraints
and the algorithms' finite differences. Before every evaluation the time and evaluation budgets
are checked; once one is spent the search stops and returns the best point so far, flagged
partial. The config models sit first, then the search.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from scipy import optimize as sopt

from livecalc.errors import ExecutionError

__all__ = [
    "PARAMETER_NAMES",
    "ConstraintConfig",
    "ObjectiveConfig",
    "OptimizationConfig",
    "OptimizationResult",
    "ParameterConfig",
    "choose_algorithm",
    "optimize",
]

PARAMETER_NAMES = (
    "premium_multiplier",
    "mortality_multiplier",
    "lapse_multiplier",
    "expense_multiplier",
)
"""The projection parameters a solver may vary (``set_parameters`` overrides)."""

AM_REFERENCE = re.compile(r"^am://[^@\s]+@[^@\s]+$")

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


TABLE_SUFFIXES = (".csv", ".parquet", ".arrow", ".feather")
"""Local table files ``resolve_reference`` reads, accepted beside ``am://`` references."""


def _number_or_reference(value: Any) -> Any:
    """Accept a number, an ``am://name@version`` reference or a local table file path."""
    if isinstance(value, str):
        if AM_REFERENCE.match(value) or value.endswith(TABLE_SUFFIXES):
            return value
        raise ValueError(
            f"{value!r} is neither a number nor a reference am://name@version (or a local "
            ".csv/.parquet/.arrow table)"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is neither a finite number nor a reference am://name@version")
    return float(value)


NumberOrRef = Annotated[float | str, BeforeValidator(_number_or_reference)]


def _auto_or_bool(value: Any) -> Any:
    """Accept "auto", true or false, with one clear error otherwise."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f'{value!r}: use "auto", true or false')


AutoOrBool = Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)]
"""A setting that is "auto" (decided from the data) or forced on or off."""

_DIRECTIONS = {
    "max": "maximize",
    "maximise": "maximize",
    "min": "minimize",
    "minimise": "minimize",
    "hit": "target",
    "goal": "target",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ParameterConfig(_Model):
    """A parameter to vary: its name, start, bounds and, for a discrete one, the grid step."""

    name: str
    initial: Finite | None = None
    bounds: tuple[Finite, Finite]
    type: Literal["continuous", "discrete"] = "continuous"
    step: Positive | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in PARAMETER_NAMES:
            raise ValueError(
                f"{name!r} is not a projection parameter: use one of {PARAMETER_NAMES}"
            )
        return name

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not bounds[0] < bounds[1]:
            raise ValueError(f"lower bound {bounds[0]:g} must be below upper bound {bounds[1]:g}")
        if bounds[0] < 0:
            raise ValueError(f"lower bound {bounds[0]:g}: multipliers cannot be negative; use >= 0")
        return bounds

    @model_validator(mode="after")
    def _consistent(self) -> ParameterConfig:
        lo, hi = self.bounds
        if self.type == "discrete" and self.step is None:
            raise ValueError("a discrete parameter needs 'step' (its grid: lower bound + k·step)")
        if self.type == "continuous" and self.step is not None:
            raise ValueError("'step' applies to discrete parameters: set type to 'discrete'")
        if self.step is not None and self.step > hi - lo:
            raise ValueError(f"step {self.step:g} is wider than the bounds [{lo:g}, {hi:g}]")
        if self.initial is not None and not lo <= self.initial <= hi:
            raise ValueError(f"initial {self.initial:g} lies outside bounds [{lo:g}, {hi:g}]")
        return self

    @property
    def grid_max(self) -> int:
        """The largest k with lower bound + k·step within the upper bound (discrete only)."""
        assert self.step is not None
        return math.floor((self.bounds[1] - self.bounds[0]) / self.step + 1e-9)

    def on_grid(self, k: int) -> float:
        """Grid point k of a discrete parameter."""
        assert self.step is not None
        # Rounding keeps 0.5 + 3·0.1 at 0.8 rather than 0.8000000000000002.
        return round(self.bounds[0] + min(max(k, 0), self.grid_max) * self.step, 12)

    @property
    def start(self) -> float:
        """Where the search starts: ``initial``, else 1.0 within bounds, else the midpoint."""
        lo, hi = self.bounds
        x = (
            self.initial
            if self.initial is not None
            else (1.0 if lo <= 1.0 <= hi else (lo + hi) / 2)
        )
        if self.type == "discrete":
            assert self.step is not None
            return self.on_grid(round((x - lo) / self.step))
        return x


class ObjectiveConfig(_Model):
    """What to optimise: a metric to maximise, minimise, or bring to a target."""

    metric: str
    direction: Literal["maximize", "minimize", "target"]
    target: NumberOrRef | None = None
    target_name: str | None = None
    tolerance: Positive | None = None

    @field_validator("direction", mode="before")
    @classmethod
    def _spelling(cls, value: Any) -> Any:
        return _DIRECTIONS.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _target_iff_goal(self) -> ObjectiveConfig:
        if self.direction == "target" and self.target is None:
            raise ValueError("direction 'target' needs 'target' (a number or am://name@version)")
        if self.direction != "target" and self.target is not None:
            raise ValueError(f"'target' applies to direction 'target', not {self.direction!r}")
        return self


class ConstraintConfig(_Model):
    """``metric operator value``; ``==`` holds within ``tolerance``, as do ``>=`` and ``<=``."""

    metric: str
    operator: Literal[">=", "<=", ">", "<", "=="]
    value: NumberOrRef
    value_name: str | None = None
    tolerance: Positive | None = None

    @property
    def effective_tolerance(self) -> float:
        """``tolerance``, by default 1e-6 × max(1, |value|)."""
        if self.tolerance is not None:
            return self.tolerance
        return 1e-6 * max(1.0, abs(self.value)) if isinstance(self.value, float) else 1e-6

    def check(self, actual: float) -> tuple[bool, float]:
        """(satisfied, amount of violation >= 0) at the metric value ``actual``."""
        v, tol = float(self.value), self.effective_tolerance
        if self.operator in (">=", ">"):
            ok = actual >= v - tol if self.operator == ">=" else actual > v
            return ok, max(0.0, v - actual)
        if self.operator in ("<=", "<"):
            ok = actual <= v + tol if self.operator == "<=" else actual < v
            return ok, max(0.0, actual - v)
        return abs(actual - v) <= tol, abs(actual - v)

    def slack(self, actual: float, scale: float) -> float:
        """The optimisers' form: >= 0 when satisfied (== constraints: 0 on the value).

        Strict constraints aim one tolerance inside, as the optimisers' inequalities are not
        strict.
        """
        v, tol = float(self.value), self.effective_tolerance
        margin = tol if self.operator in (">", "<") else 0.0
        if self.operator in (">=", ">"):
            return (actual - v - margin) / scale
        if self.operator in ("<=", "<"):
            return (v - actual - margin) / scale
        return (actual - v) / scale


class OptimizationConfig(_Model):
    """The solver config's "optimization" block."""

    algorithm: Literal["auto", "brentq", "slsqp", "differential_evolution"] = "auto"
    parameters: list[ParameterConfig] = Field(min_length=1)
    objective: ObjectiveConfig
    constraints: list[ConstraintConfig] = []
    timeout_seconds: Positive | None = None
    max_iterations: int = Field(100, gt=0)
    max_evaluations: int | None = Field(None, gt=0)
    affine: AutoOrBool = "auto"
    seed: int | None = 0
    population_size: int = Field(15, gt=0)

    @field_validator("algorithm", mode="before")
    @classmethod
    def _spelling(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.lower()
            return "differential_evolution" if value in ("de", "differential-evolution") else value
        return value

    @model_validator(mode="after")
    def _coherent(self) -> OptimizationConfig:
        names = [p.name for p in self.parameters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"parameters: {', '.join(dupes)} listed twice; list each once")
        goal_seek = len(self.parameters) == 1 and self.objective.direction == "target"
        if self.algorithm == "brentq" and not goal_seek:
            raise ValueError(
                "algorithm 'brentq' seeks one parameter for a target: give exactly one parameter "
                "and objective.direction 'target', or use 'slsqp'/'differential_evolution'"
            )
        if self.affine is True and (not goal_seek or self.constraints):
            raise ValueError(
                "affine: true solves a one-parameter target without evaluating the solution, so "
                "it needs one parameter, direction 'target' and no constraints; use 'auto'"
            )
        return self

    def metric_names(self) -> set[str]:
        """The metrics the objective and the constraints read."""
        return {self.objective.metric, *(c.metric for c in self.constraints)}

    def resolved(self, lookup: Callable[[str, str], float]) -> OptimizationConfig:
        """This config with every referenced target and value replaced by ``lookup(ref, row)``.

        ``row`` is ``target_name``/``value_name``, by default the metric's name.
        """
        obj = self.objective
        if isinstance(obj.target, str):
            value = lookup(obj.target, obj.target_name or obj.metric)
            obj = obj.model_copy(update={"target": value})
        constraints = [
            c.model_copy(update={"value": lookup(c.value, c.value_name or c.metric)})
            if isinstance(c.value, str)
            else c
            for c in self.constraints
        ]
        return self.model_copy(update={"objective": obj, "constraints": constraints})


def choose_algorithm(config: OptimizationConfig) -> str:
    """``config.algorithm``; for "auto": brentq for a one-parameter target without constraints,
    differential evolution when a parameter is discrete, else SLSQP."""
    if config.algorithm != "auto":
        return config.algorithm
    one_target = len(config.parameters) == 1 and config.objective.direction == "target"
    if one_target and not config.constraints:
        return "brentq"
    if any(p.type == "discrete" for p in config.parameters):
        return "differential_evolution"
    return "slsqp"


Evaluate = Callable[[Mapping[str, float]], Mapping[str, float]]
"""Parameter overrides in, metric values (at least the objective and constraint metrics) out."""


@dataclass(frozen=True)
class Point:
    """One evaluated candidate: parameters, metrics, objective score and constraint check."""

    params: tuple[float, ...]
    metrics: Mapping[str, float]
    value: float
    score: float
    violation: float
    feasible: bool

    @property
    def rank(self) -> tuple[bool, float, float]:
        """Sort key: feasible points first by score, the others by how far from feasible."""
        return (not self.feasible, self.violation if not self.feasible else 0.0, self.score)


@dataclass(frozen=True)
class _Outcome:
    point: Point
    converged: bool
    reason: str
    affine: bool = False
    verified: bool = True


@dataclass
class OptimizationResult:
    """The outcome of ``optimize``; ``as_dict`` gives the solver's plain, picklable form."""

    algorithm: str
    parameters: dict[str, float]
    objective: ObjectiveConfig
    objective_value: float | None
    metrics: dict[str, float]
    constraints: list[dict[str, Any]]
    iterations: int
    evaluations: int
    converged: bool
    reason: str
    seconds: float
    partial: bool
    affine: bool = False
    verified: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the result (the shape is documented in docs/engines/solver.md)."""
        return {
            "algorithm": self.algorithm,
            "parameters": dict(self.parameters),
            "objective": {
                "metric": self.objective.metric,
                "direction": self.objective.direction,
                "target": self.objective.target,
                "value": self.objective_value,
            },
            "objective_value": self.objective_value,
            "metrics": dict(self.metrics),
            "constraints": [dict(c) for c in self.constraints],
            "constraint_violations": [c["description"] for c in self.constraints if not c["ok"]],
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "converged": self.converged,
            "reason": self.reason,
            "seconds": self.seconds,
            "partial": self.partial,
            "affine": self.affine,
            "verified": self.verified,
        }


class _Stop(Exception):
    """The time or evaluation budget is spent; carries why."""


class _Found(Exception):
    """A goal-seek evaluation hit the target within tolerance; stops brentq early."""


class _Problem:
    """Evaluates candidates once each, keeps the best, and enforces the budgets."""

    def __init__(
        self, cfg: OptimizationConfig, evaluate: Evaluate, clock: Callable[[], float]
    ) -> None:
        self.cfg = cfg
        self.names = [p.name for p in cfg.parameters]
        self.target = float(cfg.objective.target or 0.0)
        self._evaluate = evaluate
        self._clock = clock
        self.start = clock()
        self.cache: dict[tuple[float, ...], Point] = {}
        self.best: Point | None = None
        self.iterations = 0
        self._largest = 0.0

    @property
    def evaluations(self) -> int:
        return len(self.cache)

    @property
    def tolerance(self) -> float:
        """Objective tolerance: configured, or 1e-9 × max(1, |target|, largest |metric| seen)."""
        if self.cfg.objective.tolerance is not None:
            return self.cfg.objective.tolerance
        return 1e-9 * max(1.0, abs(self.target), self._largest)

    def _score(self, value: float) -> float:
        direction = self.cfg.objective.direction
        if direction == "maximize":
            return -value
        return value if direction == "minimize" else abs(value - self.target)

    def seconds(self) -> float:
        return self._clock() - self.start

    def at(self, x: Sequence[float]) -> Point:
        """The point at parameters ``x`` (clipped to the bounds), evaluated at most once."""
        key = tuple(
            float(min(max(float(v), p.bounds[0]), p.bounds[1]))
            for v, p in zip(x, self.cfg.parameters, strict=True)
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        timeout = self.cfg.timeout_seconds
        if timeout is not None and self.seconds() >= timeout:
            raise _Stop(
                f"timeout: timeout_seconds={timeout:g} reached after {self.evaluations} "
                "evaluations; the best point so far is returned"
            )
        limit = self.cfg.max_evaluations
        if limit is not None and self.evaluations >= limit:
            raise _Stop(f"max_evaluations={limit} reached; the best point so far is returned")
        metrics = {
            k: float(v) for k, v in self._evaluate(dict(zip(self.names, key, strict=True))).items()
        }
        value = metrics[self.cfg.objective.metric]
        used = [self.cfg.objective.metric, *(c.metric for c in self.cfg.constraints)]
        bad = [m for m in used if not math.isfinite(metrics[m])]
        if bad:
            at = dict(zip(self.names, key, strict=True))
            raise ExecutionError(
                f"the projection at {at} gives {bad[0]} = {metrics[bad[0]]}: the optimiser "
                "needs finite metrics; narrow the parameter bounds"
            )
        checks = [c.check(metrics[c.metric]) for c in self.cfg.constraints]
        point = Point(
            params=key,
            metrics=metrics,
            value=value,
            score=self._score(value),
            violation=sum(v for _, v in checks),
            feasible=all(ok for ok, _ in checks),
        )
        self.cache[key] = point
        self._largest = max(self._largest, abs(value))
        if self.best is None or point.rank < self.best.rank:
            self.best = point
        return point

    def best_of(self, candidates: Sequence[Sequence[float]]) -> Point:
        """The best-ranked of these candidates (each evaluated, or taken from the cache)."""
        return min((self.at(c) for c in candidates), key=lambda p: p.rank)


def _goal_seek(problem: _Problem) -> _Outcome:
    """brentq on one parameter for the value where the objective metric equals the target."""
    cfg, p = problem.cfg, problem.cfg.parameters[0]
    if p.type == "discrete":
        return _goal_seek_grid(problem)
    metric, lo, hi = cfg.objective.metric, *p.bounds

    def gap(x: float) -> float:
        g = problem.at([x]).value - problem.target
        if abs(g) <= problem.tolerance:
            raise _Found(x)
        return g

    try:
        g_lo, g_hi = gap(lo), gap(hi)
    except _Found as found:
        return _Outcome(problem.at([found.args[0]]), True, "the target is hit at a bound")
    if g_lo * g_hi > 0:
        return _Outcome(
            problem.at([lo] if abs(g_lo) < abs(g_hi) else [hi]),
            False,
            f"the target {problem.target:g} is not bracketed: {metric} - target is {g_lo:g} at "
            f"the lower bound and {g_hi:g} at the upper bound; widen "
            "optimization.parameters[0].bounds",
        )
    # The secant through the bounds is exact when the metric is affine in the parameter.
    x_secant = lo - g_lo * (hi - lo) / (g_hi - g_lo)
    problem.iterations = 1
    if cfg.affine is True:
        return _Outcome(
            _interpolated(problem, x_secant),
            True,
            "affine (declared): solved exactly from two evaluations, not verified",
            affine=True,
            verified=False,
        )
    if cfg.affine == "auto":
        try:
            gap(x_secant)
        except _Found:
            return _Outcome(
                problem.at([x_secant]),
                True,
                "affine: the secant through the bounds hits the target (verified by a third "
                "evaluation)",
                affine=True,
            )
    try:
        root, info = sopt.brentq(
            gap,
            lo,
            hi,
            xtol=1e-14 * max(1.0, hi - lo),
            maxiter=cfg.max_iterations,
            full_output=True,
            disp=False,
        )
    except _Found as found:
        # Past the two bounds, each brentq iteration (and the secant check) is one evaluation.
        problem.iterations = problem.evaluations - 2
        return _Outcome(problem.at([found.args[0]]), True, "brentq: the target is hit")
    problem.iterations = problem.evaluations - 2
    point = problem.at([root])
    miss = abs(point.value - problem.target)
    if miss <= problem.tolerance:
        return _Outcome(point, True, f"brentq: {info.flag}")
    return _Outcome(
        point,
        False,
        f"brentq: {info.flag}; |{metric} - target| = {miss:g} exceeds the "
        f"tolerance {problem.tolerance:g} (does the metric jump near the root?)",
    )


def _interpolated(problem: _Problem, x: float) -> Point:
    """The point at ``x`` with its metrics interpolated between the bounds, not evaluated."""
    lo, hi = problem.cfg.parameters[0].bounds
    a, b = problem.at([lo]), problem.at([hi])
    w = (x - lo) / (hi - lo)
    metrics = {k: (1 - w) * a.metrics[k] + w * b.metrics[k] for k in a.metrics}
    value = metrics[problem.cfg.objective.metric]
    return Point((x,), metrics, value, problem._score(value), 0.0, True)


def _goal_seek_grid(problem: _Problem) -> _Outcome:
    """Goal-seek on a discrete parameter: bisection over grid indices, then the closer end."""
    p = problem.cfg.parameters[0]

    def gap(k: int) -> float:
        return problem.at([p.on_grid(k)]).value - problem.target

    a, b = 0, p.grid_max
    if gap(a) * gap(b) > 0:
        k = a if abs(gap(a)) < abs(gap(b)) else b
        return _Outcome(
            problem.at([p.on_grid(k)]),
            False,
            f"the target {problem.target:g} is not bracketed on the grid of "
            "optimization.parameters[0]; widen its bounds",
        )
    if problem.cfg.affine != False:  # noqa: E712 - "auto" or True: try the secant first
        # Under affinity the grid points either side of the secant's root bracket the target.
        k = int((b - a) * gap(a) / (gap(a) - gap(b))) if gap(a) != gap(b) else a
        k = min(max(k, a), b - 1)
        problem.iterations = 1
        if gap(k) * gap(k + 1) <= 0:
            a, b = k, k + 1
    while b - a > 1 and problem.iterations < problem.cfg.max_iterations:
        problem.iterations += 1
        mid = (a + b) // 2
        a, b = (a, mid) if gap(a) * gap(mid) <= 0 else (mid, b)
    closer = min((a, b), key=lambda k: abs(gap(k)))
    if b - a <= 1:
        return _Outcome(
            problem.at([p.on_grid(closer)]),
            True,
            "grid goal-seek: the target lies between adjacent grid points; the closer is taken",
        )
    return _Outcome(
        problem.at([p.on_grid(closer)]),
        False,
        f"max_iterations={problem.cfg.max_iterations} reached before the grid bracket closed",
    )


def _snap_candidates(cfg: OptimizationConfig, x: Sequence[float]) -> list[list[float]]:
    """Grid points around ``x`` for its discrete parameters: all 2^d corners for d <= 4
    discrete parameters, the nearest grid point beyond."""
    few = sum(p.type == "discrete" for p in cfg.parameters) <= 4
    options: list[list[float]] = []
    for v, p in zip(x, cfg.parameters, strict=True):
        if p.type != "discrete":
            options.append([float(v)])
            continue
        assert p.step is not None
        k = (float(v) - p.bounds[0]) / p.step
        ks = {math.floor(k), math.ceil(k)} if few else {round(k)}
        options.append(sorted({p.on_grid(int(i)) for i in ks}))
    corners: list[list[float]] = [[]]
    for opts in options:
        corners = [[*c, o] for c in corners for o in opts]
    return corners


def _scales(problem: _Problem, x0: Sequence[float]) -> tuple[float, list[float]]:
    """Objective and constraint scales that bring them to order one at the start point.

    SLSQP's stopping test and DE's tolerance are absolute in f, and NPVs run to millions.
    """
    first = problem.at(x0)
    obj = problem.cfg.objective
    base = first.value - problem.target if obj.direction == "target" else first.value
    scales = [
        max(1.0, abs(float(c.value)), abs(first.metrics[c.metric])) for c in problem.cfg.constraints
    ]
    return max(1.0, abs(base)), scales


def _objective_fn(problem: _Problem, scale: float) -> Callable[[Sequence[float]], float]:
    direction = problem.cfg.objective.direction

    def fun(x: Sequence[float]) -> float:
        value = problem.at(x).value
        if direction == "target":
            return ((value - problem.target) / scale) ** 2
        return (-value if direction == "maximize" else value) / scale

    return fun


def _slsqp(problem: _Problem) -> _Outcome:
    """SLSQP from the initial point; discrete parameters relaxed, then snapped to the grid."""
    cfg = problem.cfg
    x0 = [p.start for p in cfg.parameters]
    scale, c_scales = _scales(problem, x0)
    constraints = [
        {
            "type": "eq" if c.operator == "==" else "ineq",
            "fun": lambda x, c=c, s=s: c.slack(problem.at(list(x)).metrics[c.metric], s),
        }
        for c, s in zip(cfg.constraints, c_scales, strict=True)
    ]

    def count(*_: Any) -> None:
        problem.iterations += 1

    fun = _objective_fn(problem, scale)
    res = sopt.minimize(
        lambda x: fun(list(x)),
        np.asarray(x0, dtype=float),
        method="SLSQP",
        bounds=[p.bounds for p in cfg.parameters],
        constraints=constraints,
        callback=count,
        options={"maxiter": cfg.max_iterations, "ftol": 1e-10},
    )
    problem.iterations = max(problem.iterations, int(res.nit))
    point = problem.best_of(_snap_candidates(cfg, list(res.x)))
    return _Outcome(point, bool(res.success), f"SLSQP: {res.message}")


def _differential_evolution(problem: _Problem) -> _Outcome:
    """Differential evolution; discrete parameters are searched over their grid index."""
    cfg, params = problem.cfg, problem.cfg.parameters
    bounds = [(0.0, float(p.grid_max)) if p.type == "discrete" else p.bounds for p in params]

    def to_params(z: Sequence[float]) -> list[float]:
        return [
            p.on_grid(round(v)) if p.type == "discrete" else float(v)
            for v, p in zip(z, params, strict=True)
        ]

    def to_index(x: Sequence[float]) -> list[float]:
        return [
            float(round((v - p.bounds[0]) / p.step)) if p.step is not None else v
            for v, p in zip(x, params, strict=True)
        ]

    x0 = [p.start for p in params]
    scale, c_scales = _scales(problem, x0)
    fun = _objective_fn(problem, scale)
    constraints = [
        sopt.NonlinearConstraint(
            lambda z, c=c, s=s: c.slack(problem.at(to_params(z)).metrics[c.metric], s),
            -c.effective_tolerance / s if c.operator == "==" else 0.0,
            c.effective_tolerance / s if c.operator == "==" else np.inf,
        )
        for c, s in zip(cfg.constraints, c_scales, strict=True)
    ]

    def count(*_: Any) -> None:
        problem.iterations += 1

    res = sopt.differential_evolution(
        lambda z: fun(to_params(z)),
        bounds,
        x0=np.asarray(to_index(x0)),
        integrality=[p.type == "discrete" for p in params],
        constraints=constraints,
        maxiter=cfg.max_iterations,
        popsize=cfg.population_size,
        seed=cfg.seed,
        polish=False,
        callback=count,
        updating="immediate",
        workers=1,
    )
    problem.iterations = max(problem.iterations, int(res.nit))
    point = problem.at(to_params(res.x))
    # DE's x is its best member; the cache's best is that point or, ranked our way, better.
    assert problem.best is not None
    point = min(point, problem.best, key=lambda q: q.rank)
    return _Outcome(point, bool(res.success), f"differential evolution: {res.message}")


_ALGORITHMS = {
    "brentq": _goal_seek,
    "slsqp": _slsqp,
    "differential_evolution": _differential_evolution,
}


def optimize(
    config: OptimizationConfig, evaluate: Evaluate, clock: Callable[[], float] = time.monotonic
) -> OptimizationResult:
    """Search ``config``'s parameters with its algorithm, evaluating candidates with ``evaluate``.

    ``config`` must hold numbers, not ``am://`` references (see ``OptimizationConfig.resolved``).
    ``clock`` measures the time budget. A stop on ``timeout_seconds`` or ``max_evaluations``
    returns the best point so far (feasible first, then by objective) with ``partial=True`` and
    ``converged=False``; ``converged`` also requires every constraint to hold at the result.
    """
    refs = [c.metric for c in config.constraints if isinstance(c.value, str)]
    if isinstance(config.objective.target, str) or refs:
        raise ValueError("optimize needs numeric targets: resolve am:// references first")
    problem = _Problem(config, evaluate, clock)
    algorithm = choose_algorithm(config)
    partial = False
    try:
        outcome = _ALGORITHMS[algorithm](problem)
    except _Stop as stop:
        partial = True
        if problem.best is None:
            return OptimizationResult(
                algorithm,
                {p.name: p.start for p in config.parameters},
                config.objective,
                None,
                {},
                [],
                problem.iterations,
                0,
                False,
                str(stop),
                problem.seconds(),
                True,
            )
        outcome = _Outcome(problem.best, False, str(stop))
    point = outcome.point
    checks = []
    for c in config.constraints:
        actual = point.metrics[c.metric]
        ok, amount = c.check(actual)
        checks.append(
            {
                "metric": c.metric,
                "operator": c.operator,
                "value": float(c.value),
                "tolerance": c.effective_tolerance,
                "actual": actual,
                "ok": ok,
                "violation": amount,
                "description": f"{c.metric} {c.operator} {float(c.value):g}: actual {actual:g}",
            }
        )
    converged, reason = outcome.converged, outcome.reason
    if converged and not all(c["ok"] for c in checks):
        converged, reason = False, reason + "; but a constraint does not hold at the result"
    return OptimizationResult(
        algorithm=algorithm,
        parameters=dict(zip(problem.names, point.params, strict=True)),
        objective=config.objective,
        objective_value=point.value,
        metrics=dict(point.metrics),
        constraints=checks,
        iterations=problem.iterations,
        evaluations=problem.evaluations,
        converged=converged,
        reason=reason,
        seconds=problem.seconds(),
        partial=partial,
        affine=outcome.affine,
        verified=outcome.verified,
    )
