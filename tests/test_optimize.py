"""Optimisation: goal-seek, SLSQP and differential evolution on problems with known answers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from livecalc.errors import ExecutionError
from livecalc.solver.optimize import OptimizationConfig, choose_algorithm, optimize

PREMIUM = "premium_multiplier"
MORTALITY = "mortality_multiplier"


class Recorder:
    """An evaluate function of the multipliers that records every point it is asked for."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self.calls: list[dict[str, float]] = []

    def __call__(self, overrides: Mapping[str, float]) -> Mapping[str, float]:
        self.calls.append(dict(overrides))
        p = overrides.get(PREMIUM, 1.0)
        m = overrides.get(MORTALITY, 1.0)
        return dict(self.metrics(p, m))


class TickingClock:
    """A clock that advances one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def config(**block: Any) -> OptimizationConfig:
    return OptimizationConfig.model_validate(block)


def goal(target: float = 0.0, **extra: Any) -> OptimizationConfig:
    return config(
        parameters=[{"name": PREMIUM, "bounds": [0.5, 2.0]}],
        objective={"metric": "mean", "direction": "target", "target": target},
        **extra,
    )


def affine_mean(p: float, m: float) -> dict[str, float]:
    return {"mean": 1000.0 * p - 800.0 * m}


class TestGoalSeek:
    def test_affine_metric_solved_in_three_evaluations(self) -> None:
        """An affine metric is solved by the secant through the bounds, verified by a third run."""

        ev = Recorder(affine_mean)

        r = optimize(goal(100.0), ev)

        assert 0.9 == pytest.approx(r.parameters[PREMIUM], rel=1e-12)
        assert (True, True, 3, 3) == (r.converged, r.affine, r.evaluations, len(ev.calls))
        assert "brentq" == r.algorithm

    @settings(max_examples=40, deadline=None)
    @given(
        st.floats(min_value=-1e6, max_value=1e6).filter(lambda a: abs(a) > 1e-3),
        st.floats(min_value=-1e6, max_value=1e6),
        st.floats(min_value=0.0, max_value=1.0),
    )
    @example(slope=0.015625, intercept=732422.0, where=0.03125)  # found by CI, kept
    def test_any_affine_metric_takes_three_evaluations(
        self, slope: float, intercept: float, where: float
    ) -> None:
        """For any affine metric and reachable target the root takes at most 3 evaluations,
        and is found to the objective's tolerance: 1e-9 x max(1, |target|, |metric|), so to
        tolerance / |slope| in the parameter (a nearly flat metric on a large intercept, e.g.
        slope 1/64 on 732,422, is met at 0.547 when the root is 0.5: both within 7e-4)."""

        root = 0.5 + 1.5 * where
        target = slope * root + intercept
        ev = Recorder(lambda p, m: {"mean": slope * p + intercept})

        r = optimize(goal(target), ev)

        found = r.parameters[PREMIUM]
        tolerance = 1e-9 * max(1.0, abs(target), *(abs(slope * x + intercept) for x in (0.5, 2.0)))
        assert r.converged
        assert r.evaluations <= 3
        assert abs(slope * found + intercept - target) <= tolerance * (1 + 1e-9)
        assert root == pytest.approx(found, rel=1e-6, abs=1e-9 + tolerance / abs(slope))

    def test_declared_affine_uses_two_evaluations(self) -> None:
        """affine: true trusts the line through the bounds: two evaluations, not verified."""

        ev = Recorder(affine_mean)

        r = optimize(goal(100.0, affine=True), ev)

        assert 0.9 == pytest.approx(r.parameters[PREMIUM], rel=1e-12)
        assert (2, False, True) == (r.evaluations, r.verified, r.converged)

    def test_nonlinear_metric_falls_back_to_brentq(self) -> None:
        """A cubic metric misses the secant and is solved by brentq within tolerance."""

        ev = Recorder(lambda p, m: {"mean": p**3})

        r = optimize(goal(2.0), ev)

        assert 2.0 ** (1 / 3) == pytest.approx(r.parameters[PREMIUM], rel=1e-9)
        assert abs(r.objective_value - 2.0) <= 1e-9 * 8.0
        assert r.converged and not r.affine
        assert len(ev.calls) == r.evaluations

    def test_affine_off_goes_straight_to_brentq(self) -> None:
        """affine: false skips the secant check and still hits the target."""

        r = optimize(goal(100.0, affine=False), Recorder(affine_mean))

        assert 0.9 == pytest.approx(r.parameters[PREMIUM], rel=1e-9)
        assert r.converged and not r.affine

    def test_jump_over_the_target_is_not_converged(self) -> None:
        """A metric that jumps over the target: brentq closes in on the jump, not converged."""

        r = optimize(goal(5.0), Recorder(lambda p, m: {"mean": 0.0 if p < 1.0 else 10.0}))

        assert not r.converged
        assert "exceeds the tolerance" in r.reason
        assert 1.0 == pytest.approx(r.parameters[PREMIUM], abs=1e-9)

    def test_unbracketed_target_is_reported(self) -> None:
        """A target outside the metric's range over the bounds does not converge and says so."""

        r = optimize(goal(5000.0), Recorder(affine_mean))

        assert not r.converged
        assert "not bracketed" in r.reason and "widen" in r.reason
        assert 2.0 == r.parameters[PREMIUM]

    def test_discrete_goal_seek_stays_on_the_grid(self) -> None:
        """A discrete parameter is only evaluated on its grid and ends at the closer grid point."""

        ev = Recorder(affine_mean)
        cfg = config(
            parameters=[{"name": PREMIUM, "bounds": [0.5, 1.5], "type": "discrete", "step": 0.05}],
            objective={"metric": "mean", "direction": "target", "target": 13.0},
        )

        r = optimize(cfg, ev)

        grid = {round(0.5 + k * 0.05, 12) for k in range(21)}
        assert 0.8 == r.parameters[PREMIUM]
        assert r.converged
        assert all(c[PREMIUM] in grid for c in ev.calls)


