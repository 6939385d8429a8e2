"""LiveCalcDagBuilder: validate() names every problem; build() gives the config's DAG."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow_env import DAGS, write_dag_file

from livecalc.errors import ConfigurationError
from livecalc.integrations.airflow import LiveCalcDagBuilder, LiveCalcOperator

FULL = DAGS.parent / "dag_config_full_pipeline.json"


def _config(folder: Path, change: Any) -> Path:
    """The full example, changed by ``change(raw)``, in ``folder`` (its data beside it)."""
    raw = json.loads(FULL.read_text())
    raw["data_sources"]["policies"]["path"] = str(DAGS.parent / "data" / "policies.parquet")
    change(raw)
    path = folder / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestValidate:
    @pytest.mark.parametrize("name", ["esg_projection", "full_pipeline", "projection_only"])
    def test_the_examples_are_valid(self, name: str) -> None:
        """Each example config validates with no problem."""
        assert (True, []) == LiveCalcDagBuilder(DAGS.parent / f"dag_config_{name}.json").validate()

    def test_every_config_problem_is_listed_with_the_file(self, tmp_path: Path) -> None:
        """An unknown input and an unknown engine type: two problems, each with the file and
        the JSON path."""

        def break_it(raw: dict[str, Any]) -> None:
            raw["engines"][2]["inputs"] = ["resultz"]
            raw["engines"][1]["type"] = "projektion"

        config = _config(tmp_path, break_it)

        ok, problems = LiveCalcDagBuilder(config).validate()

        assert not ok
        assert 2 == len(problems), problems
        assert all(p.startswith(f"{config}: engines[") for p in problems)
        assert any("'resultz' is produced by no engine" in p and "'results'" in p for p in problems)
        assert any("engines[1].type" in p and "projektion" in p for p in problems)

    def test_missing_and_unreadable_files(self, tmp_path: Path) -> None:
        """A config that is not there, or not JSON: one problem naming it."""
        (tmp_path / "bad.json").write_text("{not json")

        missing = LiveCalcDagBuilder(tmp_path / "nope.json").validate()
        bad = LiveCalcDagBuilder(tmp_path / "bad.json").validate()

        assert not missing[0] and "nope.json" in missing[1][0]
        assert not bad[0] and "bad.json" in bad[1][0]

    def test_engine_id_that_is_no_airflow_task_id(self, tmp_path: Path) -> None:
        """An engine id of 260 characters (LiveCalc allows it, Airflow's task ids stop at 250):
        a problem per node task, none for the one-task DAG."""
        long_id = "esg_" + "x" * 256

        def rename(raw: dict[str, Any]) -> None:
            raw["engines"][0]["id"] = long_id
            raw["engines"][1]["inputs"] = ["policies", "scenarios"]

        config = _config(tmp_path, rename)

        per_node = LiveCalcDagBuilder(config).validate()
        one_task = LiveCalcDagBuilder(config, per_node_tasks=False).validate()

        assert (False, 1) == (per_node[0], len(per_node[1]))
        assert f"engine id {long_id!r} is no valid Airflow task id" in per_node[1][0]
        assert "per_node_tasks=False" in per_node[1][0]
        assert (True, []) == one_task

    def test_bad_dag_id_and_retries(self) -> None:
        """A dag_id Airflow refuses and negative retries are problems too."""
        ok, problems = LiveCalcDagBuilder(FULL, dag_id="my dag", retries=-1).validate()

        assert not ok
        assert ["dag_id 'my dag'", "retries -1"] == [p.split(":")[0] for p in problems]

    def test_arguments_that_fail_only_at_run_time_are_problems_now(self) -> None:
        """An override of a key the engine does not know, chunk_size 0, an unknown executor
        and progress_every_chunks 0: each a problem of validate(), before any task runs."""
        ok, problems = LiveCalcDagBuilder(
            FULL,
            overrides=["projection.discount_ratee=0.03"],
            chunk_size=0,
            executor="spark",
            progress_every_chunks=0,
        ).validate()

        assert not ok
        assert 4 == len(problems), problems
        assert problems[0].startswith("executor 'spark': use one of local, processes, ray")
        assert problems[1].startswith("chunk_size 0: use 1 or more policies per chunk")
        assert problems[2].startswith("progress_every_chunks 0: use 1 or more")
        assert problems[3].startswith(f"{FULL}: engines[1].config.discount_ratee: unknown key")
        assert "did you mean 'discount_rate'?" in problems[3]

    def test_a_value_the_engine_refuses_is_a_problem(self) -> None:
        """An override the config model accepts but the engine refuses (an unknown ESG
        model) is found by initialising the engines, as `livecalc validate` does."""
        ok, problems = LiveCalcDagBuilder(FULL, overrides=["esg.model=black_scholez"]).validate()

        assert not ok
        assert 1 == len(problems), problems
        assert problems[0].startswith(f"{FULL}: engines[0].config.model")

    def test_without_check_files_engines_are_not_initialised(self) -> None:
        """check_files=False (data written later): the engines' own checks wait for the run;
        the builder's own arguments are still checked."""
        builder = LiveCalcDagBuilder(
            FULL, overrides=["projection.discount_ratee=0.03"], check_files=False
        )

        assert (True, []) == builder.validate()
        assert ["chunk_size 0"] == [
            p.split(":")[0]
            for p in LiveCalcDagBuilder(FULL, chunk_size=0, check_files=False).validate()[1]
        ]


class TestBuild:
    def test_one_task_per_node_with_the_config_dependencies(self) -> None:
        """Full example: esg -> projection -> solver, each a LiveCalcOperator of its node."""
        dag = LiveCalcDagBuilder(FULL, retries=3, retry_delay=timedelta(seconds=5)).build()
        tasks = dag.task_dict

        assert "livecalc_dag_config_full_pipeline" == dag.dag_id
        assert {"esg": set(), "projection": {"esg"}, "solver": {"projection"}} == {
            k: t.upstream_task_ids for k, t in tasks.items()
        }
        assert all(isinstance(t, LiveCalcOperator) for t in tasks.values())
        assert {"esg", "projection", "solver"} == {t.node for t in tasks.values()}
        assert {(3, timedelta(seconds=5))} == {(t.retries, t.retry_delay) for t in tasks.values()}
        assert str(FULL) == tasks["esg"].config_path

    def test_one_task_for_the_whole_pipeline(self) -> None:
        """per_node_tasks=False: one task, running every node."""
        dag = LiveCalcDagBuilder(FULL, dag_id="whole", per_node_tasks=False, task_id="run").build()

        (task,) = dag.task_dict.values()
        assert ("run", None) == (task.task_id, task.node)

    def test_dag_arguments_pass_through_and_survive_two_builds(self) -> None:
        """tags and other DAG arguments reach the DAG, on every build()."""
        builder = LiveCalcDagBuilder(FULL, tags=["valuation"], max_active_runs=1)

        first, second = builder.build(), builder.build()

        assert {"valuation"} == set(first.tags) == set(second.tags)
        assert 1 == second.max_active_runs

    def test_invalid_config_raises_with_every_problem(self, tmp_path: Path) -> None:
        """build() on a broken config: ConfigurationError naming the DAG and each problem."""
        config = _config(tmp_path, lambda raw: raw["engines"][2].update(inputs=["resultz"]))

        with pytest.raises(ConfigurationError, match="cannot build DAG 'broken'") as caught:
            LiveCalcDagBuilder(config, dag_id="broken").build()

        assert "'resultz' is produced by no engine" in str(caught.value)

    def test_broken_config_is_the_dag_file_import_error(
        self, tmp_path: Path, dag_files: list[Path]
    ) -> None:
        """A DAG file whose config is broken shows in DagBag.import_errors with the problem."""
        config = _config(tmp_path, lambda raw: raw["engines"][2].update(inputs=["resultz"]))
        dag_files.append(write_dag_file("broken", (
            "from livecalc.integrations.airflow import LiveCalcDagBuilder\n"
            f"dag = LiveCalcDagBuilder({str(config)!r}, dag_id='broken').build()\n"
        )))  # fmt: skip

        bag = DagBag(str(dag_files[0]))

        (error,) = bag.import_errors.values()
        assert "broken" not in bag.dags
        assert "'resultz' is produced by no engine" in error
