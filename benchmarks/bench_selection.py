"""Running part of a pipeline: what keeping datasets and running node by node cost.

The W1 pipeline (ESG 1,000 scenarios x 50 years -> projection of N policies, NPV per policy
and scenario -> solver), each measurement against the whole run measured here, alternating:

1. keep_datasets: the whole run writing every dataset to files (scenarios as Parquet, the
   results as a hard link to their output file, the solution as JSON) against the same run
   without;
2. node by node: esg, then projection, then solver, each a run of its own reading the files
   the one before kept, against the whole run, with each step's time. The extra work is
   reading the datasets back and checking every value (10 M result records), hashing the
   files for the provenance, and three run set-ups (store records, checks, chart data).

Usage: python benchmarks/bench_selection.py [--policies 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import LoggerConfig, configure_logging
from livecalc.ops.session import run

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import _w1_config


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    configure_logging(LoggerConfig(min_level="ERROR"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_policies(folder / "policies.parquet", generate_policies(args.policies, seed=42))
        config = _w1_config(True)
        common: dict[str, Any] = {"base_dir": folder, "store": folder / "store"}
        run(config, **common)  # warm: numba cache, store created

        def whole() -> None:
            assert run(config, **common).success

        def kept() -> None:
            assert run(config, keep_datasets=folder / "kept", **common).success

        times: dict[str, list[float]] = {
            "whole": [], "kept": [], "node_by_node": [], "esg": [], "projection": [], "solver": []
        }  # fmt: skip
        steps = times

        def node_by_node_steps() -> None:
            start = time.perf_counter()
            esg = run(config, nodes=["esg"], keep_datasets=folder / "n1", **common)
            steps["esg"].append(time.perf_counter() - start)
            files = dict(esg.summary.extras["datasets"])
            start = time.perf_counter()
            proj = run(config, nodes=["projection"], datasets=files, **common,
                       keep_datasets=folder / "n2")  # fmt: skip
            steps["projection"].append(time.perf_counter() - start)
            files.update(proj.summary.extras["datasets"])
            start = time.perf_counter()
            assert run(config, nodes=["solver"], datasets=files, **common).success
            steps["solver"].append(time.perf_counter() - start)

        for _ in range(args.repeats):
            times["whole"].append(_timed(whole))
            times["kept"].append(_timed(kept))
            times["node_by_node"].append(_timed(node_by_node_steps))
        base = statistics.median(times["whole"])
        keep = statistics.median(times["kept"])
        parts = statistics.median(times["node_by_node"])
        records = args.policies * 1_000
        print(
            f"W1 {args.policies:,} policies x 1,000 scenarios ({records:,} result records), "
            f"median of {args.repeats}:"
        )
        print(f"  whole run                 {base:7.3f} s")
        print(
            f"  whole run, keep_datasets  {keep:7.3f} s  {keep / base:.2f}x "
            f"(+{(keep - base) * 1e3:.0f} ms)"
        )
        print(
            f"  node by node (3 runs)     {parts:7.3f} s  {parts / base:.2f}x "
            f"(+{(parts - base) * 1e3:.0f} ms): "
            + ", ".join(
                f"{k} {statistics.median(times[k]):.3f} s" for k in ("esg", "projection", "solver")
            )
        )


if __name__ == "__main__":
    main()
