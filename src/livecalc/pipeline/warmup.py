"""``livecalc warmup``: compile every numba kernel the built-in engines use, once, into the cache.

Numba compiles a kernel on its first call with new argument types and, with ``cache=True``,
keeps the machine code in ``*.nbi``/``*.nbc`` files beside the kernels' sources; later
processes (worker processes included) load it in a fraction of a second instead of compiling
for 8-15 s. ``warm_up`` fills that cache the most faithful way: it runs small pipelines through
the real runner, so the kernels see the argument types real runs give them: every ESG model
(nested and antithetic too), every projection output, method and time step, dynamic lapses,
audits, cash flows, the deterministic single-scenario path with model premiums and the nested
valuation at a future date, on buffers
read from Parquet and on shared-memory buffers (what worker processes get). It takes seconds
once the cache is full, so it is safe to run again.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livecalc.pipeline.executors.local import LocalExecutor

__all__ = ["KERNEL_MODULES", "KernelReport", "WarmupReport", "warm_up"]

KERNEL_MODULES = (
    "livecalc.kernels.esg",
    "livecalc.kernels.esg_models",
    "livecalc.kernels.esg_rng",
    "livecalc.kernels.projection",
    "livecalc.kernels.projection_pv",
    "livecalc.kernels.projection_nested",
    "livecalc.kernels.projection_single",
)
"""The modules whose jitted functions the warm-up compiles and reports."""

_YEARS = 10


@dataclass(frozen=True)
class KernelReport:
    """One jitted function: its signatures, how many were compiled now and how many loaded."""

    name: str
    signatures: int
    compiled: int
    from_cache: int


@dataclass
class WarmupReport:
    """What ``warm_up`` did: the kernels, the time numba spent compiling, the total time."""

    kernels: list[KernelReport] = field(default_factory=list)
    compile_seconds: float = 0.0
    seconds: float = 0.0
    pipelines: int = 0

    @property
    def compiled(self) -> int:
        """Signatures compiled by this warm-up (0 when the cache already held them all)."""
        return sum(k.compiled for k in self.kernels)

    @property
    def from_cache(self) -> int:
        """Signatures loaded from numba's cache."""
        return sum(k.from_cache for k in self.kernels)


class _SharedLocalExecutor(LocalExecutor):
    """Engines inline, buffers in shared memory: the argument types worker processes see."""

    name = "local-shared"
    shared_buffers = True


def _esg(node_id: str, **config: Any) -> dict[str, Any]:
    base = {"outer": 1, "inner": 4, "years": _YEARS, "seed": 1}
    return {
        "id": node_id,
        "type": "esg",
        "config": {**base, **config},
        "inputs": [],
        "outputs": [node_id],
    }


def _projection(node_id: str, scenarios: str, **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "projection",
        "config": config,
        "inputs": ["policies", scenarios],
        "outputs": [node_id],
    }


def _deterministic(node_id: str, **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "projection",
        "config": config,
        "inputs": ["policies"],
        "outputs": [node_id],
    }


