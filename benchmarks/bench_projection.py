"""Projection engine benchmark: numba kernels beside the plain-numpy implementation.

Run: ``.venv/bin/python benchmarks/bench_projection.py [--quick]``

Cases (issue 3):
- W1: 10,000 policies x 1,000 scenarios, annual steps, terms up to 50 years, with dynamic
  lapses (full kernel) and without (separable path; the full kernel too, for comparison);
- a monthly deterministic run of 10,000 in-force model points with terms up to 20 years;
- JIT compile time on a cold numba cache (a subprocess with an empty NUMBA_CACHE_DIR), and the
  start-up time with that cache warm.

Times are the best of a few repeats, output buffers allocated once and reused. The numpy
baseline of the per-scenario model is slow, so it runs on a subset of policies and is compared
per policy-scenario pair. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from livecalc.engines.projection import ProjectionEngine, scenario_matrix
from livecalc.kernels.projection_basis import OutputMode, prepare_chunk
from livecalc.kernels.projection_numpy import project_numpy
from livecalc.runtime.buffers import POLICY_DTYPE, POLICY_EXT_DTYPE, SCENARIO_DTYPE

DYNAMIC = {"reference_rate": 0.03, "sensitivity": 10.0, "min_factor": 0.5, "max_factor": 2.5}


def w1_policies(n: int, seed: int = 1) -> np.ndarray:
    """Seeded policies: ages 20-65, terms 5-50 (within age 120), the three products."""
    rng = np.random.default_rng(seed)
    pol = np.zeros(n, dtype=POLICY_DTYPE)
    pol["policy_id"] = np.arange(n)
    pol["age"] = rng.integers(20, 66, n)
    pol["gender"] = rng.integers(0, 2, n)
    pol["underwriting_class"] = rng.integers(0, 2, n)
    pol["product_type"] = rng.integers(0, 3, n)
    pol["term"] = np.minimum(rng.integers(5, 51, n), 120 - pol["age"])
    pol["sum_assured"] = rng.uniform(10_000, 1_000_000, n)
    pol["premium"] = pol["sum_assured"] * rng.uniform(0.005, 0.03, n)
    return pol


def w1_scenarios(n_scen: int, years: int = 50, seed: int = 2) -> np.ndarray:
    """Seeded mean-reverting one-year forward rates, sorted by scenario then year."""
    rng = np.random.default_rng(seed)
    rates = np.empty((n_scen, years))
    r = np.full(n_scen, 0.03)
    for y in range(years):
        r = r + 0.2 * (0.035 - r) + 0.008 * rng.standard_normal(n_scen)
        rates[:, y] = r
    scen = np.zeros(n_scen * years, dtype=SCENARIO_DTYPE)
    scen["scenario_id"] = np.repeat(np.arange(n_scen), years)
    scen["year"] = np.tile(np.arange(1, years + 1), n_scen)
    scen["rate"] = rates.reshape(-1)
    return scen


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def compare(
    label: str,
    config: dict[str, Any],
    inputs: dict[str, np.ndarray],
    numpy_policies: int,
    repeats: int,
) -> None:
    """Time the engine on ``inputs`` and the numpy twin on the first ``numpy_policies``."""
    eng = ProjectionEngine()
    eng.initialize(config)
    spec = eng.output_spec(inputs)
    out = np.empty(spec.records, dtype=spec.dtype)
    pol = inputs["policies"]
    n_scen = spec.records // len(pol) if eng.output_mode is OutputMode.NPV else 1
    if "scenarios" in inputs:
        n_scen = len(scenario_matrix(inputs["scenarios"])[1])
    t_numba = best_of(lambda: eng.run_chunk(inputs, out), repeats)
    pairs = len(pol) * n_scen

    sub = {k: v[:numpy_policies] if k != "scenarios" else v for k, v in inputs.items()}
    basis = eng._basis  # the same assumptions the engine loaded
    assert basis is not None
    mode = eng.output_mode
    separable = eng.get_outputs()["method"] == "separable"
    sub_out = np.empty(mode.records(numpy_policies, n_scen), dtype=mode.dtype)

    def numpy_run() -> None:
        rates, ids = eng._scenarios(sub.get("scenarios"))
        chunk = prepare_chunk(basis, sub["policies"], sub.get("extension"), rates, ids)
        project_numpy(chunk, basis, mode, sub_out, separable)

    t_numpy = best_of(numpy_run, 1)
    numpy_rate = numpy_policies * n_scen / t_numpy
    numba_rate = pairs / t_numba
    path = "separable" if separable else "full kernel"
    print(
        f"{label:<44} {path:<11} numba {t_numba:8.4f} s {numba_rate / 1e6:9.1f} M pairs/s | "
        f"numpy {numpy_rate / 1e6:7.2f} M pairs/s ({numpy_policies} policies) | "
        f"x{numba_rate / numpy_rate:6.1f}"
    )


_COLD_SCRIPT = """
import time
start = time.perf_counter()
import numpy as np
from livecalc.engines.projection import ProjectionEngine
from livecalc.runtime.buffers import POLICY_DTYPE
imported = time.perf_counter()
pol = np.zeros(4, dtype=POLICY_DTYPE)
pol["age"] = 40; pol["term"] = 10; pol["product_type"] = [0, 1, 2, 2]
for cfg in ({}, {"method": "full", "output": "detail"},
            {"dynamic_lapse": {"reference_rate": 0.03, "sensitivity": 5.0}, "output": "detail"}):
    eng = ProjectionEngine(); eng.initialize(cfg)
    spec = eng.output_spec({"p": pol}); out = np.empty(spec.records, spec.dtype)
    eng.run_chunk(pol, out)
