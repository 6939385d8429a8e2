"""Nested valuation at year 1: 1,000 outer x 1,000 inner paths x 10,000 policies, and LSMC.

Run: ``.venv/bin/python benchmarks/bench_nested.py`` (``--outer``, ``--inner``, ``--policies``,
``--fit-outer``, ``--fit-inner``, ``--proxy-outer`` to change the sizes). The pipeline is the
example's (examples/nested/): a projection of the policies' cash flows by year, then the
``nested`` engine under Hull-White with real-world outer paths. It prints

- the time of each part, the process's peak memory, and (outer, inner) path pairs valued a
  second: the nested run's cost grows with outer x inner x years, not with the policies,
  whose cash flows are projected once;
- the same valuation with the plain-numpy reference (``values_at_reference``) on one block,
  measured in the same run, as a ratio;
- LSMC at a tenth of the nested paths (``fit_outer x fit_inner = outer x inner / 10``): its
  time, its fit, its out-of-sample error against the nested values, and the 99.5% VaR of the
  nested run, of the proxy, and of the exact Hull-White values on the proxy's outer paths.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from livecalc.io.generate import generate_policies, write_policies
from livecalc.kernels.projection_nested import FutureFlows, values_at, values_at_reference
from livecalc.pipeline.api import run


def _config(policies: Path, args: argparse.Namespace) -> dict[str, Any]:
    esg = {
        "model": "hull_white", "a": 0.1, "sigma": 0.01, "curve": 0.03,
        "market_price_of_risk": 0.2, "outer": args.outer, "inner": args.inner,
        "antithetic": True, "seed": 2026,
    }  # fmt: skip
    lsmc = {
        "basis": "polynomial", "degree": 3, "fit_outer": args.fit_outer,
        "fit_inner": args.fit_inner, "proxy_outer": args.proxy_outer,
    }  # fmt: skip
    return {
        "data_sources": {"policies": {"path": str(policies)}},
        "engines": [
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "cashflows"},
                "inputs": ["policies"],
                "outputs": ["cashflows"],
            },
            {
                "id": "valuation",
                "type": "nested",
                "config": {"valuation_year": 1, "esg": esg, "lsmc": lsmc, "bootstrap": 100},
                "inputs": ["cashflows"],
            },
        ],
        "run": {"chunk_size": 2500},
    }


def _reference_ratio(years: int) -> tuple[float, float]:
    """Seconds of the kernel and of the numpy reference on 20,000 paths of ``years``."""
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.0, 0.06, (20_000, years))
    future = FutureFlows(1, 1, rng.normal(0.0, 1e5, years - 1))
    values_at(rates, future)  # compiled or loaded before timing
    start = time.perf_counter()
    values_at(rates, future)
    kernel = time.perf_counter() - start
    start = time.perf_counter()
    values_at_reference(rates, future)
    return kernel, time.perf_counter() - start


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", type=int, default=1000)
    parser.add_argument("--inner", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--fit-outer", type=int, default=10_000)
    parser.add_argument("--fit-inner", type=int, default=10)
    parser.add_argument("--proxy-outer", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"numba threads: {numba.get_num_threads()}; {args.outer:,} outer x {args.inner:,} "
        f"inner paths x {args.policies:,} policies; LSMC {args.fit_outer:,} x "
        f"{args.fit_inner:,}, proxy on {args.proxy_outer:,} outer paths"
    )
    with tempfile.TemporaryDirectory() as folder:
        policies = Path(folder) / "policies.parquet"
        write_policies(policies, generate_policies(args.policies, seed=7))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        result = run(_config(policies, args))
        total = time.perf_counter() - start
    assert result.success, result.summary
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = result.statistics["valuation"]
    nested, lsmc = stats["nested"], stats["lsmc"]
    pairs = nested["inner_paths"]
    timings = result.timings
    print(f"run total {total:.1f} s: projection {timings['projection']:.1f} s, "
          f"nested node {timings['valuation']:.1f} s; peak RSS {peak:,.0f} MiB "
          f"(before the run {rss_before:,.0f} MiB)")  # fmt: skip
    print(
        f"nested: {pairs:,} paths of {nested['years']} years in {nested['seconds']:.2f} s = "
        f"{pairs / nested['seconds']:,.0f} pairs/s "
        f"({pairs * nested['years'] / nested['seconds'] / 1e6:,.1f}M path-years/s)"
    )
    print(
        f"nested var_99_5 {nested['var_99_5']:,.0f} +- {nested['var_99_5_se']:,.0f} (inner) "
        f"+- {nested['var_99_5_se_outer']:,.0f} (outer); closed form max |z| "
        f"{nested['closed_form']['max_abs_z']:.2f}, std z {nested['closed_form']['std_z']:.2f}"
    )
    fit_pairs = lsmc["fit_paths"]
    print(
        f"LSMC: fit on {fit_pairs:,} paths ({lsmc['cost_ratio']:.2g} of the nested paths) in "
        f"{lsmc['fit_seconds']:.2f} s (time ratio {lsmc['time_ratio']:.3f}); proxy on "
        f"{lsmc['proxy_outer']:,} outer paths in {lsmc['proxy_seconds']:.2f} s"
    )
    print(
        f"LSMC fit: R^2 {lsmc['r2']:.4f} (fit set), {lsmc['r2_oos']:.4f} out of sample; max "
        f"|rel error| out of sample {lsmc['max_abs_rel_error_oos']:.4f} (central 99%), vs "
        f"closed form {lsmc['closed_form']['max_abs_rel_error_central']:.4f}"
    )
    for q in lsmc["by_quantile"]:
        print(
            f"  quantile {100 * q['level']:5.1f}%: nested {q['nested']:>14,.0f}  proxy "
            f"{q['proxy']:>14,.0f}  ({q['rel_error']:+.3%})"
        )
    print(
        f"var_99_5: nested {nested['var_99_5']:,.0f}, proxy {lsmc['var_99_5']:,.0f} (+- "
        f"{lsmc['var_99_5_se_outer']:,.0f} outer), exact on the proxy's paths "
        f"{lsmc['closed_form']['var_99_5']:,.0f}"
    )
    kernel, reference = _reference_ratio(nested["years"])
    print(
        f"valuation kernel vs numpy reference (20,000 paths): {kernel * 1e3:.1f} ms vs "
        f"{reference * 1e3:.1f} ms, {reference / kernel:.1f}x"
    )


if __name__ == "__main__":
    main()
