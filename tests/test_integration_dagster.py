"""LiveCalc under Dagster: the example configs materialized in-process by the real Dagster."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

import livecalc
from livecalc.errors import ConfigurationError
from livecalc.integrations.dagster import (
    STORE_RESOURCE_KEY,
    DagsterRunContext,
    definitions_from_config,
    livecalc_run_id,
)
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ports.context import check_run_id
from livecalc.runtime.engine import ExecutionResult
from livecalc.runtime.factory import EngineFactory
from livecalc.testing import EchoEngine


class FlakyEchoEngine(EchoEngine):
    """Echoes, except that its third chunk fails while the marker file is missing (and
    writes it): the first attempt fails half way, a retry goes through."""

    engine_type = "test_flaky"

    def initialize(self, config: Any, credentials: Any = None) -> None:
        self.marker = Path(config["marker"])
        super().initialize(config, credentials)

    def run_chunk(self, input_buffer: Any, output_buffer: Any) -> ExecutionResult:
        if self.calls == 2 and not self.marker.exists():
            self.marker.write_text("failed once")
            raise RuntimeError("flaky: the first attempt fails at its third chunk")
        return super().run_chunk(input_buffer, output_buffer)


def register_flaky(factory: EngineFactory) -> None:
    """The ``plugins`` entry of the retry test's config."""
    factory.register_engine("test_flaky", FlakyEchoEngine)


EXAMPLES = Path(__file__).parents[1] / "examples"
CONFIGS = ("dag_config_full_pipeline", "dag_config_esg_projection", "dag_config_projection_only")
PLUGIN = "livecalc.testing:register_testing_engines"


