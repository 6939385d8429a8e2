"""AirflowRunContext: one LiveCalc run id per task instance, the try number as the attempt."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from livecalc.integrations.airflow import AirflowRunContext, airflow_run_id
from livecalc.ports import RunContext
from livecalc.ports.context import check_run_id


@dataclass
class _TI:
    """The fields of Airflow's task instance the context reads."""

    dag_id: str = "livecalc_full_pipeline"
    run_id: str = "manual__2026-11-25T20:45:37.624807+00:00"
    task_id: str = "projection"
    map_index: int | None = -1
    try_number: int | None = 1


class TestRunId:
    def test_every_try_of_a_task_instance_gets_the_same_run_id(self) -> None:
        """Tries 1 and 3 of one task instance share the run id; it is a valid LiveCalc id."""
        first = AirflowRunContext(_TI(try_number=1))
        third = AirflowRunContext(_TI(try_number=3))

        assert first.run_id == third.run_id
        assert first.run_id == check_run_id(first.run_id)
        assert first.run_id.startswith("af-") and 19 == len(first.run_id)
        assert (1, 3) == (first.attempt, third.attempt)

    @pytest.mark.parametrize(
        "other",
        [
            _TI(dag_id="other_dag"),
            _TI(run_id="manual__2026-11-26T00:00:00+00:00"),
            _TI(task_id="solver"),
            _TI(map_index=0),
        ],
    )
    def test_another_task_instance_gets_another_run_id(self, other: _TI) -> None:
        """Another DAG, DAG run, task or map index: another LiveCalc run (no shared checkpoint)."""
        assert AirflowRunContext(_TI()).run_id != AirflowRunContext(other).run_id

    def test_fields_cannot_be_shifted_into_one_another(self) -> None:
        """('a_b', 'c') and ('a', 'b_c') hash apart: the key keeps the fields apart."""
        assert airflow_run_id("a_b", "c", "t") != airflow_run_id("a", "b_c", "t")

    def test_unscheduled_try_number_counts_as_the_first_attempt(self) -> None:
        """`airflow tasks test` on a fresh task instance has try number 0: attempt 1."""
        assert 1 == AirflowRunContext(_TI(try_number=0)).attempt
        assert 1 == AirflowRunContext(_TI(try_number=None)).attempt


class TestProtocol:
    def test_is_a_livecalc_run_context(self) -> None:
        """The adapter satisfies livecalc.ports.RunContext; its repr names the task instance."""
        ctx = AirflowRunContext(_TI(map_index=2))

        assert isinstance(ctx, RunContext)
        assert "livecalc_full_pipeline/manual__" in repr(ctx) and "projection[2]" in repr(ctx)

    def test_log_lines_go_to_the_task_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        """log(level, event, **fields) writes one line at that level, fields as JSON."""
        ctx = AirflowRunContext(_TI())
        with caplog.at_level(logging.DEBUG, logger="airflow.task.livecalc"):
            ctx.log("warning", "livecalc_check_failed", name="npv_finite", value=3)

        (record,) = [r for r in caplog.records if r.name == "airflow.task.livecalc"]
        assert logging.WARNING == record.levelno
        assert 'livecalc_check_failed {"name": "npv_finite", "value": 3}' == record.getMessage()


def test_import_livecalc_never_imports_airflow() -> None:
    """`import livecalc` and its public names leave Airflow unimported (an optional extra)."""
    code = (
        "import sys, livecalc; livecalc.run; livecalc.PipelineConfig; "
        "import livecalc.ops.session, livecalc.cli.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'dagster') "
        "or m.startswith('livecalc.integrations')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "[]" == out.stdout.strip()


class TestLogging:
    def test_a_livecalc_run_leaves_the_hosts_structlog_configuration_alone(
        self, tmp_path: Path
    ) -> None:
        """Airflow 3 logs through structlog: configuring LiveCalc's logging and a whole run
        (engines, store, checks) neither change the host's structlog configuration."""
        import livecalc

        saved = structlog.get_config()
        marker = structlog.processors.KeyValueRenderer()
        structlog.configure(processors=[marker], logger_factory=structlog.PrintLoggerFactory())
        host = structlog.get_config()
        try:
            config = _small_pipeline(tmp_path)
            livecalc.configure_logging(livecalc.LoggerConfig(min_level="INFO"))
            assert livecalc.run(config, base_dir=tmp_path).success
            livecalc.configure_logging()
            after = structlog.get_config()
        finally:
            structlog.configure(**saved)

        assert [marker] == after["processors"]
        assert host["processors"] is after["processors"]
        assert host["logger_factory"] is after["logger_factory"]


def _small_pipeline(folder: Path) -> dict[str, Any]:
    """ESG -> projection of 200 policies in 4 chunks, as a dict config based in ``folder``."""
    from livecalc.io.generate import generate_policies, write_policies

    write_policies(folder / "policies.parquet", generate_policies(200, seed=2, max_term=20))
    return {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "esg", "type": "esg", "outputs": ["scenarios"],
             "config": {"model": "vasicek", "outer": 2, "inner": 5, "years": 20, "seed": 1}},
            {"id": "projection", "type": "projection", "config": {"output": "npv"},
             "inputs": ["policies", "scenarios"], "outputs": ["results"]},
        ],
        "output": {"path": "out/results.parquet"},
        "run": {"chunk_size": 50},
    }  # fmt: skip
