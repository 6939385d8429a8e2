"""DAG runs through dag.test(): the example DAGs, declared checks, failures and retries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow_env import DAGS, EXAMPLES, write_dag_file

import livecalc
from livecalc.integrations.airflow import airflow_run_id
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.store import RunStore

EXAMPLE_DAGS = {
    "livecalc_esg_projection": "dag_config_esg_projection.json",
    "livecalc_full_pipeline": "dag_config_full_pipeline.json",
    "livecalc_full_pipeline_one_task": "dag_config_full_pipeline.json",
    "livecalc_projection_only": "dag_config_projection_only.json",
}


def _bag(path: Path) -> DagBag:
    bag = DagBag(str(path))
    assert {} == bag.import_errors
    return bag


def _without_seconds(value: Any) -> Any:
    """A run's statistics without its timings (which differ between two runs)."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def _task_values(dag_run: Any) -> tuple[dict[str, Any], dict[str, Path]]:
    """The statistics of every node the DAG run's tasks ran, and every file they wrote."""
    statistics: dict[str, Any] = {}
    files: dict[str, Path] = {}
    for ti in dag_run.get_task_instances():
        state = ti.xcom_pull(task_ids=ti.task_id)
        record = RunStore().get(state["run_id"])
        for node in record["nodes"]:
            if node["status"] == "succeeded" and node["outputs"]:
                statistics[node["node_id"]] = node["outputs"]
        files.update({k: Path(v) for k, v in state["outputs"].items()})
    return json.loads(json.dumps(_without_seconds(statistics))), files