class TestSlsqp:
    def test_unconstrained_quadratic(self) -> None:
        """SLSQP finds the minimum of a quadratic bowl in two parameters."""

        ev = Recorder(lambda p, m: {"mean": (p - 0.7) ** 2 + (m - 1.3) ** 2})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
        )

        r = optimize(cfg, ev)

        assert "slsqp" == r.algorithm
        assert [0.7, 1.3] == pytest.approx(list(r.parameters.values()), abs=1e-5)
        assert r.converged and r.evaluations == len(ev.calls)

    def test_inequality_constraint_binds(self) -> None:
        """With p + m <= 1.5 the minimum moves to the constraint, which holds at the result."""

        ev = Recorder(lambda p, m: {"mean": (p - 0.7) ** 2 + (m - 1.3) ** 2, "std": p + m})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            constraints=[{"metric": "std", "operator": "<=", "value": 1.5}],
        )

        r = optimize(cfg, ev)

        assert [0.45, 1.05] == pytest.approx(list(r.parameters.values()), abs=1e-5)
        assert r.converged
        assert [True] == [c["ok"] for c in r.constraints]
        assert [] == r.as_dict()["constraint_violations"]

    def test_strict_and_equality_constraints(self) -> None:
        """Maximising p with p < 1.2 ends just inside; p + m == 1.5 holds within tolerance."""

        ev = Recorder(lambda p, m: {"mean": p, "std": p + m})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "maximize"},
            constraints=[
                {"metric": "mean", "operator": "<", "value": 1.2, "tolerance": 1e-6},
                {"metric": "std", "operator": "==", "value": 1.5, "tolerance": 1e-6},
            ],
        )

        r = optimize(cfg, ev)

        p, m = r.parameters[PREMIUM], r.parameters[MORTALITY]
        assert p < 1.2
        assert 1.2 == pytest.approx(p, abs=1e-5)
        assert abs(p + m - 1.5) <= 1e-6
        assert r.converged

    def test_infeasible_constraint_is_reported(self) -> None:
        """A constraint no point can meet leaves converged False and lists the violation."""

        ev = Recorder(lambda p, m: {"mean": p, "std": p + m})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            constraints=[{"metric": "std", "operator": ">=", "value": 5.0}],
        )

        r = optimize(cfg, ev)

        assert not r.converged
        assert ["std >= 5: actual 4"] == r.as_dict()["constraint_violations"]
        assert 1.0 == pytest.approx(r.constraints[0]["violation"], abs=1e-6)

    def test_infeasible_constraint_says_it_cannot_be_met(self) -> None:
        """The reason names the constraint that cannot be met and the closest value reached,
        not SLSQP's "Positive directional derivative for linesearch"."""
        ev = Recorder(lambda p, m: {"mean": p, "std": p + m})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            constraints=[{"metric": "std", "operator": ">=", "value": 5.0}],
        )

        r = optimize(cfg, ev)

        assert r.reason.startswith(
            "constraint std >= 5 cannot be met within the parameter bounds (none of the "
        )
        assert (
            "the closest value reached is std = 4 (at premium_multiplier = 2, "
            "mortality_multiplier = 2); relax the constraint or widen the bounds"
        ) in r.reason

    def test_closest_value_is_found_when_the_algorithm_gives_up_early(self) -> None:
        """A constraint far out of reach: SLSQP stops at once, and the bounds' corners give
        the closest value the metric can reach."""
        ev = Recorder(lambda p, m: {"mean": 1000.0 * p})
        cfg = config(
            algorithm="slsqp",
            parameters=[{"name": PREMIUM, "bounds": [0.5, 2.0]}],
            objective={"metric": "mean", "direction": "minimize"},
            constraints=[{"metric": "mean", "operator": ">=", "value": 1e15}],
        )

        r = optimize(cfg, ev)

        assert not r.converged
        assert "the closest value reached is mean = 2000 (at premium_multiplier = 2)" in r.reason
        assert 2.0 == r.parameters[PREMIUM]

    def test_constraint_tolerance_scales_with_the_metric(self) -> None:
        """A CTE constraint on a 1e8 portfolio holds at SLSQP's answer (QA regression)."""

        rng = np.random.default_rng(0)
        a, b, c = rng.uniform(0.8, 1.2, 200), rng.uniform(0.1, 0.3, 200), rng.normal(1, 0.2, 200)

        def metrics(p: float, m: float) -> dict[str, float]:
            values = 1e8 * (a * p - b * m * m - c)
            worst = np.sort(values)[:10]  # the 5% lowest of 200 scenarios
            return {"mean": float(values.mean()), "cte_95": float(worst.mean())}

        ev = Recorder(metrics)
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.5, 5.0]},
                {"name": MORTALITY, "bounds": [0.8, 1.2]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            constraints=[{"metric": "cte_95", "operator": ">=", "value": 0.0}],
        )

        r = optimize(cfg, ev)

        start = metrics(1.0, 1.0)["cte_95"]
        assert 1e-6 * abs(start) == r.constraints[0]["tolerance"]
        assert [True] == [c["ok"] for c in r.constraints]
        assert r.converged


