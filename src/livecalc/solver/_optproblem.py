"""The optimiser's evaluation bookkeeping: a cache of evaluated points, the best, budgets.

``Problem.at`` is the one door to the projection: it clips a candidate to the bounds, answers
from the cache when it can, checks the time and evaluation budgets before a new evaluation and
ranks the result (feasible points first, then by objective score).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from livecalc.errors import ExecutionError
from livecalc.solver._optconfig import OptimizationConfig

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
class Outcome:
    point: Point
    converged: bool
    reason: str
    affine: bool = False
    verified: bool = True


class Stop(Exception):
    """The time or evaluation budget is spent; carries why."""


class Found(Exception):
    """A goal-seek evaluation hit the target within tolerance; stops brentq early."""


class Problem:
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
        self._constraint_tolerances: list[float] | None = None

    @property
    def evaluations(self) -> int:
        """Distinct points evaluated so far (cache hits are free)."""
        return len(self.cache)

    @property
    def tolerance(self) -> float:
        """Objective tolerance: configured, or 1e-9 × max(1, |target|, largest |metric| seen)."""
        if self.cfg.objective.tolerance is not None:
            return self.cfg.objective.tolerance
        return 1e-9 * max(1.0, abs(self.target), self._largest)

    @property
    def constraint_tolerances(self) -> list[float]:
        """Each constraint's tolerance: configured, or 1e-6 × max(1, |value|, |metric|) with
        the metric at the first point evaluated (fixed from then on, so that every point is
        judged alike)."""
        if self._constraint_tolerances is not None:
            return self._constraint_tolerances
        return [c.effective_tolerance for c in self.cfg.constraints]

    def score(self, value: float) -> float:
        """The objective value as a score to minimise (distance to the target for a goal)."""
        direction = self.cfg.objective.direction
        if direction == "maximize":
            return -value
        return value if direction == "minimize" else abs(value - self.target)

    def seconds(self) -> float:
        """Seconds since the search started, by the search's clock."""
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
            raise Stop(
                f"timeout: timeout_seconds={timeout:g} reached after {self.evaluations} "
                "evaluations; the best point so far is returned"
            )
        limit = self.cfg.max_evaluations
        if limit is not None and self.evaluations >= limit:
            raise Stop(f"max_evaluations={limit} reached; the best point so far is returned")
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
        if self._constraint_tolerances is None:
            self._constraint_tolerances = [
                c.tolerance_at(metrics[c.metric]) for c in self.cfg.constraints
            ]
        checks = [
            c.check(metrics[c.metric], tol)
            for c, tol in zip(self.cfg.constraints, self._constraint_tolerances, strict=True)
        ]
        point = Point(
            params=key,
            metrics=metrics,
            value=value,
            score=self.score(value),
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
