"""Scale-out: a node's chunks over replica pools, on processes and on a simulated Ray cluster.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--big 1000000] [--repeats 3] [--json F]``

1. Runs: ESG (1,000 scenarios: 10 outer x 100 inner, 50 years) -> projection with
   per-scenario totals (memory stays bounded), for W1 (10,000 policies, chunks of 1,000) and
   ``--big`` policies (default 1,000,000, chunks of 50,000), each on
   ``local`` (1 replica), ``processes`` with parallelism 1 and 2, and ``ray`` with parallelism 3
   on a Ray cluster simulated here (a head and two worker raylets, one CPU each, bound to
   127.0.0.1). Reported: medians over ``--repeats`` runs (after one warm-up run) of the
   projection node's seconds, its start-up (replicas spawned and initialised, in parallel),
   the engine's own time summed over chunks, and the whole run.
2. Per-chunk overheads: a no-op engine over many small chunks (dispatch + merge per chunk,
   per executor), an echo engine beside it (the result transfer of its records), and
   ``ray.put`` of arrays of several sizes (object-store put).
3. The engine alone on one numba thread: seconds per chunk, fixed and per policy-scenario
   pair (the model's compute term), and the Parquet read of the policies per policy
   (``--engine-only`` runs just this).

The machine is shared with other work: figures are noisy, hence medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import LoggerConfig, configure_logging
from livecalc.pipeline.api import run

PLUGIN = "livecalc.testing:register_testing_engines"
RAY_NODE = {"num_cpus": 1, "object_store_memory": 200 * 2**20, "node_ip_address": "127.0.0.1"}


@contextmanager
def ray_cluster() -> Iterator[str]:
    """A head and two worker raylets on this machine (loopback only); yields the address."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    # A loopback address would otherwise be swapped for the machine's own (see test_pool_ray).
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    cluster = Cluster(initialize_head=True, head_node_args={**RAY_NODE, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(**RAY_NODE)
    cluster.wait_for_nodes()
    try:
        yield str(cluster.address)
    finally:
        cluster.shutdown()


def _projection_config(policies: str, chunk_size: int) -> dict[str, Any]:
    return {
        "data_sources": {"policies": {"path": policies}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {"model": "hull_white", "outer": 10, "inner": 100, "years": 50},
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "scenario_totals"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["totals"],
            },
        ],
        "run": {"chunk_size": chunk_size},
    }


def _timed_runs(
    config: dict[str, Any], folder: Path, repeats: int, node: str, **kw: Any
) -> dict[str, Any]:
    run(config, base_dir=folder, **kw)  # warm-up: numba caches, imports
    node_s, run_s, init_s, compute_s = [], [], [], []
    totals = None
    chunks = 0
    for _ in range(repeats):
        result = run(config, base_dir=folder, **kw)
        assert result.success, result.summary.describe()
        node_s.append(result.nodes[node].seconds)
        run_s.append(result.seconds)
        init_s.append(result.nodes[node].init_seconds)
        compute_s.append(result.nodes[node].compute_seconds)
        chunks = result.nodes[node].chunks
        records = result.summary.datasets.get("totals")
        if isinstance(records, np.ndarray):
            totals = records.tobytes()
    return {
        "node_s": statistics.median(node_s),
        "run_s": statistics.median(run_s),
        "node_all_s": [round(s, 3) for s in node_s],
        "init_s": statistics.median(init_s),
        "compute_s": statistics.median(compute_s),
        "chunks": chunks,
        "totals": totals,
    }


SETUPS: list[tuple[str, str, int]] = [
    ("local p=1", "local", 1),
    ("processes p=1", "processes", 1),
    ("processes p=2", "processes", 2),
    ("ray 3 nodes p=3", "ray", 3),
]


def scale_runs(
    folder: Path, policies: int, chunk_size: int, repeats: int, address: str | None
) -> dict[str, Any]:
    """The projection's time per set-up for ``policies`` x 1,000 scenarios."""
    name = f"policies_{policies}.parquet"
    if not (folder / name).exists():
        write_policies(folder / name, generate_policies(policies, seed=42))
    config = _projection_config(name, chunk_size)
    out: dict[str, Any] = {}
    baseline = None
    for label, executor, parallelism in SETUPS:
        if executor == "ray" and address is None:
            continue
        figures = _timed_runs(
            config,
            folder,
            repeats,
            "projection",
            executor=executor,
            parallelism=parallelism,
            address=address if executor == "ray" else None,
        )
        totals = figures.pop("totals")
        baseline = totals if baseline is None else baseline
        figures["identical_to_local"] = totals == baseline
        out[label] = figures
        print(
            f"{policies:>9,} x 1,000  {label:<16} projection {figures['node_s']:7.3f} s  "
            f"(start-up {figures['init_s']:.3f} s, engine time summed over chunks "
            f"{figures['compute_s']:.3f} s)  run {figures['run_s']:7.3f} s  "
            f"({figures['chunks']} chunks; runs "
            f"{figures['node_all_s']}; totals identical to local: "
            f"{figures['identical_to_local']})",
            flush=True,
        )
    return out


def _chunk_config(engine: str, chunk_size: int) -> dict[str, Any]:
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "small.parquet"}},
        "engines": [{"id": "n", "type": engine, "inputs": ["policies"], "outputs": ["out"]}],
        "run": {"chunk_size": chunk_size},
    }


