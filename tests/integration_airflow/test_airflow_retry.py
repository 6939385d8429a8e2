"""A LiveCalc task killed mid-run and retried by Airflow resumes from its chunk checkpoints.

Try 1 runs in a real Airflow process (``airflow dags test``) that is SIGKILLed once at least 4
of the projection's 20 chunks are checkpointed; the task is the whole pipeline, or the
projection node of a DAG with a task per node. Airflow's scheduler, finding the task instance
running with no process behind it, fails it into ``up_for_retry`` and schedules try 2; the test
does those two steps with Airflow's own task instance methods (``handle_failure``, the DAG
run's ``update_state``), then runs try 2 through Airflow (``airflow tasks test`` on that
task instance). Try 2 computes only the chunks try 1 did not finish, and writes the same bytes
as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from airflow.cli.cli_parser import get_parser
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.serialization.serialized_objects import DagSerialization
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from airflow_env import write_dag_file
from sqlalchemy import select

import livecalc
from livecalc.integrations.airflow import airflow_run_id
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.store import RunStore


def _projection_config(folder: Path) -> Path:
    """ESG (1,000 scenarios, 30 years) -> projection of 5,000 policies in 20 chunks, monthly
    steps: 12 times the annual work for the same output, so that a loaded machine (this test
    process not scheduled for a while) cannot see the run finish before it is killed."""
    write_policies(folder / "policies.parquet", generate_policies(5_000, seed=11, max_term=30))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "esg", "type": "esg", "outputs": ["scenarios"],
             "config": {"model": "hull_white", "outer": 10, "inner": 100, "years": 30,
                        "seed": 3}},
            {"id": "projection", "type": "projection",
             "config": {"output": "npv", "time_step": "monthly"},
             "inputs": ["policies", "scenarios"], "outputs": ["results"]},
        ],
        "output": {"path": "out/results.parquet"},
        # Every chunk checkpointed, however fast this machine computes it.
        "run": {"chunk_size": 250, "checkpoint_min_chunk_seconds": 0},
    }  # fmt: skip
    path = folder / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _data_bytes(path: Path) -> bytes:
    """A Parquet file's bytes before its footer: every data page, no key-value metadata."""
    raw = path.read_bytes()
    (footer,) = struct.unpack("<I", raw[-8:-4])
    return raw[: len(raw) - 8 - footer]


def _done(home: Path) -> int:
    """Projection chunks checkpointed so far (per node, the ESG's run has its own manifest)."""
    done = 0
    for manifest in home.glob("runs/*/manifest.json"):
        try:
            node = json.loads(manifest.read_text())["nodes"].get("projection")
        except ValueError:
            continue
        done = max(done, len(node["done"]) if node else 0)
    return done


def _kill_after_four_chunks(home: Path, dag_id: str) -> int:
    """Try 1 in `airflow dags test`, SIGKILLed once >= 4 chunks are checkpointed."""
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.Popen(
        [str(airflow), "dags", "test", dag_id],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while _done(home) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    # Frozen at once, so that it cannot finish its last chunks before the kill lands.
    os.kill(proc.pid, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert -signal.SIGKILL == proc.returncode
    return _done(home)


def _fail_and_reschedule(dag_file: Path, dag_id: str, task_id: str) -> str:
    """What the scheduler does with a running task instance whose process is gone: fail it
    (into up_for_retry, retries being left), then schedule its next try. Returns the run id."""
    dag = DagBag(str(dag_file)).dags[dag_id]
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        (dag_run,) = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).all()
        ti = dag_run.get_task_instance(task_id, session=session)
        assert (TaskInstanceState.RUNNING, 1) == (ti.state, ti.try_number)
        ti.task = scheduler_dag.get_task(task_id)
        ti.handle_failure("task process killed (SIGKILL)", session=session)
        assert TaskInstanceState.UP_FOR_RETRY == ti.state
        dag_run.dag = scheduler_dag
        schedulable, _ = dag_run.update_state(session=session)
        for ready in schedulable:
            ready.try_number += 1
            ready.state = TaskInstanceState.SCHEDULED
        run_id: str = dag_run.run_id
    return run_id


class TestRetryResumes:
    @pytest.mark.parametrize("per_node", [False, True], ids=["one_task", "per_node"])
    def test_killed_task_is_retried_from_its_checkpoint(
        self,
        per_node: bool,
        tmp_path: Path,
        livecalc_home: Path,
        dag_files: list[Path],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Try 2 reuses the >= 4 chunks try 1 checkpointed, computes the rest, same bytes
        (per node: the projection task, its scenarios read from the ESG task's XCom)."""
        dag_id = f"livecalc_retry_{'per_node' if per_node else 'one_task'}"
        task_id = "projection" if per_node else "livecalc"
        config = _projection_config(tmp_path)
        out = tmp_path / "out" / "results.parquet"
        assert livecalc.run(config, store=False).success
        reference = out.rename(tmp_path / "reference.parquet")
        dag_files.append(write_dag_file(dag_id, (
            "from datetime import timedelta\n"
            "from livecalc.integrations.airflow import LiveCalcDagBuilder\n"
            f"dag = LiveCalcDagBuilder({str(config)!r}, dag_id={dag_id!r}, "
            f"per_node_tasks={per_node}, retries=1, retry_delay=timedelta(0)).build()\n"
        )))  # fmt: skip

        done = _kill_after_four_chunks(livecalc_home, dag_id)
        run_id = _fail_and_reschedule(dag_files[0], dag_id, task_id)
        # `airflow tasks test` sets AIRFLOW_TEST_MODE in this process; undone after the test.
        monkeypatch.setenv("AIRFLOW_TEST_MODE", "False")
        args = get_parser().parse_args(["tasks", "test", dag_id, task_id, run_id])
        args.func(args)

        with create_session() as session:
            dag_run = session.scalars(select(DagRun).where(DagRun.run_id == run_id)).one()
            ti = dag_run.get_task_instance(task_id, session=session)
            state = ti.xcom_pull(task_ids=task_id, session=session)
        livecalc_run = airflow_run_id(dag_id, run_id, task_id, -1)
        record = RunStore().get(livecalc_run)
        projection = next(n for n in record["nodes"] if n["node_id"] == "projection")

        assert 4 <= done < 20
        assert (TaskInstanceState.SUCCESS, 2) == (ti.state, ti.try_number)
        assert {"run_id": livecalc_run, "status": "succeeded", "resumed": True} == {
            k: state[k] for k in ("run_id", "status", "resumed")
        }
        assert "succeeded" == record["status"] and 1 == record["resumed"]
        assert (20, done) == (projection["chunks"], projection["reused_chunks"])
        assert _data_bytes(reference) == _data_bytes(out)
        assert pq.read_table(reference).equals(pq.read_table(out))