def _copy_examples(folder: Path) -> Path:
    """A copy of the example configs and data in ``folder`` (runs write nowhere else)."""
    folder.mkdir()
    for name in CONFIGS:
        shutil.copy(EXAMPLES / f"{name}.json", folder)
    shutil.copytree(EXAMPLES / "data", folder / "data")
    return folder


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the examples for Dagster to run."""
    return _copy_examples(tmp_path / "dagster")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A throw-away Dagster instance (its event log lives as long as the test)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def _materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: Any = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],  # type: ignore[list-item]
        instance=instance,
        resources=defs.resources,
        selection=selection,
        raise_on_error=raise_on_error,
    )


def _metadata(result: dg.ExecuteInProcessResult, key: list[str]) -> dict[str, Any]:
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    assert 1 == len(events), f"{key}: {len(events)} materializations"
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_ASSET_KEYS = "{ assetNodes { assetKey { path } } }"


def _asset_keys_when_served(
    url: str, proc: subprocess.Popen[bytes], seconds: float
) -> set[tuple[str, ...]]:
    """The asset keys the webserver's GraphQL lists, once it answers with some (the code
    location loads after the server starts); fails when the process ends or time is up."""
    import httpx

    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode} before serving")
        try:
            answer = httpx.post(url, json={"query": _ASSET_KEYS}, timeout=10)
            nodes = answer.json().get("data", {}).get("assetNodes") or []
            if nodes:
                return {tuple(n["assetKey"]["path"]) for n in nodes}
            last = answer.text[:300]
        except (httpx.HTTPError, ValueError) as exc:
            last = str(exc)
        time.sleep(1)
    pytest.fail(f"no asset graph from {url} in {seconds} s (last: {last})")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (webserver, daemon, code server), SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _pipeline(folder: Path, checks: list[dict[str, Any]], **extra: Any) -> Path:
    """ESG (2 x 20 paths, 10 years) -> projection (30 policies) -> solver, with ``checks``."""
    write_policies(folder / "policies.parquet", generate_policies(30, seed=5, max_term=10))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {"model": "hull_white", "outer": 2, "inner": 20, "years": 10, "seed": 1},
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "npv"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
            {
                "id": "solver",
                "type": "solver",
                "config": {"metrics": ["mean", "var_99_5", "cte_99_5"]},
                "inputs": ["results"],
                "outputs": ["solution"],
            },
        ],
        "output": {"path": "out/results.parquet"},
        "run": {"chunk_size": 16},
        "checks": checks,
        **extra,
    }
    path = folder / "checked.json"
    path.write_text(json.dumps(raw))
    return path


class TestDefinitions:
    def test_three_examples_load_as_groups_jobs_and_resources(self, examples: Path) -> None:
        """Each example config is an asset group with its job and resource; data sources are
        external assets and dependencies follow the DAG."""
        defs = definitions_from_config(sorted(examples.glob("dag_config_*.json")))

        dg.Definitions.validate_loadable(defs)
        graph = defs.resolve_asset_graph()
        full = "dag_config_full_pipeline"
        results = dg.AssetKey([full, "projection", "results"])
        assert {f"{name}_job" for name in CONFIGS} <= {j.name for j in defs.jobs or []}
        assert {STORE_RESOURCE_KEY, *(f"livecalc_{name}" for name in CONFIGS)} == set(
            defs.resources or {}
        )
        assert {dg.AssetKey([full, "policies"]), dg.AssetKey([full, "esg", "scenarios"])} == set(
            graph.get(results).parent_keys
        )
        assert not graph.get(dg.AssetKey([full, "policies"])).is_materializable
        assert full == graph.get(results).group_name
        # full: policies + 3 outputs; esg_projection: policies + 2; projection_only: 2 + 1.
        assert 4 + 3 + 3 == len([k for k in graph.get_all_asset_keys() if k.path[0] in CONFIGS])

    def test_example_file_loads_with_the_dagster_cli(self, tmp_path: Path) -> None:
        """`dagster definitions validate -f examples/dagster/definitions.py` accepts the file."""
        env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
        dagster = Path(sys.executable).with_name("dagster")

        out = subprocess.run(
            [str(dagster), "definitions", "validate", "-f", "examples/dagster/definitions.py"],
            cwd=EXAMPLES.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert 0 == out.returncode, out.stdout + out.stderr
        assert "Validation successful for code location definitions.py" in out.stdout + out.stderr

    @pytest.mark.slow
    def test_dagster_dev_serves_the_example_asset_graph(self, tmp_path: Path) -> None:
        """`dagster dev -f examples/dagster/definitions.py`, as the docs show it, on a free
        loopback port: its GraphQL lists every asset of the three example pipelines; the
        whole process group is stopped after."""
        port = _free_port()
        (tmp_path / "dagster_home").mkdir()
        (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "LIVECALC_HOME": str(tmp_path / "livecalc_home"),
        }
        dagster = Path(sys.executable).with_name("dagster")
        with (tmp_path / "dev.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(dagster), "dev", "-f", "examples/dagster/definitions.py",
                 "-h", "127.0.0.1", "-p", str(port)],
                cwd=EXAMPLES.parent, env=env, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                keys = _asset_keys_when_served(f"http://127.0.0.1:{port}/graphql", proc, 240)
            finally:
                _stop_group(proc)

        full, esg_projection, projection_only = CONFIGS
        assert {
            (full, "policies"), (full, "esg", "scenarios"), (full, "projection", "results"),
            (full, "solver", "solution"),
            (esg_projection, "policies"), (esg_projection, "esg", "scenarios"),
            (esg_projection, "projection", "totals"),
            (projection_only, "policies"), (projection_only, "scenarios"),
            (projection_only, "projection", "results"),
        } == keys  # fmt: skip

    def test_same_stem_twice_is_refused(self, examples: Path, tmp_path: Path) -> None:
        """Two configs with the same file name would share asset keys: a clear error."""
        other = tmp_path / "other"
        other.mkdir()
        shutil.copytree(examples / "data", other / "data")
        shutil.copy(examples / "dag_config_full_pipeline.json", other)

        with pytest.raises(ConfigurationError) as info:
            definitions_from_config(
                [
                    examples / "dag_config_full_pipeline.json",
                    other / "dag_config_full_pipeline.json",
                ]
            )

        assert "is taken by" in str(info.value)
        assert "rename one of the files" in str(info.value)

    def test_a_config_named_store_is_refused(self, examples: Path) -> None:
        """store.json would get the resource key livecalc_store, the run store's DuckDB
        resource: refused, naming the file and the fix, instead of replacing it."""
        config = examples / "store.json"
        shutil.copy(examples / "dag_config_projection_only.json", config)

        with pytest.raises(ConfigurationError) as info:
            definitions_from_config(config)

        assert f"{config}: its pipeline name 'store'" in str(info.value)
        assert "'livecalc_store', which is the run store's; rename the file" in str(info.value)

    @pytest.mark.parametrize("inside", [False, True], ids=["file", "folder_in_file"])
    def test_a_store_that_is_a_file_is_a_configuration_error(
        self, examples: Path, tmp_path: Path, inside: bool
    ) -> None:
        """store= naming a file that is no .duckdb store (or a folder inside one): a
        ConfigurationError naming it, not a raw FileExistsError or NotADirectoryError."""
        (tmp_path / "notes.txt").write_text("not a store")
        store = tmp_path / "notes.txt" / "store" if inside else tmp_path / "notes.txt"

        with pytest.raises(ConfigurationError) as info:
            definitions_from_config(examples / "dag_config_projection_only.json", store=store)

        assert f"store {str(store)!r}: cannot hold the run store" in str(info.value)
        assert "give a folder (or a .duckdb file) LiveCalc can write" in str(info.value)

    def test_unknown_executor_is_refused(self, examples: Path) -> None:
        """An executor LiveCalc does not have is refused when the definitions are built."""
        with pytest.raises(ConfigurationError) as info:
            definitions_from_config(examples / "dag_config_full_pipeline.json", executor="spark")

        assert "unknown executor 'spark'; use one of local, processes, ray" in str(info.value)

    def test_invalid_config_names_the_problem(self, tmp_path: Path) -> None:
        """A config with an unknown engine type is refused before Dagster sees it."""
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"engines": [{"id": "x", "type": "nope", "outputs": ["o"]}]}))

        with pytest.raises(ConfigurationError) as info:
            definitions_from_config(bad)

        assert "engines[0]" in str(info.value)

    def test_names_that_collide_as_dagster_names_are_refused(self, tmp_path: Path) -> None:
        """Node ids 'a-b' and 'a_b' both become Dagster's 'a_b': the error says so."""
        write_policies(tmp_path / "policies.parquet", generate_policies(5, seed=1))
        raw = {
            "plugins": [PLUGIN],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "a-b", "type": "test_echo", "inputs": ["policies"], "outputs": ["x"]},
                {"id": "a_b", "type": "test_echo", "inputs": ["x"], "outputs": ["x2"]},
            ],
        }
        (tmp_path / "p.json").write_text(json.dumps(raw))

        with pytest.raises(ConfigurationError) as info:
            definitions_from_config(tmp_path / "p.json")

        assert "Dagster names allow A-Z a-z 0-9 _" in str(info.value)