def chunk_overheads(folder: Path, repeats: int, address: str | None) -> dict[str, Any]:
    """Per-chunk cost of dispatch + merge (no-op engine) and of returning records (echo)."""
    chunks, chunk_size = 400, 1_000  # echo: 1,000 policies = 32 KB of records per chunk
    write_policies(folder / "small.parquet", generate_policies(chunks * chunk_size, seed=3))
    out: dict[str, Any] = {}
    for label, executor, parallelism in SETUPS:
        if executor == "ray" and address is None:
            continue
        kw: dict[str, Any] = {"executor": executor, "parallelism": parallelism}
        if executor == "ray":
            kw["address"] = address
        per_chunk = {}
        for engine in ("test_noop", "test_echo"):
            figures = _timed_runs(_chunk_config(engine, chunk_size), folder, repeats, "n", **kw)
            per_chunk[engine] = figures["node_s"] / figures["chunks"] * 1e3
        out[label] = {
            "dispatch_ms": per_chunk["test_noop"],
            "result_32kb_ms": per_chunk["test_echo"] - per_chunk["test_noop"],
        }
        print(
            f"per chunk  {label:<16} dispatch+merge {per_chunk['test_noop']:.3f} ms; returning "
            f"32 KB of records adds {per_chunk['test_echo'] - per_chunk['test_noop']:.3f} ms",
            flush=True,
        )
    return out


def object_store_puts(address: str, repeats: int) -> dict[str, float]:
    """Seconds per ``ray.put`` of 0.8 MB (1,000 x 50 scenario rates), 3.2 MB and 32 MB."""
    import ray

    ray.init(address=address, log_to_driver=False)
    out = {}
    try:
        for megabytes in (0.8, 3.2, 32.0):
            array = np.random.default_rng(0).random(int(megabytes * 2**20 / 8))
            times = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                ref = ray.put(array)
                times.append(time.perf_counter() - start)
                del ref
            median = statistics.median(times[1:])
            out[f"{megabytes} MB"] = median
            print(
                f"ray.put {megabytes:5.1f} MB: {median * 1e3:7.3f} ms "
                f"({megabytes / 1024 / median:.2f} GB/s)",
                flush=True,
            )
    finally:
        ray.shutdown()
    return out


def engine_chunk_costs(folder: Path, repeats: int) -> dict[str, float]:
    """One projection chunk on one numba thread: fixed seconds per chunk and per pair.

    Fitted from chunks of 1,000 and 20,000 policies x 1,000 scenarios (scenario totals), run
    straight on the engine, so the runner's costs are not in it; and the seconds to read
    policies from Parquet, per policy (the driver reads them all before anything runs).
    """
    import numba

    from livecalc.engines.projection import ProjectionEngine
    from livecalc.io.parquet import ParquetReader
    from livecalc.runtime.buffers import SCENARIO_TOTAL_DTYPE

    name = "policies_1000000.parquet"
    if not (folder / name).exists():
        write_policies(folder / name, generate_policies(1_000_000, seed=42))
    reads = []
    for _ in range(repeats):
        start = time.perf_counter()
        policies = ParquetReader().read_policies(folder / name).records
        reads.append(time.perf_counter() - start)
    scen = run(_projection_config(name, 10**6), base_dir=folder, executor="local")
    scenarios = scen.summary.datasets["scenarios"]
    engine = ProjectionEngine()
    engine.initialize({"output": "scenario_totals"})
    numba.set_num_threads(1)
    out = np.zeros(1_000, dtype=SCENARIO_TOTAL_DTYPE)
    seconds = {}
    for size in (1_000, 20_000):
        inputs = {"policies": policies[:size], "scenarios": scenarios}
        engine.run_chunk(inputs, out)  # warm: compiled kernels loaded
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            engine.run_chunk(inputs, out)
            times.append(time.perf_counter() - start)
        seconds[size] = statistics.median(times)
    per_pair = (seconds[20_000] - seconds[1_000]) / (19_000 * 1_000)
    fixed = seconds[1_000] - per_pair * 1_000 * 1_000
    read_per_policy = statistics.median(reads) / len(policies)
    print(
        f"engine, 1 thread: {seconds[1_000] * 1e3:.1f} ms per 1,000-policy chunk, "
        f"{seconds[20_000] * 1e3:.1f} ms per 20,000 -> {fixed * 1e3:.2f} ms fixed per chunk + "
        f"{per_pair * 1e9:.2f} ns per policy-scenario pair; Parquet read "
        f"{read_per_policy * 1e9:.0f} ns per policy ({len(policies):,} in "
        f"{statistics.median(reads):.3f} s)",
        flush=True,
    )
    return {"fixed_s": fixed, "per_pair_s": per_pair, "read_per_policy_s": read_per_policy}


def _with_cluster(use: bool, body: Callable[[str | None], None]) -> None:
    if not use:
        body(None)
        return
    with ray_cluster() as address:
        body(address)


def main() -> None:
    """Run every measurement, print it, and optionally write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1_000_000, help="policies of the big run")
    parser.add_argument("--big-chunk", type=int, default=50_000, help="its chunk size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="skip the simulated cluster")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--engine-only", action="store_true", help="only the engine's per-chunk costs"
    )
    args = parser.parse_args()
    configure_logging(LoggerConfig(min_level="ERROR"))
    figures: dict[str, Any] = {"cpus": os.cpu_count()}
    if args.engine_only:
        with tempfile.TemporaryDirectory() as tmp:
            engine_chunk_costs(Path(tmp), args.repeats)
        return

    def body(address: str | None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            figures["engine"] = engine_chunk_costs(folder, args.repeats)
            figures["chunk_overheads"] = chunk_overheads(folder, args.repeats, address)
            figures["w1"] = scale_runs(folder, 10_000, 1_000, args.repeats, address)
            if args.big:
                figures["big"] = scale_runs(folder, args.big, args.big_chunk, args.repeats, address)
        if address is not None:
            figures["ray_put_s"] = object_store_puts(address, args.repeats)

    _with_cluster(not args.no_ray, body)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
