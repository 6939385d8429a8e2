"""ESG throughput: 100 outer x 1,000 inner x 50 years (5M SCENARIO rows) per model.

Run: ``.venv/bin/python benchmarks/bench_esg.py``. Prints rows per second of ESGEngine.run_chunk
into a buffer allocated (and touched) once, as the runner reuses it; the cost of writing into a
freshly allocated buffer; one thread against all threads; and the ratio against the plain-numpy
reference implementation (``livecalc.kernels.esg_reference``) measured in the same run.
The target is under 0.5 s for the 5M rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from livecalc.engines.esg import ESGEngine, initial_discount_factors, model_params, parse_esg_config
from livecalc.kernels.esg_reference import generate_reference
from livecalc.runtime.buffers import SCENARIO_DTYPE

WORKLOAD = {"outer": 100, "inner": 1000, "years": 50, "seed": 42}


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def _engine(config: dict[str, Any]) -> tuple[ESGEngine, np.ndarray]:
    engine = ESGEngine()
    engine.initialize(config)
    spec = engine.output_spec({})
    assert spec is not None
    buffer = np.empty(spec.records, dtype=SCENARIO_DTYPE)
    engine.run_chunk(None, buffer)  # compile (or load the cache) and touch every page once
    return engine, buffer


def main() -> None:
    """Measure and print."""
    print(f"numba threads: {numba.get_num_threads()}; workload {WORKLOAD}")
    rows = 100 * 1000 * 50
    results: dict[str, float] = {}
    for model, extra, repeats in (
        ("hull_white", {}, 7),
        ("vasicek", {}, 5),
        ("simple", {}, 5),
        ("hull_white", {"branching_year": 10, "antithetic": True}, 5),
        ("cir", {"substeps": 1}, 1),
        ("cir", {}, 1),
    ):
        config = {"model": model, **WORKLOAD, **extra}
        engine, buffer = _engine(config)
        best, median = _best_of(lambda e=engine, b=buffer: e.run_chunk(None, b), repeats)
        label = f"{model} {extra}" if extra else model
        results[label] = best
        print(
            f"{label:<50} best {best:7.3f} s  median {median:7.3f} s  "
            f"{rows / best / 1e6:6.1f} M rows/s"
        )

    config = {"model": "hull_white", **WORKLOAD}
    engine, _ = _engine(config)
    start = time.perf_counter()
    fresh = np.empty(rows, dtype=SCENARIO_DTYPE)
    engine.run_chunk(None, fresh)
    print(f"{'hull_white into a fresh (untouched) buffer':<50} {time.perf_counter() - start:.3f} s")

    engine, buffer = _engine(config)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    one, _ = _best_of(lambda: engine.run_chunk(None, buffer), 3)
    numba.set_num_threads(threads)
    print(
        f"{'hull_white on 1 thread':<50} best {one:7.3f} s  "
        f"({one / results['hull_white']:.2f}x the time on {threads} threads)"
    )

    settings = parse_esg_config(config)
    layout = settings.layout
    params = model_params(
        "hull_white", settings.parameters, layout.years, 0, 0.0, initial_discount_factors(settings)
    )
    start = time.perf_counter()
    reference = generate_reference(layout, params, 0, settings.outer)  # type: ignore[arg-type]
    numpy_seconds = time.perf_counter() - start
    same = np.allclose(reference["rate"], buffer["rate"], rtol=1e-12, atol=1e-15)
    print(
        f"{'hull_white plain-numpy reference':<50} {numpy_seconds:7.3f} s  "
        f"{rows / numpy_seconds / 1e6:6.1f} M rows/s; numba kernel is "
        f"{numpy_seconds / results['hull_white']:.1f}x faster; same rates: {same}"
    )


if __name__ == "__main__":
    main()