def _pipeline() -> dict[str, Any]:
    engines = [
        _esg("hw", model="hull_white"),
        _esg("hw_nested", model="hull_white", outer=2, inner=3, branching_year=2),
        _esg("hw_antithetic", model="hull_white", antithetic=True),
        _esg("vasicek", model="vasicek"),
        _esg("cir", model="cir"),
        _esg("simple", model="simple"),
    ]
    for output in ("npv", "detail", "scenario_totals", "policy_means"):
        for method in ("separable", "full"):
            for step in ("annual", "monthly"):
                engines.append(
                    _projection(
                        f"p_{output}_{method}_{step}",
                        "hw",
                        output=output,
                        method=method,
                        time_step=step,
                        premium_frequency=step,
                    )
                )
    dynamic = {"reference_rate": 0.03, "sensitivity": 2.0}
    engines += [
        _projection("p_dynamic", "hw", dynamic_lapse=dynamic, output="detail"),
        _projection("p_dynamic_totals", "hw", dynamic_lapse=dynamic, output="scenario_totals"),
        _projection("p_audit", "hw", audit={"policy_ids": [1]}, output="npv"),
        _projection("p_file", "scenario_file", output="npv"),
        _projection("p_file_detail", "scenario_file", output="detail"),
        _projection("p_cashflows", "hw", output="cashflows"),
        _projection("p_detail_ext", "hw", output="detail_ext"),
    ]
    # Deterministic runs take the one-pass single-scenario path (and its premium solve).
    equivalence = {"method": "equivalence", "loading": 0.5, "cover": ["claims"]}
    for output in ("npv", "detail", "detail_ext", "cashflows"):
        for step in ("annual", "monthly"):
            engines.append(
                _deterministic(
                    f"d_{output}_{step}",
                    output=output,
                    time_step=step,
                    premium_frequency=step,
                    discounting={"convention": "step_spot"},
                    premium=equivalence,
                )
            )
    # The nested valuation of the deterministic cash flows, with its LSMC proxy.
    lsmc = {"fit_outer": 10, "fit_inner": 2, "proxy_outer": 4}
    engines.append(
        {
            "id": "nested",
            "type": "nested",
            "config": {"esg": {"outer": 3, "inner": 4, "seed": 1}, "lsmc": lsmc, "bootstrap": 2},
            "inputs": ["d_cashflows_annual"],
        }
    )
    return {
        "data_sources": {
            "policies": {"type": "parquet", "path": "policies.parquet"},
            "scenario_file": {"type": "parquet", "path": "scenarios.parquet", "kind": "scenarios"},
        },
        "engines": engines,
        "run": {"chunk_size": 16, "max_parallel": 1},
    }


def _kernel_reports() -> list[KernelReport]:
    import importlib

    from numba.core.dispatcher import Dispatcher

    reports = []
    for module_name in KERNEL_MODULES:
        module = importlib.import_module(module_name)
        for name, value in sorted(vars(module).items()):
            if isinstance(value, Dispatcher) and value.signatures:
                stats = value.stats
                reports.append(
                    KernelReport(
                        f"{module_name.rsplit('.', 1)[-1]}.{name}",
                        len(value.signatures),
                        sum(stats.cache_misses.values()),
                        sum(stats.cache_hits.values()),
                    )
                )
    return reports


def warm_up(progress: Callable[[str], None] | None = None) -> WarmupReport:
    """Compile (or load from numba's cache) every kernel signature the built-in engines use.

    Raises:
        ExecutionError: a warm-up pipeline failed (a bug, or a broken numba install).
    """
    from livecalc.errors import ExecutionError
    from livecalc.io.generate import (
        generate_policies,
        generate_scenarios,
        write_policies,
        write_scenarios,
    )
    from livecalc.pipeline.api import run
    from livecalc.runtime import jit

    start = time.perf_counter()
    # Engines initialise in this thread; nodes run (and compile) on the runner's threads,
    # whose compile time each run's summary reports.
    compiled_here = jit.compile_seconds()
    report = WarmupReport()
    with tempfile.TemporaryDirectory(prefix="livecalc-warmup-") as tmp:
        folder = Path(tmp)
        write_policies(
            folder / "policies.parquet",
            generate_policies(40, seed=1, in_force_fraction=0.5, max_policy_count=3, max_term=8),
        )
        write_scenarios(folder / "scenarios.parquet", generate_scenarios(4, _YEARS, seed=1))
        for executor in (LocalExecutor(), _SharedLocalExecutor()):
            if progress is not None:
                progress(f"running the warm-up pipelines ({executor.name} buffers)")
            result = run(_pipeline(), executor=executor, base_dir=folder)
            report.pipelines += 1
            report.compile_seconds += result.summary.compile_seconds
            if not result.success:
                raise ExecutionError("warm-up pipeline failed:\n" + result.summary.describe())
    report.compile_seconds += jit.compile_seconds() - compiled_here
    report.kernels = _kernel_reports()
    report.seconds = time.perf_counter() - start
    return report
