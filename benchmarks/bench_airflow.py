"""Airflow's overhead over `livecalc run` on the full example (ESG -> projection -> solver).

Measured in one process, each against the baseline run here:

1. baseline: ``livecalc.run(config)`` (what ``livecalc run`` does, run store and checkpoints
   included), median of ``--repeats`` runs;
2. the same config as an Airflow DAG run by ``dag.test()`` (SQLite metadata in a temporary
   AIRFLOW_HOME): the one-task DAG (``per_node_tasks=False``) and the DAG with one task per
   engine node; median wall time and the ratio to the baseline. The first ``dag.test()`` of a
   process also starts Airflow's in-process execution API; it is reported apart.
3. end to end from a shell: ``livecalc run`` against ``airflow dags test`` (one each), both
   processes started cold.

Usage: python benchmarks/bench_airflow.py [--repeats 5] [--dags one_task,per_node]
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

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIG = "dag_config_full_pipeline.json"
DAG_FILE = """
from livecalc.integrations.airflow import LiveCalcDagBuilder
config = {config!r}
one_task = LiveCalcDagBuilder(config, dag_id="bench_one_task", per_node_tasks=False).build()
per_node = LiveCalcDagBuilder(config, dag_id="bench_per_node").build()
"""


def _setup(home: Path) -> Path:
    """Examples copied under ``home``, Airflow configured there; the config's path."""
    shutil.copytree(EXAMPLES, home / "examples", ignore=shutil.ignore_patterns(
        "output", "native", "airflow", "__pycache__"))  # fmt: skip
    config = home / "examples" / CONFIG
    dags = home / "dags"
    dags.mkdir()
    (dags / "bench_dags.py").write_text(DAG_FILE.format(config=str(config)))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow/airflow.db",
            "LIVECALC_HOME": str(home / "livecalc"),
        }
    )
    (home / "airflow").mkdir()
    return config


def _seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dags", default="one_task,per_node")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    try:
        config = _setup(home)
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        import livecalc

        db.initdb()
        dags = DagBag(str(home / "dags")).dags
        livecalc.run(config)  # warm: numba's cache, the store
        for name in args.dags.split(","):
            dag = dags[f"bench_{name}"]
            t0 = time.perf_counter()
            first = dag.test()
            first_s = time.perf_counter() - t0
            assert "success" == first.state, f"bench_{name}: {first.state}"
            # Alternating runs, so drift on a shared machine hits both sides alike.
            base_times, dag_times = [], []
            for _ in range(args.repeats):
                base_times.append(_seconds(lambda: livecalc.run(config)))
                dag_times.append(_seconds(dag.test))
            base, med = statistics.median(base_times), statistics.median(dag_times)
            print(f"{name}: livecalc.run median {base:.3f} s; dag.test median {med:.3f} s; "
                  f"ratio {med / base:.2f}x; overhead {med - base:+.3f} s per run "
                  f"(first dag.test in the process {first_s:.3f} s)")  # fmt: skip
            print(f"  livecalc.run runs {' '.join(f'{t:.3f}' for t in base_times)}")
            print(f"  dag.test runs     {' '.join(f'{t:.3f}' for t in dag_times)}")
        bin_dir = Path(sys.executable).parent
        t0 = time.perf_counter()
        subprocess.run([str(bin_dir / "livecalc"), "run", str(config), "--no-progress"],
                       check=True, capture_output=True)  # fmt: skip
        cli = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([str(bin_dir / "airflow"), "dags", "test", "bench_one_task"],
                       check=True, capture_output=True)  # fmt: skip
        cli_airflow = time.perf_counter() - t0
        print(
            f"shell: livecalc run {cli:.3f} s; airflow dags test bench_one_task "
            f"{cli_airflow:.3f} s; ratio {cli_airflow / cli:.2f}x"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