class TestDifferentialEvolution:
    def test_mixed_discrete_and_continuous(self) -> None:
        """DE keeps the discrete parameter and every evaluation on its grid; finds the minimum."""

        ev = Recorder(lambda p, m: {"mean": (p - 0.73) ** 2 + (m - 1.21) ** 2})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0], "type": "discrete", "step": 0.1},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            max_iterations=60,
            seed=1,
        )

        r = optimize(cfg, ev)

        assert "differential_evolution" == r.algorithm
        assert 0.7 == r.parameters[PREMIUM]
        assert 1.21 == pytest.approx(r.parameters[MORTALITY], abs=1e-2)
        grid = {round(k * 0.1, 12) for k in range(21)}
        assert all(c[PREMIUM] in grid for c in ev.calls)
        assert r.evaluations == len(ev.calls)

    def test_constrained_target(self) -> None:
        """DE hits a target under a constraint: mean = 0.5 with p >= 0.6 on a p·m surface."""

        ev = Recorder(lambda p, m: {"mean": p * m, "std": p})
        cfg = config(
            algorithm="de",
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 1.0]},
                {"name": MORTALITY, "bounds": [0.0, 1.0]},
            ],
            objective={"metric": "mean", "direction": "target", "target": 0.5},
            constraints=[{"metric": "std", "operator": ">=", "value": 0.6}],
            max_iterations=80,
            seed=3,
        )

        r = optimize(cfg, ev)

        assert r.parameters[PREMIUM] >= 0.6 - 1e-6
        assert 0.5 == pytest.approx(r.objective_value, abs=1e-3)
        assert all(c["ok"] for c in r.constraints)