print(f"{imported - start:.2f} {time.perf_counter() - imported:.2f}")
"""


def compile_times() -> None:
    """First-run times in fresh processes: cold numba cache, then the same cache warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold cache (compiles)", "warm cache (loads)"):
            done = subprocess.run(
                [sys.executable, "-c", _COLD_SCRIPT],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            imported, first = done.stdout.split()
            print(f"JIT {label:<24} import {imported} s, first runs of every path {first} s")


def main() -> None:
    """Run every case and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    n_pol, n_scen, repeats = (1_000, 100, 1) if args.quick else (10_000, 1_000, 3)
    print(f"numba threads: {os.environ.get('NUMBA_NUM_THREADS', 'default')}, cpus {os.cpu_count()}")
    w1 = {"policies": w1_policies(n_pol), "scenarios": w1_scenarios(n_scen)}
    sub = max(1, n_pol // 20)
    title = f"W1 {n_pol} x {n_scen}"
    compare(f"{title} dynamic lapses, npv", {"dynamic_lapse": DYNAMIC}, w1, sub, repeats)
    compare(f"{title} no dynamic lapses, npv", {}, w1, n_pol, repeats)
    compare(f"{title} no dynamic lapses, npv", {"method": "full"}, w1, sub, repeats)
    compare(f"{title} no dynamic lapses, detail", {"output": "detail"}, w1, n_pol, repeats)
    compare(f"{title} scenario totals", {"output": "scenario_totals"}, w1, n_pol, repeats)

    rng = np.random.default_rng(3)
    mp = w1_policies(n_pol, seed=4)
    mp["term"] = np.minimum(rng.integers(1, 21, n_pol), 120 - mp["age"])
    ext = np.zeros(n_pol, dtype=POLICY_EXT_DTYPE)
    ext["policy_id"] = mp["policy_id"]
    ext["duration_months"] = rng.integers(0, 12 * mp["term"].astype(np.int64))
    ext["policy_count"] = rng.integers(1, 500, n_pol)
    monthly = {"time_step": "monthly", "premium_frequency": "monthly", "output": "detail"}
    compare(
        f"monthly deterministic {n_pol} model points",
        monthly,
        {"policies": mp, "extension": ext},
        n_pol,
        repeats,
    )
    compile_times()


if __name__ == "__main__":
    main()
