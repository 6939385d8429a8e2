"""Optimisation of projection parameters: goal-seek (brentq), SLSQP and differential evolution.

``optimize(config, evaluate)`` searches the parameters of ``config`` (premium, mortality, lapse
and expense multipliers) for the best value of an objective metric under constraints, where
``evaluate(overrides)`` re-runs the projection with those overrides and returns the metrics.
Each distinct point is evaluated once: a cache shares it between the objective, the constraints
and the algorithms' finite differences. Before every evaluation the time and evaluation budgets
are checked; once one is spent the search stops and returns the best point so far, flagged
partial. The config models live in ``livecalc.solver._optconfig``, the evaluation cache and
budgets in ``livecalc.solver._optproblem`` and the goal-seek in ``livecalc.solver._goalseek``;
this module re-exports their public names and holds SLSQP, differential evolution and
``optimize`` itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize as sopt

# Names imported as "X as X" were importable from this module before the split: explicit
# re-exports (for mypy --strict) that stay out of __all__.
from livecalc.solver._goalseek import goal_seek
from livecalc.solver._optconfig import AM_REFERENCE as AM_REFERENCE
from livecalc.solver._optconfig import (
    PARAMETER_NAMES,
    ConstraintConfig,
    ObjectiveConfig,
    OptimizationConfig,
    ParameterConfig,
    choose_algorithm,
)
from livecalc.solver._optconfig import TABLE_SUFFIXES as TABLE_SUFFIXES
from livecalc.solver._optconfig import AutoOrBool as AutoOrBool
from livecalc.solver._optconfig import Finite as Finite
from livecalc.solver._optconfig import NumberOrRef as NumberOrRef
from livecalc.solver._optconfig import Positive as Positive
from livecalc.solver._optproblem import Evaluate as Evaluate
from livecalc.solver._optproblem import Outcome, Problem, Stop
from livecalc.solver._optproblem import Point as Point

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
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every evaluation in order: its parameters and objective value (convergence charts)."""

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
            "history": [dict(h) for h in self.history],
        }


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


def _scales(problem: Problem, x0: Sequence[float]) -> tuple[float, list[float]]:
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


def _objective_fn(problem: Problem, scale: float) -> Callable[[Sequence[float]], float]:
    direction = problem.cfg.objective.direction

    def fun(x: Sequence[float]) -> float:
        value = problem.at(x).value
        if direction == "target":
            return ((value - problem.target) / scale) ** 2
        return (-value if direction == "maximize" else value) / scale

    return fun


def _slsqp(problem: Problem) -> Outcome:
    """SLSQP from the initial point; discrete parameters relaxed, then snapped to the grid."""
    cfg = problem.cfg
    x0 = [p.start for p in cfg.parameters]
    scale, c_scales = _scales(problem, x0)
    constraints = [
        {
            "type": "eq" if c.operator == "==" else "ineq",
            "fun": lambda x, c=c, s=s, t=t: c.slack(problem.at(list(x)).metrics[c.metric], s, t),
        }
        for c, s, t in zip(cfg.constraints, c_scales, problem.constraint_tolerances, strict=True)
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
    return Outcome(point, bool(res.success), f"SLSQP: {res.message}")


def _differential_evolution(problem: Problem) -> Outcome:
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
            lambda z, c=c, s=s, t=t: c.slack(problem.at(to_params(z)).metrics[c.metric], s, t),
            -t / s if c.operator == "==" else 0.0,
            t / s if c.operator == "==" else np.inf,
        )
        for c, s, t in zip(cfg.constraints, c_scales, problem.constraint_tolerances, strict=True)
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
    return Outcome(point, bool(res.success), f"differential evolution: {res.message}")