class TestMaterialize:
    def test_examples_give_the_values_of_livecalc_run(
        self, examples: Path, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """The three examples materialized by Dagster write the same tables, and report the
        same solver metrics, as a plain `livecalc.run` of each config."""
        plain = _copy_examples(tmp_path / "plain")
        defs = definitions_from_config(sorted(examples.glob("dag_config_*.json")))

        result = _materialize(defs, instance)
        expected = {name: livecalc.run(plain / f"{name}.json", store=False) for name in CONFIGS}

        assert result.success
        for name, run in expected.items():
            for output, path in run.written.items():
                if output == "summary":
                    continue
                ours = pq.read_table(examples / path.relative_to(plain))
                assert pq.read_table(path).equals(ours), f"{name}: {output} differs"
        solution = _metadata(result, ["dag_config_full_pipeline", "solver", "solution"])
        metrics = expected["dag_config_full_pipeline"].statistics["solver"]["metrics"]
        assert metrics["cte_95"] == solution["metrics/metrics.cte_95"]
        assert metrics["mean"] == solution["metrics/metrics.mean"]

    def test_materialization_metadata(self, examples: Path, instance: dg.DagsterInstance) -> None:
        """A dataset's materialization says rows, seconds, its file, the LiveCalc run id and
        the provenance (the config's hash and the input files' sha256)."""
        config = examples / "dag_config_projection_only.json"
        defs = definitions_from_config(config)

        result = _materialize(defs, instance)
        meta = _metadata(result, ["dag_config_projection_only", "projection", "results"])

        assert 200 * 100 == meta["rows"]
        assert meta["seconds"] > 0
        assert pq.read_table(meta["path"]).num_rows == meta["rows"]
        assert meta["livecalc/run_id"].startswith(result.run_id)
        assert "succeeded" == meta["livecalc/status"]
        provenance = meta["provenance"]
        assert str(config.resolve()) == provenance["config_path"]
        assert 64 == len(provenance["config_hash"])
        assert {"policies.parquet", "scenarios.parquet"} == {
            Path(i["path"]).name for i in provenance["inputs"]
        }

    def test_runs_are_in_the_store_and_its_duckdb_resource(
        self, examples: Path, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """Each step's LiveCalc run is recorded (source dagster, the Dagster run id in its id)
        in the given store, which the read-only DuckDB resource reads."""
        store = tmp_path / "store"
        defs = definitions_from_config(examples / "dag_config_esg_projection.json", store=store)

        result = _materialize(defs, instance)
        duckdb = (defs.resources or {})[STORE_RESOURCE_KEY]
        with duckdb.get_connection() as con:
            rows = con.execute("SELECT run_id, status, source FROM runs").fetchall()
            with pytest.raises(Exception, match="read-only"):
                con.execute("DELETE FROM runs")

        assert rows
        assert all(run_id.startswith(result.run_id) for run_id, _, _ in rows)
        assert {("succeeded", "dagster")} == {(status, source) for _, status, source in rows}

    def test_the_executor_given_runs_the_engines(
        self, examples: Path, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """executor='processes' runs the projection in worker processes (the store says so)
        and writes the same results as the local run."""
        plain = _copy_examples(tmp_path / "plain")
        defs = definitions_from_config(
            examples / "dag_config_projection_only.json", executor="processes"
        )

        _materialize(defs, instance)
        with (defs.resources or {})[STORE_RESOURCE_KEY].get_connection() as con:
            executors = {row[0] for row in con.execute("SELECT executor FROM runs").fetchall()}
        expected = livecalc.run(plain / "dag_config_projection_only.json", store=False)

        assert {"processes"} == executors
        assert pq.read_table(expected.written["results"]).equals(
            pq.read_table(examples / "output" / "projection_only" / "results.parquet")
        )


class TestNodeSteps:
    def test_one_asset_again_reuses_the_upstream_files(
        self, examples: Path, instance: dg.DagsterInstance
    ) -> None:
        """Materializing only the projection again runs only the projection, on the scenarios
        file the ESG's materialization recorded: same results, the ESG not run again."""
        defs = definitions_from_config(examples / "dag_config_full_pipeline.json")
        full = "dag_config_full_pipeline"
        scenarios = dg.AssetKey([full, "esg", "scenarios"])
        results = dg.AssetKey([full, "projection", "results"])

        first = _materialize(defs, instance)
        before = pq.read_table(_metadata(first, [full, "projection", "results"])["path"])
        again = _materialize(defs, instance, selection=[results])
        meta = _metadata(again, [full, "projection", "results"])

        assert [results] == [e.asset_key for e in again.get_asset_materialization_events()]
        assert 1 == len(instance.fetch_materializations(scenarios, limit=10).records)
        assert before.equals(pq.read_table(meta["path"]))
        step_runs = {m["livecalc/run_id"] for m in (meta, _metadata(first, [*results.path]))}
        assert 2 == len(step_runs)

    def test_solver_alone_reuses_results_and_scenarios(
        self, examples: Path, instance: dg.DagsterInstance
    ) -> None:
        """The solver re-runs the projection for its goal seek: materialized alone, it reads
        the results and the scenarios from their files and finds the same solution."""
        defs = definitions_from_config(examples / "dag_config_full_pipeline.json")
        full = "dag_config_full_pipeline"
        solution = dg.AssetKey([full, "solver", "solution"])

        first = _metadata(_materialize(defs, instance), [*solution.path])
        again = _metadata(_materialize(defs, instance, selection=[solution]), [*solution.path])

        name = "metrics/solution.premium_multiplier"
        assert first[name] == again[name]
        assert first["metrics/metrics.cte_95"] == again["metrics/metrics.cte_95"]

    def test_downstream_first_says_what_to_materialize(
        self, examples: Path, instance: dg.DagsterInstance
    ) -> None:
        """The projection materialized before the ESG ever was: the step fails naming the
        upstream asset and the fix."""
        defs = definitions_from_config(examples / "dag_config_full_pipeline.json")
        results = dg.AssetKey(["dag_config_full_pipeline", "projection", "results"])

        result = _materialize(defs, instance, selection=[results], raise_on_error=False)
        failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data

        assert failure is not None
        assert "dag_config_full_pipeline/esg/scenarios has no materialization" in (
            failure.description or ""
        )
        assert "materialize it first" in (failure.description or "")

    def test_an_upstream_file_gone_says_to_materialize_it_again(
        self, examples: Path, instance: dg.DagsterInstance
    ) -> None:
        """The ESG's kept scenarios removed (`livecalc runs gc`) after a full run: the
        projection alone fails naming the file and the fix."""
        defs = definitions_from_config(examples / "dag_config_full_pipeline.json")
        full = "dag_config_full_pipeline"
        scenarios = Path(
            _metadata(_materialize(defs, instance), [full, "esg", "scenarios"])["path"]
        )
        scenarios.unlink()

        result = _materialize(
            defs, instance, selection=[dg.AssetKey([full, "projection", "results"])],
            raise_on_error=False,
        )  # fmt: skip
        failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data

        assert failure is not None
        assert f"file {scenarios} is gone" in (failure.description or "")
        assert "materialize it again" in (failure.description or "")

    def test_a_failing_error_check_blocks_downstream_steps(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """An error check that fails on the scenarios stops the projection and the solver
        from running; the scenarios are still materialized (LiveCalc keeps the outputs)."""
        checks = [{"kind": "row_count", "name": "one_row", "dataset": "scenarios", "equals": 1}]
        defs = definitions_from_config(_pipeline(tmp_path, checks))

        result = _materialize(defs, instance, raise_on_error=False)
        check = _checks(result)["one_row"]

        assert not result.success
        assert (False, dg.AssetCheckSeverity.ERROR) == (check.passed, check.severity)
        assert "scenarios: 400 rows, expected 1" in (check.description or "")
        assert [["checked", "esg", "scenarios"]] == [
            e.asset_key.path for e in result.get_asset_materialization_events()
        ]


class TestChecks:
    def test_declared_checks_become_asset_checks(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """Checks that hold pass; a failing warn check fails with WARN and LiveCalc's reason;
        a failing error check fails with ERROR and its reason; each is on its dataset."""
        checks = [
            {"kind": "row_count", "name": "all_pairs", "dataset": "results",
             "equals": "policies_x_scenarios"},
            {"kind": "martingale", "dataset": "scenarios", "z_threshold": 6},
            {"kind": "range", "name": "npv_negative", "severity": "warn", "dataset": "results",
             "column": "npv", "max": 0.0},
            {"kind": "metric", "name": "mean_huge", "expr": "mean > 1e30"},
        ]  # fmt: skip
        defs = definitions_from_config(_pipeline(tmp_path, checks))

        result = _materialize(defs, instance, raise_on_error=False)
        found = _checks(result)

        assert {"all_pairs", "martingale_scenarios", "npv_negative", "mean_huge"} == set(found)
        assert found["all_pairs"].passed
        assert ["checked", "projection", "results"] == found["all_pairs"].asset_key.path
        assert found["martingale_scenarios"].passed
        assert ["checked", "esg", "scenarios"] == found["martingale_scenarios"].asset_key.path
        warn = found["npv_negative"]
        assert (False, dg.AssetCheckSeverity.WARN) == (warn.passed, warn.severity)
        assert "values outside [None, 0.0]" in (warn.description or "")
        error = found["mean_huge"]
        assert (False, dg.AssetCheckSeverity.ERROR) == (error.passed, error.severity)
        assert "mean > 1e30" in (error.description or "")
        assert ["checked", "solver", "solution"] == error.asset_key.path

    def test_a_reconcile_across_nodes_is_checked_by_the_later_step(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """A reconcile of the scenarios (ESG) against the results (projection) is evaluated
        by the projection's step, on the ESG's kept scenarios, and carried by the results
        asset: its verdict is LiveCalc's, and the solver still runs (a warn check)."""
        checks = [
            {"kind": "reconcile", "name": "odd", "dataset": "scenarios", "column": "rate",
             "against": "results", "against_column": "npv", "severity": "warn"},
        ]  # fmt: skip
        config = _pipeline(tmp_path, checks)
        whole = livecalc.run(config, store=False)
        defs = definitions_from_config(config)

        result = _materialize(defs, instance, raise_on_error=False)
        check = _checks(result)["odd"]
        (expected,) = whole.summary.extras["checks"]

        assert (False, ["checked", "projection", "results"]) == (
            check.passed,
            check.asset_key.path,
        )
        assert expected["message"] == check.description
        assert expected["message"].startswith("sum scenarios.rate = ")
        assert ["checked", "solver", "solution"] in [
            e.asset_key.path for e in result.get_asset_materialization_events()
        ]

    def test_each_step_records_the_verdicts_dagster_shows(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """Every step's LiveCalc run records exactly the checks Dagster shows for that step,
        with the same verdicts: the projection's run does not evaluate the ESG's martingale
        check again (it lacks the ESG's metadata), so every run succeeds; and no run of one
        node is held to the run-level SLA, only to its node's."""
        checks = [
            {"kind": "martingale", "dataset": "scenarios", "z_threshold": 6},
            {"kind": "row_count", "name": "all_pairs", "dataset": "results",
             "equals": "policies_x_scenarios"},
            {"kind": "metric", "name": "mean_bound", "expr": "mean > -1e30"},
        ]  # fmt: skip
        sla = {"run_seconds": 1e-6, "nodes": {"projection": 1e-6}}
        store = tmp_path / "store"
        defs = definitions_from_config(_pipeline(tmp_path, checks, sla=sla), store=store)

        result = _materialize(defs, instance)
        shown: dict[str, dict[str, bool]] = {}
        for e in result.get_asset_check_evaluations():
            run_id = e.metadata["livecalc/run_id"].value
            shown.setdefault(str(run_id), {})[e.check_name] = e.passed
        with (defs.resources or {})[STORE_RESOURCE_KEY].get_connection() as con:
            run_ids = [row[0] for row in con.execute("SELECT run_id FROM runs").fetchall()]
        records = {run_id: livecalc.runs.get(run_id, store=store) for run_id in run_ids}
        recorded = {
            run_id: {c["name"].replace(":", "_"): c["passed"] for c in r["checks"]}
            for run_id, r in records.items()
        }
        sla_rows = {run_id.rsplit("__", 1)[1]: r["sla"] for run_id, r in records.items()}

        assert 3 == len(records)
        assert {"succeeded"} == {r["status"] for r in records.values()}
        assert shown == {k: v for k, v in recorded.items() if v}
        assert {"martingale_scenarios", "all_pairs", "mean_bound"} == {
            name for verdicts in recorded.values() for name in verdicts
        }
        assert [] == sla_rows["esg"] == sla_rows["solver"]
        assert [("projection", True)] == [(s["target"], s["breached"]) for s in
                                          sla_rows["projection"]]  # fmt: skip

    def test_a_check_on_a_data_source_checks_the_file(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """A row_count check on the policies source is an asset check of the external asset,
        run by the pipeline's job and evaluated by LiveCalc on the file: 30 rows pass
        `equals 30`, fail `min 31`."""
        checks = [
            {"kind": "row_count", "name": "thirty", "dataset": "policies", "equals": 30},
            {"kind": "row_count", "name": "many", "dataset": "policies", "min": 31},
            {"kind": "finite", "name": "finite_results", "dataset": "results"},
        ]
        defs = definitions_from_config(_pipeline(tmp_path, checks))

        result = defs.resolve_job_def("checked_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        found = _checks(result)

        assert {"thirty", "many", "finite_results"} == set(found)
        assert found["finite_results"].passed
        assert ["checked", "policies"] == found["thirty"].asset_key.path
        assert (True, False) == (found["thirty"].passed, found["many"].passed)
        assert "30 rows, bounds [31.0, None]" in (found["many"].description or "")


class TestFailures:
    def test_a_failing_node_is_a_failed_step(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """An engine that fails at run time fails its Dagster step with the engine's error."""
        write_policies(tmp_path / "policies.parquet", generate_policies(20, seed=2))
        raw = {
            "plugins": [PLUGIN],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
                {"id": "b", "type": "test_fail_n", "config": {"n": 100}, "inputs": ["a_out"],
                 "outputs": ["b_out"]},
            ],
            "output": {"path": "out/{name}.parquet", "write": ["a_out", "b_out"]},
        }  # fmt: skip
        (tmp_path / "failing.json").write_text(json.dumps(raw))
        defs = definitions_from_config(tmp_path / "failing.json")

        result = _materialize(defs, instance, raise_on_error=False)
        failures = result.get_step_failure_events()

        assert not result.success
        assert 1 == len(failures)
        error = failures[0].step_failure_data.user_failure_data
        assert error is not None
        assert "engine 'b' failed" in (error.description or "")
        assert "planned failure 1 of 100" in (error.description or "")

    def test_an_input_gone_at_run_time_fails_the_step_with_the_reason(
        self, examples: Path, instance: dg.DagsterInstance
    ) -> None:
        """A data file removed after the definitions loaded: the step fails saying which."""
        defs = definitions_from_config(examples / "dag_config_projection_only.json")
        (examples / "data" / "scenarios.parquet").unlink()

        result = _materialize(defs, instance, raise_on_error=False)
        failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data

        assert not result.success
        assert failure is not None
        assert "did not start" in (failure.description or "")
        assert "scenarios.parquet" in (failure.description or "")


class TestRetry:
    def test_a_retried_step_resumes_from_its_checkpoint(
        self, tmp_path: Path, instance: dg.DagsterInstance
    ) -> None:
        """A step that fails at its third chunk and is retried by Dagster (a RetryPolicy)
        keeps its LiveCalc run id, so the second attempt resumes from the two chunks the
        first checkpointed, and writes every record."""
        write_policies(tmp_path / "policies.parquet", generate_policies(40, seed=3))
        raw = {
            "plugins": ["test_integration_dagster:register_flaky"],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "a", "type": "test_flaky", "config": {"marker": str(tmp_path / "m")},
                 "inputs": ["policies"], "outputs": ["a_out"]},
            ],
            "output": {"path": "out/a_out.parquet"},
            "run": {"chunk_size": 10, "checkpoint_min_chunk_seconds": 0},
        }  # fmt: skip
        (tmp_path / "flaky.json").write_text(json.dumps(raw))
        defs = definitions_from_config(tmp_path / "flaky.json")
        job = dg.define_asset_job(
            "retrying", selection="*", op_retry_policy=dg.RetryPolicy(max_retries=1)
        )
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))

        result = defs.resolve_job_def("retrying").execute_in_process(instance=instance)
        meta = _metadata(result, ["flaky", "a", "a_out"])

        assert result.success
        assert (tmp_path / "m").exists()
        assert meta["livecalc/resumed"] is True
        assert f"{result.run_id}-flaky__a" == meta["livecalc/run_id"]
        assert 40 == meta["rows"] == pq.read_table(tmp_path / "out" / "a_out.parquet").num_rows


class TestRunContext:
    def test_run_id_is_safe_and_stable(self) -> None:
        """The LiveCalc run id of a step is the Dagster run id and the step name: a valid
        checkpoint folder name, the same on every call (a retry resumes)."""
        run_id = livecalc_run_id("e8e23699-4ee6-4cee-97ce-5d2796391ec6", "full__projection")

        assert "e8e23699-4ee6-4cee-97ce-5d2796391ec6-full__projection" == run_id
        assert run_id == check_run_id(run_id)
        assert 128 == len(livecalc_run_id("0" * 36, "s" * 200))

    def test_context_in_a_real_step_logs_to_dagster_with_secrets_masked(
        self, instance: dg.DagsterInstance
    ) -> None:
        """Inside a step: run id from the Dagster run, attempt 1, and a log line reaches
        Dagster's event log with a token field masked."""
        token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
        seen: dict[str, Any] = {}

        @dg.asset
        def probe(context) -> None:  # type: ignore[no-untyped-def]  # Dagster reads the hint
            ctx = DagsterRunContext(context, "probe")
            seen.update(run_id=ctx.run_id, attempt=ctx.attempt, dagster=context.run.run_id)
            ctx.log("warning", "assumptions_fetched", token=token, url="am://x")

        result = dg.materialize([probe], instance=instance)
        messages = [
            e.message
            for e in instance.all_logs(result.run_id)
            if "assumptions_fetched" in e.message
        ]

        assert f"{seen['dagster']}-probe" == seen["run_id"]
        assert 1 == seen["attempt"]
        assert 1 == len(messages)
        assert token not in messages[0]
        assert "am://x" in messages[0]