class TestBudgets:
    def test_timeout_returns_best_point_so_far(self) -> None:
        """Past timeout_seconds the search stops: partial, not converged, best point returned."""

        ev = Recorder(lambda p, m: {"mean": (p - 0.7) ** 2 + (m - 1.3) ** 2})
        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            timeout_seconds=6,
        )

        r = optimize(cfg, ev, clock=TickingClock())

        best = min(ev.calls, key=lambda c: (c[PREMIUM] - 0.7) ** 2 + (c[MORTALITY] - 1.3) ** 2)
        assert (True, False) == (r.partial, r.converged)
        assert "timeout" in r.reason
        assert 5 == r.evaluations
        assert best == r.parameters

    def test_timeout_before_any_evaluation(self) -> None:
        """A budget spent before the first evaluation returns the start point with no value."""

        r = optimize(goal(100.0, timeout_seconds=0.5), Recorder(affine_mean), clock=TickingClock())

        assert (True, None, 0) == (r.partial, r.objective_value, r.evaluations)
        assert {PREMIUM: 1.0} == r.parameters

    def test_max_evaluations(self) -> None:
        """max_evaluations caps the projection runs and flags the result partial."""

        ev = Recorder(lambda p, m: {"mean": p**3})

        r = optimize(goal(2.0, max_evaluations=4), ev)

        assert (4, 4, True, False) == (r.evaluations, len(ev.calls), r.partial, r.converged)
        assert "max_evaluations=4" in r.reason

    def test_budget_stops_differential_evolution(self) -> None:
        """A budget spent inside DE's population stops it with the best member so far."""

        ev = Recorder(lambda p, m: {"mean": (p - 0.7) ** 2 + (m - 1.3) ** 2})
        cfg = config(
            algorithm="differential_evolution",
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            max_evaluations=25,
        )

        r = optimize(cfg, ev)

        best = min(ev.calls, key=lambda c: (c[PREMIUM] - 0.7) ** 2 + (c[MORTALITY] - 1.3) ** 2)
        assert (25, True, False) == (r.evaluations, r.partial, r.converged)
        assert best == r.parameters

    def test_non_finite_metric_is_an_error(self) -> None:
        """A NaN objective stops the search with an ExecutionError naming the point."""

        ev = Recorder(lambda p, m: {"mean": math.nan})

        with pytest.raises(ExecutionError, match="gives mean = nan"):
            optimize(goal(1.0), ev)

    def test_max_iterations_stops_differential_evolution(self) -> None:
        """DE stopped by max_iterations reports it is not converged."""

        ev = Recorder(lambda p, m: {"mean": math.sin(7 * p) * math.cos(5 * m)})
        cfg = config(
            algorithm="differential_evolution",
            parameters=[
                {"name": PREMIUM, "bounds": [0.0, 2.0]},
                {"name": MORTALITY, "bounds": [0.0, 2.0]},
            ],
            objective={"metric": "mean", "direction": "minimize"},
            max_iterations=2,
        )

        r = optimize(cfg, ev)

        assert not r.converged
        assert "Maximum number of iterations" in r.reason
        assert 2 == r.iterations


