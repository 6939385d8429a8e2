"""Solver benchmark: risk measures on W1-sized results, and goal-seeks through the projection.

Run: ``.venv/bin/python benchmarks/bench_solver.py [--quick]``

Cases:
- (a) risk measures on 10M RESULT records (10,000 policies x 1,000 scenarios): LiveCalc's
  ``scenario_values`` + ``compute_metrics`` (standard metrics, VaR and CTE at several levels,
  one basis), and the whole ``SolverEngine.run_chunk`` (both bases, as the solver reports
  them), against a plain-numpy baseline in the same run: ``np.bincount`` per scenario, one
  ``np.sort``, percentiles by index and CTE as a tail mean.
- (b) goal-seeks by the ``SolverEngine`` bound to the real ``ProjectionEngine`` on W1 data
  (10,000 generated policies, 1,000 ESG scenarios, ``scenario_totals`` output), once on the
  projection's "auto" method (the separable path) and once on "full" (the per-scenario kernel
  that dynamic lapses need): premium multiplier for mean NPV = 0 with affinity "auto" (the
  verified secant), declared (``affine: true``, two evaluations) and off (``affine: false``,
  plain brentq), and a mortality multiplier goal-seek (not affine: brentq). One projection
  run is timed as the baseline, so the overhead of the search over its evaluations shows.

Times are the best of a few repeats for (a) and one run for (b) (each goal-seek is itself
several projection runs). The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from livecalc.engines.projection import ProjectionEngine
from livecalc.engines.solver import SolverEngine
from livecalc.io.generate import generate_policies, generate_scenarios
from livecalc.runtime.buffers import RESULT_DTYPE
from livecalc.solver.optimize import PARAMETER_NAMES
from livecalc.solver.risk import compute_metrics, scenario_values

LEVELS = (0.70, 0.95, 0.98, 0.995)
NEUTRAL = dict.fromkeys(PARAMETER_NAMES, 1.0)
METRICS = ["var_95", "var_99_5", "cte_70", "cte_95", "cte_98", "cte_99_5"]


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` timed calls (after one untimed warm-up) and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def result_records(n_policies: int, n_scenarios: int, seed: int = 3) -> np.ndarray:
    """RESULT records, scenario-major as the projection writes them, with random NPVs."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n_policies * n_scenarios, RESULT_DTYPE)
    out["scenario_id"] = np.repeat(np.arange(n_scenarios, dtype=np.uint32), n_policies)
    out["policy_id"] = np.tile(np.arange(n_policies, dtype=np.uint32), n_scenarios)
    # A per-scenario shift, so the scenario totals spread out as real ones do.
    shift = np.repeat(rng.normal(0.0, 50.0, n_scenarios), n_policies)
    out["npv"] = rng.normal(100.0, 1_000.0, out.size) + shift
    return out


def numpy_measures(records: np.ndarray) -> dict[str, float]:
    """The baseline: portfolio value per scenario by bincount, then one sort and tail means."""
    totals = np.bincount(records["scenario_id"], weights=records["npv"])
    x = np.sort(totals)
    n = x.size
    out = {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)),
        "min": float(x[0]),
        "max": float(x[-1]),
    }
    for q in (0.5, 0.75, 0.9, 0.95, 0.99, 0.995):
        out[f"p{q * 100:g}".replace(".", "_")] = float(x[max(1, math.ceil(round(q * n, 9))) - 1])
    losses = -x[::-1]
    for a in LEVELS:
        k = max(1, math.ceil(round(a * n, 9)))
        out[f"var_{a * 100:g}".replace(".", "_")] = -float(losses[k - 1])
        tail = ((k / n - a) * losses[k - 1] + losses[k:].sum() / n) / (1.0 - a)
        out[f"cte_{a * 100:g}".replace(".", "_")] = -float(tail)
    return out


def livecalc_measures(records: np.ndarray) -> dict[str, float]:
    """LiveCalc's path: ``scenario_values`` then ``compute_metrics`` on the npv basis."""
    return compute_metrics(scenario_values(records).npv, METRICS, "npv")


def solver_run(records: np.ndarray) -> dict[str, float]:
    """The whole solver engine: both bases, prefixed names, the output dict."""
    solver = SolverEngine()
    solver.initialize({"metrics": METRICS})
    solver.run_chunk({"results": records}, None)
    metrics: dict[str, float] = solver.get_outputs()["metrics"]
    return metrics


def bench_risk(n_policies: int, n_scenarios: int, repeats: int) -> None:
    """Case (a): risk measures of n_policies x n_scenarios RESULT records."""
    records = result_records(n_policies, n_scenarios)
    n = records.size
    print(f"(a) risk measures: {n:,} RESULT records, {n_scenarios:,} scenarios")
    base_s, base = best_of(lambda: numpy_measures(records), repeats)
    ours_s, ours = best_of(lambda: livecalc_measures(records), repeats)
    solver_s, _ = best_of(lambda: solver_run(records), repeats)
    worst = max(abs(ours[k] - base[k]) / max(1.0, abs(base[k])) for k in METRICS)
    for label, secs in (
        ("numpy baseline (bincount + sort)", base_s),
        ("scenario_values + compute_metrics", ours_s),
        ("SolverEngine.run_chunk (both bases)", solver_s),
    ):
        print(
            f"  {label:<38} {secs:8.3f} s  {n / secs / 1e6:8.1f} M records/s  "
            f"x{base_s / secs:5.2f} of baseline speed"
        )
    print(f"  largest relative difference of VaR/CTE from the baseline: {worst:.1e}")


