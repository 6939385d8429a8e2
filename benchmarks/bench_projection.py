"""Projection engine benchmark: numba kernels beside the plain-numpy implementation.

Run: ``.venv/bin/python benchmarks/bench_projection.py [--quick]``

Cases (issue 3):
- W1: 10,000 policies x 1,000 scenarios, annual steps, terms up to 50 years, with dynamic
  lapses (full kernel) and without (separable path; the full kernel too, for comparison);
- a monthly deterministic run of 10,000 in-force model points with terms up to 20 years;
- issue 10: a deterministic monthly run of 10,000 new term policies (terms 10-20 years, 5-year
  select mortality, lapses by policy year, per-policy inflated expenses, first-year commission,
  step_spot discounting, equivalence premiums solved per policy), warm engine time against
  ``deterministic_numpy`` (the same model in vectorised numpy) in the same process, with the
  ratio and policy-months per second (medians of repeated warm calls; ``--monthly-only`` runs
  this case alone);
- issue 24: the same model end to end: a warm ``livecalc.run`` of it (policies read from
  Parquet, records kept in memory) with the run store on and off, against the engine's own time
  and the numpy implementation, medians of 7 warm calls in one process, store on and off
  alternating (``--end-to-end-only`` runs this case alone);
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
from livecalc.kernels.projection_numpy import deterministic_numpy, project_numpy
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


PEAK_FLOPS = 100e9
"""The nominal 2-core limit: two cores x 16 double-precision flops per cycle (two 256-bit FMA
units) x about 3 GHz (docs/engines/projection.md, "Speed")."""

FULL_NPV_FLOPS_PER_STEP = {True: 15, False: 13}
"""Flops per policy-scenario pair and step of the full kernel's NPV mode, with and without
dynamic lapses (the lapse ``min(1, w x factor)``: 2; deaths, lapses, lives left: 4; the
discounted net flow: 9)."""


def w1_limit(
    label: str, config: dict[str, Any], inputs: dict[str, np.ndarray], repeats: int
) -> None:
    """W1's NPV output against the machine's limit: flops and bytes per pair, the time the
    flops take at ``PEAK_FLOPS``, and the time to write the output records once (a fill of
    the same buffer, measured here), beside the kernel's time; all in this process."""
    eng = ProjectionEngine()
    eng.initialize(config)
    spec = eng.output_spec(inputs)
    out = np.empty(spec.records, dtype=spec.dtype)
    pol = inputs["policies"]
    n_scen = spec.records // len(pol)
    basis = eng._basis
    assert basis is not None
    t_kernel = median_of(lambda: eng.run_chunk(inputs, out), repeats)
    words = out.view(np.uint64)  # records of 24 bytes: three words each
    t_write = median_of(lambda: words.fill(0), repeats)
    steps = float(np.mean(pol["term"]))  # annual steps: one per policy year
    if eng.get_outputs()["method"] == "separable":
        # One multiply-add per grid point that carries a flow, per scenario.
        flops = 2.0 * (steps * basis.grid_per_step + 1)
    else:
        flops = FULL_NPV_FLOPS_PER_STEP[basis.dynamic_lapse] * steps + 3.0
    pairs = len(pol) * n_scen
    t_flops = flops * pairs / PEAK_FLOPS
    limit = max(t_flops, t_write)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{label:<44} {eng.get_outputs()['method']:<9} {t_kernel:7.4f} s (median) | "
        f"{flops:.0f} flops and {out.itemsize} bytes written per pair: flops at 100 GFLOP/s "
        f"{t_flops:.4f} s, writing the records here {t_write:.4f} s | limit {limit:.4f} s, "
        f"reached {limit / t_kernel:.0%} | load average {load:.1f}"
    )


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
    path = {"separable": "separable", "full": "full kernel", "single": "single"}[
        eng.get_outputs()["method"]
    ]
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


