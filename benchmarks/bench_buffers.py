"""Handing a buffer to an engine costs the same for 1 KB and 1 GB, in process and to a worker.

Times ``EngineLifecycleManager.run_chunk`` of a no-op engine (it reads nothing) given an input
and an output buffer of each size: inline (same process, buffers passed by reference) and with
process isolation (buffers in shared memory, the worker maps them by name). The median over
many repetitions is the hand-off cost, lifecycle bookkeeping and events included. The baseline
is what a copy-based hand-off would pay at least: pickling the same 1 GB array once.

Run: ``.venv/bin/python benchmarks/bench_buffers.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from typing import Any

import numpy as np

from livecalc.log import LoggerConfig, configure_logging
from livecalc.runtime.buffers import SCENARIO_DTYPE, BufferManager
from livecalc.runtime.lifecycle import EngineLifecycleManager, LifecycleConfig
from livecalc.testing import NoOpEngine

SIZES = {"1 KB": 1 << 10, "1 MB": 1 << 20, "1 GB": 1 << 30}


def _medians_us(
    manager: EngineLifecycleManager, pairs: dict[str, tuple[Any, Any]], repeats: int
) -> dict[str, float]:
    # Sizes take turns within each round, so a burst of load on the shared machine hits them
    # all alike instead of biasing whichever size was being measured at the time.
    for inputs, output in pairs.values():  # warm-up: first mapping in the worker, caches
        for _ in range(5):
            manager.run_chunk(inputs, output)
    times: dict[str, list[float]] = {label: [] for label in pairs}
    for _ in range(repeats):
        for label, (inputs, output) in pairs.items():
            start = time.perf_counter()
            manager.run_chunk(inputs, output)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) * 1e6 for label, t in times.items()}


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    # Production runs log at INFO to a file; here events would only measure the terminal.
    configure_logging(LoggerConfig(min_level="WARNING"))

    rows: list[tuple[str, str, float]] = []
    with BufferManager() as buffers:
        for mode in ("inline", "process"):
            config = LifecycleConfig(isolation=mode, timeout_seconds=60)
            with EngineLifecycleManager(NoOpEngine(), config, engine_id="noop") as manager:
                manager.initialize({})
                shared = mode == "process"
                pairs = {}
                for label, nbytes in SIZES.items():
                    records = nbytes // SCENARIO_DTYPE.itemsize
                    inp = buffers.allocate(f"{mode}-in-{label}", SCENARIO_DTYPE, records, shared)
                    out = buffers.allocate(f"{mode}-out-{label}", SCENARIO_DTYPE, records, shared)
                    pairs[label] = ({"scenarios": inp.data}, out.data)
                medians = _medians_us(manager, pairs, args.repeats)
                rows.extend((mode, label, medians[label]) for label in SIZES)
            buffers.free_all()

    # Baseline: what shipping the 1 GB array by value costs (filled, as real data would be).
    array = np.ones((1 << 30) // SCENARIO_DTYPE.itemsize, SCENARIO_DTYPE)
    start = time.perf_counter()
    blob = pickle.dumps(array, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_us = (time.perf_counter() - start) * 1e6
    del blob, array

    print(f"hand-off of an input + an output buffer to a no-op engine, median of {args.repeats}")
    print(f"{'isolation':<10} {'size':>6} {'median us':>12}")
    for mode, label, median in rows:
        print(f"{mode:<10} {label:>6} {median:>12.1f}")
    by_key = {(mode, label): median for mode, label, median in rows}
    print()
    for mode in ("inline", "process"):
        ratio = by_key[(mode, "1 GB")] / by_key[(mode, "1 KB")]
        print(f"{mode:<10} 1 GB / 1 KB ratio: {ratio:.2f}")
    print(f"baseline: pickling the 1 GB array once: {pickle_us / 1e6:.2f} s")
    print(
        f"process hand-off of 1 GB is {pickle_us / by_key[('process', '1 GB')]:,.0f}x faster "
        "than pickling it"
    )


if __name__ == "__main__":
    main()