class TestExampleDagFile:
    def test_dagbag_loads_the_example_dags_without_import_errors(self) -> None:
        """The example DAG file gives four DAGs; the full one is esg >> projection >> solver."""
        bag = _bag(DAGS / "livecalc_dags.py")
        full = bag.dags["livecalc_full_pipeline"]

        assert set(EXAMPLE_DAGS) == set(bag.dags)
        assert {"esg", "projection", "solver"} == set(full.task_dict)
        assert {"projection"} == full.task_dict["esg"].downstream_task_ids
        assert {"solver"} == full.task_dict["projection"].downstream_task_ids
        assert ["livecalc"] == list(bag.dags["livecalc_full_pipeline_one_task"].task_dict)

    @pytest.mark.parametrize("executor", ["local", "processes", "ray"])
    def test_every_livecalc_executor_loads(
        self, executor: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The example DAG file with LIVECALC_EXECUTOR set: no import error (Airflow's own
        BaseOperator.executor stays unset), every task runs its node on that executor."""
        monkeypatch.setenv("LIVECALC_EXECUTOR", executor)

        bag = _bag(DAGS / "livecalc_dags.py")
        tasks = [t for dag in bag.dags.values() for t in dag.tasks]

        assert set(EXAMPLE_DAGS) == set(bag.dags)
        assert 7 == len(tasks)
        assert {(executor, None)} == {(t.livecalc_executor, t.executor) for t in tasks}

    def test_a_dag_on_processes_runs_there(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """dag.test() of the projection-only example built with executor 'processes': the
        task succeeds and its LiveCalc run is recorded as run on processes."""
        monkeypatch.setenv("LIVECALC_EXECUTOR", "processes")
        dag = _bag(DAGS / "livecalc_dags.py").dags["livecalc_projection_only"]

        dag_run = dag.test()
        (ti,) = dag_run.get_task_instances()
        record = RunStore().get(ti.xcom_pull(task_ids=ti.task_id)["run_id"])

        assert "success" == dag_run.state
        assert "processes" == record["provenance"]["executor"]

    @pytest.mark.parametrize("dag_id", sorted(EXAMPLE_DAGS))
    def test_dag_test_gives_the_values_of_livecalc_run(
        self, dag_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """dag.test() of an example DAG: success, the same statistics and tables as
        livecalc.run; the task log follows the nodes."""
        shutil.copytree(EXAMPLES / "data", tmp_path / "data")
        config = shutil.copy(EXAMPLES / EXAMPLE_DAGS[dag_id], tmp_path)
        reference = livecalc.run(config, store=False)
        dag = _bag(DAGS / "livecalc_dags.py").dags[dag_id]

        dag_run = dag.test()
        statistics, files = _task_values(dag_run)

        task_log = [r.getMessage() for r in caplog.records if r.name == "airflow.task.livecalc"]
        finished = [json.loads(m.split(" ", 1)[1]) for m in task_log
                    if m.startswith("progress_node_finished ")]  # fmt: skip

        assert "success" == dag_run.state
        assert json.loads(json.dumps(_without_seconds(reference.statistics))) == statistics
        assert set(reference.nodes) == {line["engine_id"] for line in finished}
        assert set(reference.written) - {"summary"} <= set(files)
        for name, path in reference.written.items():
            if Path(path).suffix == ".parquet":
                assert pq.read_table(path).equals(pq.read_table(files[name])), name


def _check_config(name: str, severity: str) -> Path:
    """The full example with one declared check that cannot pass (mean NPV above 1e12)."""
    raw = json.loads((DAGS.parent / "dag_config_full_pipeline.json").read_text())
    raw["checks"] = [
        {"name": "mean_npv_floor", "kind": "metric", "node": "solver", "expr": "mean > 1e12",
         "severity": severity},
    ]  # fmt: skip
    raw["output"] = {"path": f"output/{name}/results.parquet"}
    path = DAGS.parent / f"{name}.json"
    path.write_text(json.dumps(raw))
    return path


def _dag_file_for(config: Path, dag_id: str, **options: Any) -> str:
    """A DAG file building ``dag_id`` from ``config``; a failed task's error goes to
    ``<dag_id>.error`` (through Airflow's ``on_failure_callback``)."""
    args = "".join(f", {k}={v!r}" for k, v in options.items())
    error_file = DAGS.parent / f"{dag_id}.error"
    return (
        "from datetime import timedelta\n"
        "from pathlib import Path\n"
        "from livecalc.integrations.airflow import LiveCalcDagBuilder\n"
        "def record(context):\n"
        f"    Path({str(error_file)!r}).write_text(str(context['exception']))\n"
        f"dag = LiveCalcDagBuilder({str(config)!r}, dag_id={dag_id!r}, "
        "retry_delay=timedelta(0), default_args={'on_failure_callback': record}"
        f"{args}).build()\n"
    )


class TestDeclaredChecks:
    @pytest.mark.parametrize("per_node", [True, False], ids=["per_node", "one_task"])
    def test_failed_error_check_fails_the_task_with_its_message(
        self, per_node: bool, dag_files: list[Path]
    ) -> None:
        """An `error` check on the solver that fails: the task running the solver fails on
        try 1 (no retry, retries being left), the check's name and message in its error."""
        dag_id = f"check_error_{per_node}"
        config = _check_config(dag_id, "error")
        body = _dag_file_for(config, dag_id, per_node_tasks=per_node)
        dag_files.append(write_dag_file(dag_id, body))
        dag = _bag(dag_files[0]).dags[dag_id]

        dag_run = dag.test()
        states = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
        error = (DAGS.parent / f"{dag_id}.error").read_text()

        assert "failed" == dag_run.state
        if per_node:
            assert {"esg": ("success", 1), "projection": ("success", 1),
                    "solver": ("failed", 1)} == states  # fmt: skip
        else:
            assert {"livecalc": ("failed", 1)} == states
            assert f"output/{dag_id}/results.parquet" in error
        assert (
            "1 declared check(s) failed: mean_npv_floor: mean > 1e12: 503118 > 1e+12 is "
            "False" in error
        )

    def test_failed_warn_check_only_warns(self, dag_files: list[Path]) -> None:
        """A `warn` check that fails: the solver task succeeds; its run records the check."""
        config = _check_config("check_warn", "warn")
        dag_files.append(write_dag_file("check_warn", _dag_file_for(config, "check_warn")))
        dag = _bag(dag_files[0]).dags["check_warn"]

        dag_run = dag.test()
        ti = dag_run.get_task_instance("solver")
        record = RunStore().get(ti.xcom_pull(task_ids="solver", key="run_id"))

        assert "success" == dag_run.state
        assert [("mean_npv_floor", "warn", False)] == [
            (c["name"], c["severity"], c["passed"]) for c in record["checks"]
        ]


class TestOneVerdictPerCheck:
    def test_each_check_is_evaluated_by_one_task(self, dag_files: list[Path]) -> None:
        """A task per node: the ESG's task evaluates the martingale check (the projection's
        task, which lacks the ESG's metadata, does not evaluate it again and succeeds); the
        reconcile of the scenarios against the results is evaluated by the projection's task
        on the ESG task's kept scenarios, with the message of a whole run; the run-level SLA
        is in no task's record."""
        raw = json.loads((DAGS.parent / "dag_config_full_pipeline.json").read_text())
        raw["checks"] = [
            {"kind": "martingale", "dataset": "scenarios", "z_threshold": 6},
            {"kind": "reconcile", "name": "rates_vs_npv", "dataset": "scenarios",
             "column": "rate", "against": "results", "against_column": "npv",
             "severity": "warn"},
        ]  # fmt: skip
        raw["sla"] = {"run_seconds": 1e-6}
        raw["output"] = {"path": "output/one_verdict/results.parquet"}
        config = DAGS.parent / "one_verdict.json"
        config.write_text(json.dumps(raw))
        whole = livecalc.run(config, store=False)
        dag_files.append(write_dag_file("one_verdict", _dag_file_for(config, "one_verdict")))
        dag = _bag(dag_files[0]).dags["one_verdict"]

        dag_run = dag.test()
        records = {
            ti.task_id: RunStore().get(ti.xcom_pull(task_ids=ti.task_id, key="run_id"))
            for ti in dag_run.get_task_instances()
        }
        checks = {
            task: [(c["name"], c["passed"], c["message"]) for c in r["checks"]]
            for task, r in records.items()
        }
        reconcile = next(c for c in whole.summary.extras["checks"] if c["kind"] == "reconcile")

        assert "success" == dag_run.state
        assert {"succeeded"} == {r["status"] for r in records.values()}
        assert ["martingale:scenarios"] == [name for name, _, _ in checks["esg"]]
        assert checks["esg"][0][1]
        assert [("rates_vs_npv", False, reconcile["message"])] == checks["projection"]
        assert [] == checks["solver"]
        assert [] == [s for r in records.values() for s in r["sla"]]


def _failing_config(folder: Path) -> Path:
    """Echo in 4 chunks, then a node that always fails (LiveCalc's testing engines)."""
    write_policies(folder / "policies.parquet", generate_policies(100, seed=1))
    raw = {
        "plugins": ["livecalc.testing:register_testing_engines"],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
            {"id": "b", "type": "test_fail_n", "config": {"n": 99}, "inputs": ["a_out"],
             "outputs": ["b_out"]},
        ],
        "output": {"path": "out/{name}.parquet", "write": ["a_out", "b_out"]},
        "run": {"chunk_size": 25, "checkpoint_min_chunk_seconds": 0},
    }  # fmt: skip
    path = folder / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestFailures:
    def test_failed_node_is_retried_and_the_retry_resumes(
        self, tmp_path: Path, dag_files: list[Path]
    ) -> None:
        """A node that fails fails the try; Airflow's retry (in the same dag.test) resumes the
        LiveCalc run, reusing node a's 4 checkpointed chunks, and fails naming node b."""
        config = _failing_config(tmp_path)
        dag_files.append(write_dag_file("node_fails", _dag_file_for(
            config, "node_fails", per_node_tasks=False, retries=1)))  # fmt: skip
        dag = _bag(dag_files[0]).dags["node_fails"]

        dag_run = dag.test()
        (ti,) = dag_run.get_task_instances()
        error = (DAGS.parent / "node_fails.error").read_text()
        run_id = airflow_run_id("node_fails", dag_run.run_id, "livecalc")
        record = RunStore().get(run_id)
        node_a = next(n for n in record["nodes"] if n["node_id"] == "a")

        assert ("failed", 2) == (ti.state, ti.try_number)
        assert f"LiveCalc run {run_id} (attempt 2) failed: node 'b'" in error
        assert "planned failure" in error
        assert 1 == record["resumed"]
        # Every chunk was kept: the resume computes the last one again (its get_outputs()).
        assert (4, 3) == (node_a["chunks"], node_a["reused_chunks"])

    def test_config_error_at_run_time_fails_without_retry(
        self, tmp_path: Path, dag_files: list[Path]
    ) -> None:
        """Data missing when the task runs (the DAG built with check_files=False): the task
        fails on try 1 although retries are left, naming the file."""
        config = _failing_config(tmp_path)
        (tmp_path / "policies.parquet").unlink()
        dag_files.append(write_dag_file("no_data", _dag_file_for(
            config, "no_data", per_node_tasks=False, retries=2, check_files=False)))  # fmt: skip
        dag = _bag(dag_files[0]).dags["no_data"]

        dag_run = dag.test()
        (ti,) = dag_run.get_task_instances()
        error = (DAGS.parent / "no_data.error").read_text()

        assert ("failed", 1) == (ti.state, ti.try_number)
        assert f"LiveCalc config {config}" in error
        assert "policies.parquet" in error