def select_table(folder: str) -> str:
    """A 5-year select and ultimate table (Gompertz-like ultimate, select 50-90% of it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ages = np.arange(121)
    ultimate = np.minimum(1.0, 0.0005 * np.exp(0.085 * (ages - 30)))
    columns: dict[str, Any] = {"age": ages}
    for k in range(1, 6):
        columns[f"select_{k}"] = ultimate * (0.4 + 0.1 * k)
    columns["ultimate"] = ultimate
    path = os.path.join(folder, "select.parquet")
    pq.write_table(pa.table(columns), path)
    return path


def term_policies(n: int, seed: int = 10) -> np.ndarray:
    """New term policies: ages 20-59, terms 10-20 years, sums assured 50k-500k."""
    rng = np.random.default_rng(seed)
    pol = np.zeros(n, dtype=POLICY_DTYPE)
    pol["policy_id"] = np.arange(n)
    pol["age"] = rng.integers(20, 60, n)
    pol["gender"] = rng.integers(0, 2, n)
    pol["underwriting_class"] = rng.integers(0, 2, n)
    pol["term"] = rng.integers(10, 21, n)
    pol["sum_assured"] = rng.uniform(50_000, 500_000, n)
    return pol


def median_of(fn: Callable[[], Any], repeats: int) -> float:
    """The median of ``repeats`` timed calls (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


LOADING, COVER = 0.5, ("claims", "expenses", "commissions")


def term_config(folder: str) -> dict[str, Any]:
    """The projection config of the reference model (issue 10), its table written in ``folder``."""
    return {
        "mortality_table": select_table(folder),
        "lapse_table": [0.10, 0.08, 0.06, 0.05, 0.04, 0.03],
        "commissions": [0.5, 0.0],
        "surrender_values": [0.0],
        "time_step": "monthly",
        "premium_frequency": "monthly",
        "expenses": {"acquisition": 250.0, "maintenance": 60.0, "inflation": 0.025,
                     "percent_of_premium": 0.03, "per_claim": 200.0},
        "discount_rate": 0.03,
        "discounting": {"convention": "step_spot"},
        "premium": {"method": "equivalence", "loading": LOADING, "cover": list(COVER)},
        "output": "detail_ext",
    }  # fmt: skip


def monthly_term_case(n_pol: int, repeats: int) -> None:
    """Issue 10's case: engine (warm) against the numpy implementation, same process."""
    loading, cover = LOADING, COVER
    with tempfile.TemporaryDirectory() as folder:
        eng = ProjectionEngine()
        eng.initialize(term_config(folder))
    pol = term_policies(n_pol)
    inputs = {"policies": pol}
    spec = eng.output_spec(inputs)
    out = np.empty(spec.records, dtype=spec.dtype)
    t_engine = median_of(lambda: eng.run_chunk(inputs, out), repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    engine_ms = min(
        eng.run_chunk(inputs, out).execution_time_ms for _ in range(repeats)
    )  # engine-reported time of the same call
    basis = eng._basis
    assert basis is not None
    results: dict[str, Any] = {}

    def numpy_run() -> None:
        chunk = prepare_chunk(basis, pol, None, eng._curve, np.zeros(1, np.uint32), eng._rate0)
        results["premium"], results["npv"] = deterministic_numpy(chunk, basis, loading, cover)

    t_numpy = median_of(numpy_run, max(1, repeats // 3))
    months = int(12 * pol["term"].astype(np.int64).sum())
    agree = np.max(np.abs(results["npv"] - out["npv"]) / (1.0 + np.abs(out["npv"])))
    same_premiums = np.array_equal(results["premium"], out["premium"])
    print(
        f"monthly term {n_pol} policies ({months / 1e6:.2f} M policy-months, equivalence "
        f"premiums): engine {t_engine * 1e3:.2f} ms (median; best engine-reported "
        f"{engine_ms:.2f} ms) | numpy {t_numpy * 1e3:.1f} ms (median) | "
        f"numpy/engine x{t_numpy / t_engine:.1f} | {months / t_engine / 1e6:.0f} M "
        f"policy-months/s | npv agree to {agree:.1e}, premiums identical: {same_premiums} | "
        f"load average {load:.1f} on {os.cpu_count()} cpus"
    )


def end_to_end_case(n_pol: int, repeats: int) -> None:
    """Issue 24's case: the reference model through ``livecalc.run``, store on and off,
    against the engine's own time and the numpy implementation, all in this process."""
    import livecalc
    from livecalc.io.generate import write_policies
    from livecalc.io.parquet import PolicyData
    from livecalc.ops.store import RunStore

    pol = term_policies(n_pol)
    with tempfile.TemporaryDirectory() as folder:
        write_policies(os.path.join(folder, "policies.parquet"), PolicyData(pol, None))
        projection = term_config(folder)
        config = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "term", "type": "projection", "inputs": ["policies"],
                 "outputs": ["results"], "config": projection},
            ],
            "run": {"chunk_size": n_pol},
        }  # fmt: skip
        store = os.path.join(folder, "store")

        def run(with_store: bool) -> Any:
            result = livecalc.run(config, base_dir=folder, store=store if with_store else False)
            assert result.success, result.summary.describe()
            return result

        eng = ProjectionEngine()
        eng.initialize(projection)
        inputs = {"policies": pol}
        spec = eng.output_spec(inputs)
        out = np.empty(spec.records, dtype=spec.dtype)
        basis = eng._basis
        assert basis is not None

        def numpy_run() -> None:
            chunk = prepare_chunk(basis, pol, None, eng._curve, np.zeros(1, np.uint32), eng._rate0)
            deterministic_numpy(chunk, basis, LOADING, COVER)

        # Warm: numba, the store opened once by this process, the numpy path's imports.
        run(True), run(False), eng.run_chunk(inputs, out), numpy_run()
        times: dict[str, list[float]] = {"engine": [], "off": [], "on": [], "numpy": []}
        cases = {
            "engine": lambda: eng.run_chunk(inputs, out),
            "off": lambda: run(False),
            "on": lambda: run(True),
            "numpy": numpy_run,
        }
        for _ in range(repeats):  # the cases alternate: a load spike hits all of them
            for label, fn in cases.items():
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        last = run(True)
        same = last.to_pandas("results")["npv"].to_numpy()
        eng.run_chunk(inputs, out)
        # The store's own cost per run, measured alone (less noisy than the difference of
        # two medians): recording this run's record again, as a run of this process does.
        record, writes = dict(last.record), []
        for i in range(50):
            record["run_id"] = f"{last.run_id}-again-{i}"
            start = time.perf_counter()
            RunStore(store).record(record)
            writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        stored = len(RunStore(store).run_ids())  # folds the journaled records
        fold = time.perf_counter() - start
    med = {k: float(np.median(v)) for k, v in times.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    overhead = med["on"] - med["off"]
    print(
        f"end to end, monthly term {n_pol} policies (medians of {repeats} warm calls, "
        f"alternating): engine {med['engine'] * 1e3:.1f} ms | livecalc.run store off "
        f"{med['off'] * 1e3:.1f} ms, store on {med['on'] * 1e3:.1f} ms | run/engine "
        f"x{med['on'] / med['engine']:.2f} (target <= 2) | store +{overhead * 1e3:.1f} ms "
        f"({overhead / med['off'] * 100:+.1f}%; target <= 5 ms or 5%); a record alone "
        f"{np.median(writes) * 1e3:.2f} ms (median of 50) | numpy "
        f"{med['numpy'] * 1e3:.0f} ms, numpy/run x{med['numpy'] / med['on']:.1f} "
        f"(target >= 30) | {stored} runs folded into DuckDB afterwards in {fold * 1e3:.0f} ms "
        f"(off the runs' path) | npv as the engine's: {np.array_equal(same, out['npv'])} | "
        f"load average {load:.1f} on {os.cpu_count()} cpus"
    )


def main() -> None:
    """Run every case and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument(
        "--monthly-only", action="store_true", help="only issue 10's monthly term case"
    )
    parser.add_argument(
        "--end-to-end-only", action="store_true", help="only issue 24's end-to-end case"
    )
    args = parser.parse_args()
    n_pol, n_scen, repeats = (1_000, 100, 1) if args.quick else (10_000, 1_000, 3)
    print(f"numba threads: {os.environ.get('NUMBA_NUM_THREADS', 'default')}, cpus {os.cpu_count()}")
    end_to_end_case(10_000, 7)
    if args.end_to_end_only:
        return
    monthly_term_case(n_pol, 3 if args.quick else 15)
    if args.monthly_only:
        return
    w1 = {"policies": w1_policies(n_pol), "scenarios": w1_scenarios(n_scen)}
    sub = max(1, n_pol // 20)
    title = f"W1 {n_pol} x {n_scen}"
    w1_limit(f"{title} dynamic lapses, npv", {"dynamic_lapse": DYNAMIC}, w1, 2 * repeats + 1)
    w1_limit(f"{title} no dynamic lapses, npv", {}, w1, 2 * repeats + 1)
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