class ProjectionEvaluator:
    """What the runner binds: ``set_parameters`` on the projection, re-run, return the records."""

    def __init__(self, policies: np.ndarray, scenarios: np.ndarray, method: str) -> None:
        self.engine = ProjectionEngine()
        self.engine.initialize({"output": "scenario_totals", "method": method})
        self.inputs = {"policies": policies, "scenarios": scenarios}
        spec = self.engine.output_spec(self.inputs)
        self.out = np.zeros(spec.records, spec.dtype)
        self.calls = 0

    def __call__(self, overrides: Mapping[str, float]) -> np.ndarray:
        self.calls += 1
        # Every run starts from the neutral multipliers, as the runner restores them after a
        # solver run: one case's search must not leave its parameter set for the next.
        self.engine.set_parameters({**NEUTRAL, **overrides})
        self.engine.run_chunk(self.inputs, self.out)
        return self.out.copy()

    def mean_npv(self, **overrides: float) -> float:
        """Mean portfolio NPV over the scenarios at these multipliers."""
        return float(scenario_values(self(overrides)).npv.mean())


def goal_seek(
    evaluator: ProjectionEvaluator, name: str, bounds: list[float], target: float, affine: Any
) -> tuple[dict[str, Any], float]:
    """Run the solver's goal-seek of mean NPV = target over ``name``; (solution, seconds)."""
    solver = SolverEngine()
    solver.initialize(
        {
            "metrics": [],
            "optimization": {
                "parameters": [{"name": name, "bounds": bounds}],
                "objective": {"metric": "mean", "direction": "target", "target": target},
                "affine": affine,
            },
        }
    )
    solver.bind_evaluator(evaluator)
    base = evaluator({name: 1.0})
    start = time.perf_counter()
    solver.run_chunk({"results": base}, None)
    seconds = time.perf_counter() - start
    solution: dict[str, Any] = solver.get_outputs()["optimization"]
    return solution, seconds


def bench_goal_seek(n_policies: int, n_scenarios: int, method: str) -> None:
    """Case (b): goal-seeks through the real projection on n_policies x n_scenarios."""
    policies = generate_policies(n_policies, seed=1).records
    scenarios = generate_scenarios(n_scenarios, years=50, seed=2).records
    evaluator = ProjectionEvaluator(policies, scenarios, method)
    run_s, _ = best_of(lambda: evaluator({"premium_multiplier": 1.0}), 3)
    print(
        f"(b) goal-seek through the projection: {n_policies:,} policies x {n_scenarios:,} "
        f"scenarios, scenario_totals output, method {method!r} "
        f"(ran {evaluator.engine.get_outputs()['method']!r})"
    )
    print(f"  one projection run (baseline)        {run_s:8.3f} s")
    base = evaluator.mean_npv(mortality_multiplier=1.0)
    low = evaluator.mean_npv(mortality_multiplier=0.5)
    cases = [
        ("premium, affine auto", "premium_multiplier", [0.2, 5.0], 0.0, "auto"),
        ("premium, affine true", "premium_multiplier", [0.2, 5.0], 0.0, True),
        ("premium, affine false (brentq)", "premium_multiplier", [0.2, 5.0], 0.0, False),
        ("mortality, affine auto", "mortality_multiplier", [0.5, 1.0], (base + low) / 2, "auto"),
    ]
    print(
        f"  {'case':<32} {'param':>10} {'evals':>5} {'iters':>5} {'conv':>5} "
        f"{'objective':>14} {'target':>14} {'seconds':>8} {'s/eval':>7} {'x one run':>9}"
    )
    for label, name, bounds, target, affine in cases:
        sol, secs = goal_seek(evaluator, name, bounds, target, affine)
        print(
            f"  {label:<32} {sol['parameters'][name]:10.6f} {sol['evaluations']:5d} "
            f"{sol['iterations']:5d} {sol['converged']!s:>5} {sol['objective_value']:14.6g} "
            f"{target:14.6g} {secs:8.3f} {secs / sol['evaluations']:7.3f} {secs / run_s:9.1f}"
        )
        print(f"    reason: {sol['reason']}")


def main() -> None:
    """Parse the flags and run both cases."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 policies and 100 scenarios (a smoke run)"
    )
    args = parser.parse_args()
    n_policies, n_scenarios, repeats = (1_000, 100, 1) if args.quick else (10_000, 1_000, 3)
    bench_risk(n_policies, n_scenarios, repeats)
    # "auto" takes the separable path (scenario totals from per-policy cash flows discounted
    # once per scenario); "full" runs the per-scenario kernel, as dynamic lapses require.
    for method in ("auto", "full"):
        bench_goal_seek(n_policies, n_scenarios, method)


if __name__ == "__main__":
    main()
