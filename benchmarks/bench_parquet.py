"""Parquet I/O speed: 1M policies read, 10M result rows written, row counts from the footer.

Each figure is compared with a baseline measured in the same run on the same data:
- read: ``pandas.read_parquet(...).to_records()`` and ``pq.read_table(...).to_pandas()``
  (neither validates anything; ParquetReader checks every value);
- write: ``pq.write_table`` of a ready-built Arrow table (pyarrow defaults, and zstd), against
  ParquetWriter streaming 1M-row chunks of RESULT_DETAIL records (copying out of the strided
  record fields included).

Run: ``.venv/bin/python benchmarks/bench_parquet.py [--policies N] [--results N]``.
Targets: read 1M policies < 0.5 s; write 10M result rows < 3 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from livecalc.io.generate import generate_policies, write_policies
from livecalc.io.parquet import ParquetReader, ParquetWriter, aligned_records
from livecalc.runtime.buffers import POLICY_DTYPE, RESULT_DETAIL_DTYPE


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, float]:
    """Best and median wall time of ``repeats`` calls (the machine is shared: noisy)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def result_records(n: int) -> np.ndarray[Any, Any]:
    """n RESULT_DETAIL records shaped like a projection's output (1,000 scenarios)."""
    rng = np.random.default_rng(7)
    out = aligned_records(RESULT_DETAIL_DTYPE, n)
    per_scenario = max(1, n // 1000)
    out["scenario_id"] = np.arange(n) // per_scenario
    out["reserved"] = 0
    out["policy_id"] = np.arange(n) % per_scenario + 1
    components = ["premium_income", "death_benefits", "surrender_benefits", "expenses"]
    for name in [*components, "maturity_benefits"]:
        out[name] = rng.lognormal(8.0, 1.0, n)
    out["npv"] = out["premium_income"] - out["death_benefits"] - out["surrender_benefits"]
    return out


def report(label: str, seconds: float, rows: int, baseline: float | None = None) -> None:
    ratio = f"  {baseline / seconds:5.2f}x baseline speed" if baseline else ""
    print(f"{label:<52} {seconds:8.3f} s  {rows / seconds / 1e6:8.2f} M rows/s{ratio}")


def bench_read(folder: Path, n: int, repeats: int) -> None:
    path = folder / "policies.parquet"
    write_policies(path, generate_policies(n, seed=1))
    reader = ParquetReader()
    print(f"\n== read {n:,} policies ({path.stat().st_size / 1e6:.1f} MB Parquet, zstd)")
    pandas_best, _ = best_of(repeats, lambda: pd.read_parquet(path).to_records(index=False))
    arrow_best, _ = best_of(repeats, lambda: pq.read_table(path).to_pandas())
    ours_best, ours_median = best_of(repeats, lambda: reader.read_policies(path))
    buffer = aligned_records(POLICY_DTYPE, n)
    into_best, _ = best_of(repeats, lambda: reader.read_policies_into(path, buffer))
    report("baseline pandas.read_parquet + to_records", pandas_best, n)
    report("baseline pq.read_table + to_pandas", arrow_best, n)
    report("ParquetReader.read_policies (validated)", ours_best, n, pandas_best)
    report("  median", ours_median, n, pandas_best)
    report("ParquetReader.read_policies_into (warm buffer)", into_best, n, pandas_best)
    csv = folder / "policies.csv"
    write_policies(csv, generate_policies(n, seed=1))
    csv_best, _ = best_of(1, lambda: reader.read_policies(csv))
    report("ParquetReader.read_policies from CSV", csv_best, n, pandas_best)
    target = "met" if ours_best < 0.5 else "MISSED"
    print(f"target read 1M policies < 0.5 s: {target} ({ours_best:.3f} s for {n:,})")


def bench_write(folder: Path, n: int, repeats: int) -> None:
    records = result_records(n)
    names = [name for name in RESULT_DETAIL_DTYPE.names or () if name != "reserved"]
    table = pa.table({name: np.ascontiguousarray(records[name]) for name in names})
    chunk = 1 << 20
    out = folder / "results.parquet"
    print(f"\n== write {n:,} RESULT_DETAIL rows ({n * 56 / 1e6:.0f} MB of columns)")

    def ours() -> None:
        with ParquetWriter(out, RESULT_DETAIL_DTYPE) as writer:
            for start in range(0, n, chunk):
                writer.write_chunk(records[start : start + chunk])

    default_best, _ = best_of(repeats, lambda: pq.write_table(table, folder / "base.parquet"))
    zstd_best, _ = best_of(
        repeats, lambda: pq.write_table(table, folder / "base.parquet", compression="zstd")
    )
    ours_best, ours_median = best_of(repeats, ours)
    report("baseline pq.write_table (defaults: snappy)", default_best, n)
    report("baseline pq.write_table (zstd)", zstd_best, n)
    report("ParquetWriter, 1M-row chunks, zstd, atomic", ours_best, n, default_best)
    report("  median", ours_median, n, default_best)
    print(
        f"sizes: ours {out.stat().st_size / 1e6:.0f} MB, "
        f"baseline zstd {(folder / 'base.parquet').stat().st_size / 1e6:.0f} MB"
    )
    target = "met" if ours_best < 3.0 else "MISSED"
    print(f"target write 10M result rows < 3 s: {target} ({ours_best:.3f} s for {n:,})")

    print("\n== get_row_count (footer only)")
    reader = ParquetReader()
    count_best, _ = best_of(repeats * 3, lambda: reader.get_row_count(out))
    print(f"get_row_count of the {n:,}-row file: {count_best * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1_000_000)
    parser.add_argument("--results", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bench_read(Path(folder), args.policies, args.repeats)
        bench_write(Path(folder), args.results, args.repeats)


if __name__ == "__main__":
    main()
