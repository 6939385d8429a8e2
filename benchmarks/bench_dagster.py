"""Overhead of Dagster over a plain LiveCalc run, on the full example pipeline.

Both sides run examples/dag_config_full_pipeline.json (ESG 5 x 20 paths of 50 years,
projection of 200 policies, solver with a goal seek) from a copy in a temporary folder, with
the run store in that folder, alternating so that both see the same machine:

1. in-process: ``livecalc.run(config)`` against the pipeline's Dagster job executed in-process
   (``execute_in_process`` on an ephemeral instance: one step per engine node, reading
   upstream datasets from files); and, to split the difference, the same node by node
   without Dagster (three ``livecalc.run(config, nodes=[id], datasets=..., keep_datasets=
   True)``, what the Dagster steps run);
2. from the command line, each a fresh process: ``livecalc run CONFIG`` against
   ``dagster job execute -f definitions.py -j dag_config_full_pipeline_job``, with Dagster's
   default executor (each step in a process of its own) and with its in-process executor
   (``-c in_process.yaml``: ``execution: {config: {in_process: {}}}``).

Printed: medians, the difference and the ratio; the time to build the Definitions once.

Usage: python benchmarks/bench_dagster.py [--repeats 7] [--cli-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

import livecalc
from livecalc.integrations.dagster import definitions_from_config
from livecalc.log import LoggerConfig, configure_logging

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIG = "dag_config_full_pipeline.json"
JOB = "dag_config_full_pipeline_job"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Dagster's console log at WARNING (its event log still records every event)."""


def _copy(folder: Path) -> Path:
    shutil.copy(EXAMPLES / CONFIG, folder)
    shutil.copytree(EXAMPLES / "data", folder / "data")
    (folder / "in_process.yaml").write_text("execution:\n  config:\n    in_process: {}\n")
    (folder / "definitions.py").write_text(
        "from livecalc.integrations.dagster import definitions_from_config\n"
        f"defs = definitions_from_config({str(folder / CONFIG)!r})\n"
    )
    return folder / CONFIG


def _report(label: str, base: list[float], other: list[float], name: str = "Dagster") -> None:
    b, d = statistics.median(base), statistics.median(other)
    print(
        f"{label}: livecalc run median {b:.3f} s, {name} median {d:.3f} s: +{d - b:.3f} s "
        f"({d / b:.2f}x) over {len(base)} runs each; fastest {min(base):.3f} s against "
        f"{min(other):.3f} s"
    )


def in_process(config: Path, repeats: int) -> None:
    """``livecalc.run`` against the Dagster job, alternating, in this process."""
    start = time.perf_counter()
    defs = definitions_from_config(config)
    job = defs.resolve_job_def(JOB)
    print(f"definitions: built in {time.perf_counter() - start:.3f} s (once per code load)")

    def plain() -> None:
        assert livecalc.run(config).success

    def node_by_node() -> None:
        files: dict[str, str] = {}
        for node_id in ("esg", "projection", "solver"):
            result = livecalc.run(config, nodes=[node_id], datasets=files, keep_datasets=True)
            assert result.success
            files.update(result.summary.extras["datasets"])

    def dagster() -> None:
        with dg.DagsterInstance.ephemeral() as instance:
            assert job.execute_in_process(instance=instance, run_config=QUIET).success

    times: dict[str, list[float]] = {"plain": [], "nodes": [], "dagster": []}
    runs: dict[str, Callable[[], None]] = {
        "plain": plain,
        "nodes": node_by_node,
        "dagster": dagster,
    }
    for name in runs:  # warm both (numba cache, imports, the store's first open)
        runs[name]()
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    _report("in-process", times["plain"], times["nodes"], "node by node (no Dagster)")
    _report("in-process", times["plain"], times["dagster"], "Dagster job")
    n, d = statistics.median(times["nodes"]), statistics.median(times["dagster"])
    print(f"in-process: Dagster itself over node by node: +{d - n:.3f} s ({d / n:.2f}x)")


def command_line(config: Path, repeats: int) -> None:
    """``livecalc run`` against ``dagster job execute``, each a fresh process."""
    bin_dir = Path(sys.executable).parent
    commands = {
        "plain": [str(bin_dir / "livecalc"), "run", str(config), "--no-progress"],
        "dagster": [
            str(bin_dir / "dagster"),
            "job",
            "execute",
            "-f",
            str(config.parent / "definitions.py"),
            "-j",
            JOB,
        ],
    }
    commands["in_process"] = [*commands["dagster"], "-c", str(config.parent / "in_process.yaml")]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=config.parent)
            times[name].append(time.perf_counter() - start)
    _report("command line", times["plain"], times["dagster"], "dagster job execute")
    _report("command line", times["plain"], times["in_process"], "dagster job execute in-process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cli-repeats", type=int, default=3)
    args = parser.parse_args()
    configure_logging(LoggerConfig(min_level="WARNING"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["LIVECALC_HOME"] = str(folder / "home")
        os.environ["DAGSTER_HOME"] = str(folder / "dagster")
        (folder / "dagster").mkdir()
        config = _copy(folder)
        in_process(config, args.repeats)
        if args.cli_repeats:
            command_line(config, args.cli_repeats)


if __name__ == "__main__":
    main()
