"""Orchestration overhead per chunk, and the W1 pipeline end to end against its engines' times.

1. Per-chunk overhead: a no-op engine (reads nothing, writes nothing) over many small policy
   chunks, through the runner (lifecycle manager, chunk views, output buffer, merge,
   progress, logging filtered out), against a plain loop calling the same engine's
   ``run_chunk`` on the same chunk views. The difference per chunk is the runner's cost.
   Measured for the ``local`` and the ``processes`` executors.
2. W1: 10,000 generated policies x 1,000 ESG scenarios (10 outer x 100 inner, 50 years),
   ESG -> projection (one NPV per policy and scenario) -> solver (risk measures), through
   ``livecalc.run``: wall time of the run against the sum of the engines' own
   ``execution_time_ms``; once keeping results in memory, once also writing them to Parquet.

3. With ``--big N``: N policies (1,000,000 for the design's target) x 1,000 scenarios with
   per-scenario totals, for the wall time and peak memory (target under 4 GB).

Run: ``.venv/bin/python benchmarks/bench_pipeline.py [--chunks N] [--policies N] [--big N]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import LoggerConfig, configure_logging
from livecalc.pipeline.api import run
from livecalc.testing import NoOpEngine

PLUGIN = "livecalc.testing:register_testing_engines"


def _noop_config(chunk_size: int) -> dict[str, Any]:
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "noop", "type": "test_noop", "inputs": ["policies"], "outputs": ["out"]}
        ],
        "run": {"chunk_size": chunk_size},
    }


def overhead(folder: Path, chunks: int, executor: str) -> None:
    """Runner time per chunk minus a direct loop's, for the no-op engine."""
    chunk_size = 10
    data = generate_policies(chunks * chunk_size, seed=1)
    write_policies(folder / "policies.parquet", data)
    config = _noop_config(chunk_size)

    engine = NoOpEngine()
    engine.initialize({})
    views = [
        {"policies": data.records[i : i + chunk_size]}
        for i in range(0, len(data.records), chunk_size)
    ]
    start = time.perf_counter()
    for inputs in views:
        engine.run_chunk(inputs, None)
    direct = time.perf_counter() - start

    run(config, base_dir=folder, executor=executor)  # warm-up (imports, worker start)
    result = run(config, base_dir=folder, executor=executor)
    node = result.nodes["noop"]
    per_chunk_ms = (node.seconds - direct) / node.chunks * 1e3
    print(
        f"[{executor}] {node.chunks:,} chunks: runner {node.seconds:.3f} s, direct loop "
        f"{direct:.4f} s -> overhead {per_chunk_ms:.4f} ms per chunk "
        f"(target < 1 ms; ratio runner/direct {node.seconds / max(direct, 1e-9):.0f}x)"
    )


def _w1_config(write: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {
                    "model": "hull_white",
                    "outer": 10,
                    "inner": 100,
                    "years": 50,
                    "seed": 42,
                },
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "npv"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
            {
                "id": "solver",
                "type": "solver",
                "config": {"metrics": ["mean", "cte_95", "var_99_5"]},
                "inputs": ["results"],
                "outputs": ["solution"],
            },
        ],
        "run": {"chunk_size": 2_000},
    }
    if write:
        config["output"] = {"path": "out/results.parquet", "write": ["results"]}
    return config


def w1(folder: Path, policies: int) -> None:
    """The W1 pipeline's wall time against the sum of its engines' own times."""
    write_policies(folder / "policies.parquet", generate_policies(policies, seed=42))
    run(_w1_config(False), base_dir=folder)  # warm-up: numba compilation, caches
    for write in (False, True):
        start = time.perf_counter()
        result = run(_w1_config(write), base_dir=folder)
        wall = time.perf_counter() - start
        assert result.success, result.summary.describe()
        engines = sum(r.compute_seconds for r in result.nodes.values())
        parts = ", ".join(f"{k} {r.compute_seconds:.3f}" for k, r in result.nodes.items())
        label = "with Parquet output" if write else "results in memory "
        print(
            f"W1 {label}: {policies:,} policies x 1,000 scenarios: run {result.seconds:.3f} s "
            f"(api call {wall:.3f} s), engines' own {engines:.3f} s ({parts}); "
            f"run/engines {result.seconds / engines:.2f}x"
        )


def big(folder: Path, policies: int) -> None:
    """A large run with per-scenario totals: wall time and this process's peak memory."""
    write_policies(folder / "big.parquet", generate_policies(policies, seed=7))
    config = _w1_config(False)
    config["data_sources"]["policies"]["path"] = "big.parquet"
    config["engines"][1]["config"]["output"] = "scenario_totals"
    config["run"]["chunk_size"] = 10_000
    result = run(config, base_dir=folder)
    assert result.success, result.summary.describe()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"big: {policies:,} policies x 1,000 scenarios, scenario totals: run "
        f"{result.seconds:.1f} s ({result.nodes['projection'].chunks} chunks), peak RSS "
        f"{peak_gb:.2f} GB (target < 4 GB)"
    )


def main() -> None:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks for the overhead")
    parser.add_argument("--policies", type=int, default=10_000, help="W1 policies")
    parser.add_argument(
        "--big", type=int, default=0, help="also run N policies with scenario totals (1000000)"
    )
    args = parser.parse_args()
    configure_logging(LoggerConfig(min_level="WARNING"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        overhead(folder, args.chunks, "local")
        overhead(folder, max(1, args.chunks // 10), "processes")
        w1(folder, args.policies)
        if args.big:
            big(folder, args.big)


if __name__ == "__main__":
    main()
