"""The solver's "optimization" config block: parameters, objective, constraints and limits.

Pydantic models that validate the block once, naming the field and the fix, plus
``choose_algorithm``, which reads the algorithm off a validated config. The search itself is
in ``livecalc.solver.optimize``, which re-exports these names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

PARAMETER_NAMES = (
    "premium_multiplier",
    "mortality_multiplier",
    "lapse_multiplier",
    "expense_multiplier",
)
"""The projection parameters a solver may vary (``set_parameters`` overrides)."""

MAX_MULTIPLIER = 1000.0
"""The largest multiplier the projection takes (livecalc.engines' sanity ranges say the same)."""

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
        if bounds[1] > MAX_MULTIPLIER:
            raise ValueError(
                f"upper bound {bounds[1]:g}: the projection takes multipliers up to "
                f"{MAX_MULTIPLIER:g}; lower it"
            )
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
        """``tolerance``, by default 1e-6 × max(1, |value|) (before any evaluation)."""
        return self.tolerance_at(0.0)

    def tolerance_at(self, start: float) -> float:
        """``tolerance``, by default 1e-6 × max(1, |value|, |start|).

        ``start`` is the metric at the search's first point: the optimisers work on the
        constraint scaled by that magnitude, so a fixed absolute tolerance would be finer
        than their precision on portfolio values of 1e8 and more.
        """
        if self.tolerance is not None:
            return self.tolerance
        value = abs(self.value) if isinstance(self.value, float) else 0.0
        return 1e-6 * max(1.0, value, abs(start))

    def check(self, actual: float, tol: float | None = None) -> tuple[bool, float]:
        """(satisfied, amount of violation >= 0) at the metric value ``actual``."""
        v = float(self.value)
        tol = self.effective_tolerance if tol is None else tol
        if self.operator in (">=", ">"):
            ok = actual >= v - tol if self.operator == ">=" else actual > v
            return ok, max(0.0, v - actual)
        if self.operator in ("<=", "<"):
            ok = actual <= v + tol if self.operator == "<=" else actual < v
            return ok, max(0.0, actual - v)
        return abs(actual - v) <= tol, abs(actual - v)

    def slack(self, actual: float, scale: float, tol: float | None = None) -> float:
        """The optimisers' form: >= 0 when satisfied (== constraints: 0 on the value).

        Strict constraints aim one tolerance inside, as the optimisers' inequalities are not
        strict.
        """
        v = float(self.value)
        tol = self.effective_tolerance if tol is None else tol
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