def _probe_corners(problem: Problem, point: Point) -> Point:
    """The best-ranked point after also evaluating the corners of the bounds (up to 4
    parameters: 16 corners), while the budget lasts.

    Run when the algorithm ends outside the constraints: a monotone metric (the usual case for
    multipliers) reaches its extremes at the corners, so the report of the closest value
    reached does not depend on where the algorithm gave up, and a feasible corner is found.
    """
    params = problem.cfg.parameters
    if len(params) > 4:
        return point
    ends = [
        (p.on_grid(0), p.on_grid(p.grid_max)) if p.type == "discrete" else p.bounds for p in params
    ]
    corners: list[list[float]] = [[]]
    for low, high in ends:
        corners = [[*c, v] for c in corners for v in (low, high)]
    try:
        for corner in corners:
            problem.at(corner)
    except Stop:
        pass  # the budget is spent: report on what was evaluated
    assert problem.best is not None
    return min(point, problem.best, key=lambda q: q.rank)


def _unmet_reason(
    problem: Problem, checks: list[dict[str, Any]], algorithm_reason: str, partial: bool
) -> str:
    """Why the result breaks a constraint, in the user's terms: which constraint, and the
    closest its metric came over every point evaluated (and where), instead of the
    algorithm's own words ("Positive directional derivative for linesearch")."""
    lines = []
    tolerances = problem.constraint_tolerances
    for i, (c, check) in enumerate(zip(problem.cfg.constraints, checks, strict=True)):
        if check["ok"]:
            continue
        closest = min(
            problem.cache.values(), key=lambda q: c.check(q.metrics[c.metric], tolerances[i])[1]
        )
        at = ", ".join(f"{n} = {v:g}" for n, v in zip(problem.names, closest.params, strict=True))
        what = f"constraint {c.metric} {c.operator} {float(c.value):g}"
        value = f"{c.metric} = {closest.metrics[c.metric]:g} (at {at})"
        if c.check(closest.metrics[c.metric], tolerances[i])[0]:
            lines.append(f"{what} is not met at the result, though it holds at {value}")
        elif partial:
            lines.append(
                f"{what} is not met at any of the {problem.evaluations} points evaluated before "
                f"the search stopped: the closest value reached is {value}"
            )
        else:
            lines.append(
                f"{what} cannot be met within the parameter bounds (none of the "
                f"{problem.evaluations} points evaluated meets it): the closest value reached "
                f"is {value}"
            )
    fix = "relax the constraint or widen the bounds" if not partial else "raise the budget"
    return f"{'; '.join(lines)}; {fix} ({algorithm_reason})"


_ALGORITHMS = {
    "brentq": goal_seek,
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
    problem = Problem(config, evaluate, clock)
    algorithm = choose_algorithm(config)
    partial = False
    try:
        outcome = _ALGORITHMS[algorithm](problem)
    except Stop as stop:
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
        outcome = Outcome(problem.best, False, str(stop))
    point = outcome.point
    probed = False
    if not partial and not point.feasible and config.constraints:
        point, probed = _probe_corners(problem, point), True
    checks = []
    for c, tol in zip(config.constraints, problem.constraint_tolerances, strict=True):
        actual = point.metrics[c.metric]
        ok, amount = c.check(actual, tol)
        checks.append(
            {
                "metric": c.metric,
                "operator": c.operator,
                "value": float(c.value),
                "tolerance": tol,
                "actual": actual,
                "ok": ok,
                "violation": amount,
                "description": f"{c.metric} {c.operator} {float(c.value):g}: actual {actual:g}",
            }
        )
    converged, reason = outcome.converged, outcome.reason
    if not all(c["ok"] for c in checks):
        converged, reason = False, _unmet_reason(problem, checks, reason, partial)
    elif probed:
        converged, reason = (
            False,
            (
                f"{reason}; the algorithm ended outside the constraints, so the best point "
                "that meets them among those evaluated (corners of the bounds included) is returned"
            ),
        )
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
        history=_history(problem),
    )


def _history(problem: Problem) -> list[dict[str, Any]]:
    # The cache keeps insertion order: the evaluations in the order they were made.
    return [
        {"parameters": dict(zip(problem.names, p.params, strict=True)), "objective": p.value}
        for p in problem.cache.values()
    ]