class TestOptimizationConfig:
    @pytest.mark.parametrize(
        ("block", "fragment"),
        [
            ({"parameters": [{"name": "premium", "bounds": [0, 1]}]}, "not a projection parameter"),
            ({"parameters": [{"name": PREMIUM, "bounds": [2, 1]}]}, "must be below upper"),
            ({"parameters": [{"name": PREMIUM, "bounds": [-1, 1]}]}, "cannot be negative"),
            (
                {"parameters": [{"name": PREMIUM, "bounds": [0, 1], "type": "discrete"}]},
                "needs 'step'",
            ),
            ({"parameters": [{"name": PREMIUM, "bounds": [0, 1], "step": 0.1}]}, "set type"),
            ({"parameters": [{"name": PREMIUM, "bounds": [0, 1], "initial": 3}]}, "outside"),
            ({"parameters": [{"name": PREMIUM, "bounds": [0, 1], "colour": 1}]}, "Extra inputs"),
            ({"objective": {"metric": "mean", "direction": "target"}}, "needs 'target'"),
            ({"objective": {"metric": "mean", "direction": "max", "target": 1}}, "applies to"),
            ({"objective": {"metric": "mean", "direction": "target", "target": "x"}}, "am://"),
            ({"algorithm": "brentq", "objective": {"metric": "mean", "direction": "min"}}, "one"),
            (
                {"affine": True, "constraints": [{"metric": "std", "operator": ">=", "value": 0}]},
                "affine: true",
            ),
            ({"constraints": [{"metric": "std", "operator": "=>", "value": 0}]}, "'>='"),
        ],
    )
    def test_bad_blocks_are_refused(self, block: dict[str, Any], fragment: str) -> None:
        """Each malformed block raises a validation error that names the problem and the fix."""

        full = {
            "parameters": [{"name": PREMIUM, "bounds": [0.5, 2.0]}],
            "objective": {"metric": "mean", "direction": "target", "target": 0},
            **block,
        }

        with pytest.raises(ValidationError, match=fragment):
            OptimizationConfig.model_validate(full)

    def test_references_resolve_through_lookup(self) -> None:
        """am:// targets and values are replaced by lookup(ref, row name)."""

        cfg = config(
            parameters=[
                {"name": PREMIUM, "bounds": [0.5, 2.0]},
                {"name": MORTALITY, "bounds": [0.5, 2.0]},
            ],
            objective={"metric": "mean", "direction": "target", "target": "am://t@v1"},
            constraints=[
                {"metric": "std", "operator": "<=", "value": "am://t@v1", "value_name": "cap"}
            ],
        )
        rows = {("am://t@v1", "mean"): 3.0, ("am://t@v1", "cap"): 4.0}

        resolved = cfg.resolved(lambda ref, row: rows[(ref, row)])

        assert (3.0, 4.0) == (resolved.objective.target, resolved.constraints[0].value)

    def test_auto_algorithm(self) -> None:
        """auto: brentq for a one-parameter target, DE with a discrete parameter, else SLSQP."""

        two = [{"name": PREMIUM, "bounds": [0, 1]}, {"name": MORTALITY, "bounds": [0, 1]}]
        disc = [{"name": PREMIUM, "bounds": [0, 1], "type": "discrete", "step": 0.5}]
        minimise = {"metric": "mean", "direction": "minimize"}

        assert "brentq" == choose_algorithm(goal())
        assert "slsqp" == choose_algorithm(config(parameters=two, objective=minimise))
        assert "differential_evolution" == choose_algorithm(
            config(parameters=disc, objective=minimise)
        )
