"""Running part of a pipeline: nodes=, datasets= and keep_datasets= (pipeline/selection.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from livecalc.engines.projection import ProjectionEngine
from livecalc.errors import ConfigurationError, ExecutionError, InitializationError
from livecalc.io.generate import ESG_METADATA_KEY
from livecalc.io.parquet import ParquetReader
from livecalc.ops.session import resume
from livecalc.ops.store import RunStore
from livecalc.pipeline.api import run as pipeline_run
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.selection import DatasetKeeper
from livecalc.ports.context import LocalRunContext
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.records import RESULT_DTYPE

EXAMPLES = Path(__file__).parents[1] / "examples"
TIMING_KEYS = {"seconds"}


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ (configs and data), so runs write nowhere in the repository."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for config in EXAMPLES.glob("dag_config_*.json"):
        shutil.copy(config, folder)
    shutil.copytree(EXAMPLES / "data", folder / "data")
    return folder


def _cli(config: Path, *args: str) -> dict[str, Any]:
    """``livecalc run`` that must succeed; its summary.json."""
    result = CliRunner().invoke(app, ["run", str(config), "--no-progress", *args])
    assert 0 == result.exit_code, result.output
    raw = json.loads(config.read_text())
    summary: dict[str, Any] = json.loads(
        (config.parent / raw["output"]["summary_path"]).read_text()
    )
    return summary


def _solver(summary: dict[str, Any]) -> dict[str, Any]:
    """The solver's statistics without its timings."""
    node = next(n for n in summary["nodes"] if n["node_id"] == "solver")
    outputs: dict[str, Any] = node["outputs"]
    solution = {k: v for k, v in outputs["solution"].items() if k not in TIMING_KEYS}
    return {**outputs, "solution": solution, "optimization": None}


def _values(path: Path) -> pa.Table:
    """A Parquet file's columns, without its key-value metadata (run id, provenance)."""
    return pq.read_table(path).replace_schema_metadata(None)


class TestNodeByNode:
    def test_full_pipeline_node_by_node_equals_one_run(self, examples: Path) -> None:
        """esg, then projection, then solver, each from the files the one before kept, give
        the solver statistics and the results file of one `livecalc run`."""
        config = examples / "dag_config_full_pipeline.json"
        results = examples / "output" / "full_pipeline" / "results.parquet"
        whole = _cli(config)
        whole_results = results.rename(examples / "whole_results.parquet")

        esg = _cli(config, "--node", "esg", "--keep-datasets")
        scenarios = esg["datasets"]["scenarios"]
        projection = _cli(
            config, "--node", "projection", "--dataset", f"scenarios={scenarios}", "--keep-datasets"
        )
        kept_results = projection["datasets"]["results"]
        solver = _cli(
            config,
            "--node",
            "solver",
            "--dataset",
            f"results={kept_results}",
            "--dataset",
            f"scenarios={scenarios}",
        )

        assert ["esg"] == [n["node_id"] for n in esg["nodes"]]
        assert ["projection"] == [n["node_id"] for n in projection["nodes"]]
        assert ["solver"] == [n["node_id"] for n in solver["nodes"]]
        assert ["projection"] == solver["selection"]["initialised_only"]
        assert _solver(whole) == _solver(solver)
        assert _values(whole_results).equals(_values(results))
        assert _values(whole_results).equals(_values(Path(kept_results)))
        assert whole["nodes"][1]["rows_processed"] == projection["nodes"][0]["rows_processed"]

    def test_esg_projection_node_by_node(self, examples: Path) -> None:
        """The ESG then the projection (scenario totals) give the totals of one run."""
        config = examples / "dag_config_esg_projection.json"
        out = examples / "output" / "esg_projection"
        _cli(config)
        whole = {name: _values(out / f"{name}.parquet") for name in ("scenarios", "totals")}
        (out / "totals.parquet").unlink()

        esg = _cli(config, "--node", "esg", "--keep-datasets")
        assert not (out / "totals.parquet").exists()
        _cli(
            config, "--node", "projection", "--dataset", f"scenarios={esg['datasets']['scenarios']}"
        )

        assert whole["scenarios"].equals(_values(out / "scenarios.parquet"))
        assert whole["totals"].equals(_values(out / "totals.parquet"))

    def test_projection_only_example_keeps_its_streamed_output(self, examples: Path) -> None:
        """The one-node example selected by its id: same results; the kept copy is the file."""
        config = examples / "dag_config_projection_only.json"
        results = examples / "output" / "projection_only" / "results.parquet"
        _cli(config)
        whole = _values(results)

        summary = _cli(config, "--node", "projection", "--keep-datasets")
        kept = Path(summary["datasets"]["results"])

        kept_bytes = kept.read_bytes()
        _cli(config)  # writes the output again: the kept file stays as it was

        assert whole.equals(_values(results))
        assert ["projection"] == summary["selection"]["nodes"]
        assert kept_bytes == kept.read_bytes()
        assert results.read_bytes() != kept_bytes  # another run id in the new file

    @pytest.mark.parametrize(
        ("first", "second", "given"),
        [
            (["esg", "projection"], ["solver"], ["results", "scenarios"]),
            (["esg"], ["projection", "solver"], ["scenarios"]),
            # The solver re-runs the projection (not selected) on the scenarios the ESG
            # (selected) generates in the same run: it waits for the ESG.
            (["esg", "projection"], ["esg", "solver"], ["results"]),
        ],
    )
    def test_two_node_subsets(
        self, examples: Path, first: list[str], second: list[str], given: list[str]
    ) -> None:
        """Two nodes then one, or one then two: the solver's statistics of the whole run."""
        config = examples / "dag_config_full_pipeline.json"
        whole = livecalc.run(config, store=False)

        one = livecalc.run(config, nodes=first, keep_datasets=True)
        datasets = {name: one.summary.extras["datasets"][name] for name in given}
        two = livecalc.run(config, nodes=second, datasets=datasets)

        assert first == list(one.nodes)
        assert second == list(two.nodes)
        assert two.success
        assert whole.statistics["solver"]["metrics"] == two.statistics["solver"]["metrics"]
        assert (
            whole.statistics["solver"]["solution"]["premium_multiplier"]
            == two.statistics["solver"]["solution"]["premium_multiplier"]
        )


@pytest.fixture
def full(examples: Path) -> Path:
    return examples / "dag_config_full_pipeline.json"


@pytest.fixture
def kept(full: Path) -> dict[str, str]:
    """The scenarios, results and solution files of one whole run that kept them."""
    result = livecalc.run(full, keep_datasets=True)
    assert result.success
    datasets: dict[str, str] = result.summary.extras["datasets"]
    return datasets


def _error(config: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        livecalc.run(config, store=False, **kwargs)
    return str(info.value)


class _UnreachableProjection(ProjectionEngine):
    """A projection whose assumptions cannot be fetched (an Assumptions Manager down)."""

    def initialize(self, config: Any, credentials: Any = None) -> None:
        raise InitializationError("cannot resolve am://mortality@3: connection refused")


class TestReRunNodeFailure:
    def test_solver_fails_when_the_projection_it_re_runs_cannot_start(
        self, full: Path, kept: dict[str, str]
    ) -> None:
        """The re-run projection fails to initialise: the solver fails with that reason and
        does not run; the summary lists the solver alone."""
        factory = EngineFactory()
        factory.register_engine("unreachable_projection", _UnreachableProjection)
        raw = json.loads(full.read_text())
        raw["engines"][1]["type"] = "unreachable_projection"
        datasets = {name: kept[name] for name in ("results", "scenarios")}

        result = livecalc.run(
            raw, base_dir=full.parent, nodes=["solver"], datasets=datasets, factory=factory
        )

        assert {"solver": "failed"} == result.status
        assert (
            "initialize of node 'projection' (which this node re-runs): cannot resolve "
            "am://mortality@3: connection refused"
        ) == result.nodes["solver"].error
        assert 0 == result.nodes["solver"].rows_processed


class TestExecutors:
    def test_solver_alone_on_worker_processes(self, full: Path, kept: dict[str, str]) -> None:
        """Files read into shared memory: the projection re-run in a worker process gives
        the solution of the whole run."""
        datasets = {name: kept[name] for name in ("results", "scenarios")}

        result = livecalc.run(
            full, nodes=["solver"], datasets=datasets, executor="processes", store=False
        )

        solution = json.loads(Path(kept["solution"]).read_text())
        assert result.success
        assert (
            solution["solution"]["premium_multiplier"]
            == (result.statistics["solver"]["solution"]["premium_multiplier"])
        )


class TestOrder:
    def test_a_selected_node_waits_for_selected_nodes_upstream(self, full: Path) -> None:
        """esg and solver selected: the solver is ready only once the esg is done, through
        the projection that is not selected."""
        sorter = EngineGraph(load_config(full)).sorter(["solver", "esg"])

        first = sorter.get_ready()
        sorter.done(*first)
        second = sorter.get_ready()

        assert ("esg",) == first
        assert ("solver",) == second


class TestSelectionErrors:
    def test_unknown_node_is_named_with_the_node_ids(self, full: Path) -> None:
        """An unknown id is named, with a close match and every node id."""
        message = _error(full, nodes=["solvr"])

        assert "nodes[0]: no node 'solvr' (did you mean 'solver'?)" in message
        assert "esg, projection, solver" in message

    def test_a_node_selected_twice_is_refused(self, full: Path) -> None:
        """The same id twice is a mistake to report, not to run twice."""
        message = _error(full, nodes=["esg", "esg"])

        assert "nodes[1]: 'esg' is selected twice" in message

    def test_empty_selection_is_refused(self, full: Path) -> None:
        """nodes=[] runs nothing: refused, saying to leave it out for a whole run."""
        message = _error(full, nodes=[])

        assert "selection is empty" in message
        assert "leave nodes out" in message

    def test_a_lone_id_is_one_node(self, full: Path) -> None:
        """nodes="esg" selects the node esg, not the nodes 'e', 's', 'g'."""
        result = livecalc.run(full, nodes="esg", store=False)

        assert ["esg"] == list(result.nodes)

    def test_missing_dataset_names_its_producer_and_the_fix(self, full: Path) -> None:
        """The solver alone without files: each dataset, its producer and the fix."""
        message = _error(full, nodes=["solver"])

        assert "'results', read by selected node 'solver', is produced by node 'projection'" in (
            message
        )
        assert "--dataset results=PATH" in message
        assert "keep_datasets" in message
        # The optimisation re-runs the projection, which reads the ESG's scenarios.
        assert "'scenarios', read by node 'projection' (re-run by" in message

    def test_solver_without_optimisation_needs_only_the_results(
        self, full: Path, kept: dict[str, str]
    ) -> None:
        """No optimisation: the projection is not initialised, scenarios are not needed."""
        raw = json.loads(full.read_text())
        raw["engines"][2]["config"].pop("optimization")

        result = livecalc.run(
            raw, base_dir=full.parent, nodes=["solver"], datasets={"results": kept["results"]}
        )

        assert result.success
        assert [] == result.summary.selection["initialised_only"]
        assert result.statistics["solver"]["metrics"]["mean"] == pytest.approx(
            livecalc.run(raw, base_dir=full.parent).statistics["solver"]["metrics"]["mean"]
        )

    def test_datasets_without_nodes_are_refused(self, full: Path, kept: dict[str, str]) -> None:
        """A whole run produces every dataset itself: files given for it are refused."""
        message = _error(full, datasets={"scenarios": kept["scenarios"]})

        assert "give the nodes to run too" in message

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("scenarioz", "no node produces 'scenarioz'; the datasets are results, scenarios"),
            ("policies", "'policies' is a data source (data_sources.policies)"),
            ("results", "'results' is produced by selected node 'projection'"),
        ],
    )
    def test_dataset_names_are_checked(
        self, full: Path, kept: dict[str, str], name: str, expected: str
    ) -> None:
        """A dataset name that is no dataset, a data source, or produced by the run itself."""
        datasets = {"scenarios": kept["scenarios"], name: kept["results"]}

        message = _error(full, nodes=["projection"], datasets=datasets)

        assert expected in message

    def test_files_the_selection_does_not_read_are_ignored(
        self, full: Path, kept: dict[str, str]
    ) -> None:
        """Every kept file handed over (as a scheduler may): only those read are used."""
        result = livecalc.run(full, nodes=["esg", "projection"], datasets={
            "solution": kept["solution"]
        }, store=False)  # fmt: skip

        assert result.success
        assert {} == result.summary.selection["datasets"]
        inputs = result.summary.extras["provenance"]["inputs"]
        assert not [i for i in inputs if "dataset" in i]

    def test_missing_file_and_folder(self, full: Path, tmp_path: Path) -> None:
        """A dataset file that is not there, or a folder, is named."""
        gone = _error(full, nodes=["projection"], datasets={"scenarios": tmp_path / "no.parquet"})
        folder = _error(full, nodes=["projection"], datasets={"scenarios": tmp_path})

        assert f"datasets['scenarios']: file not found: {tmp_path / 'no.parquet'}" in gone
        assert f"datasets['scenarios']: file is a folder: {tmp_path}" in folder


class TestDatasetFiles:
    def test_results_given_as_scenarios_are_refused(self, full: Path, kept: dict[str, str]) -> None:
        """The ESG writes SCENARIO records: a results file given for them is refused."""
        message = _error(full, nodes=["projection"], datasets={"scenarios": kept["results"]})

        assert "datasets['scenarios'] (produced by node 'esg')" in message
        assert "holds dataset 'results', not 'scenarios'" in message

    def test_wrong_layout_without_dataset_name(
        self, full: Path, kept: dict[str, str], tmp_path: Path
    ) -> None:
        """A results layout (no dataset name in the file) given as scenarios: both layouts named."""
        table = pq.read_table(kept["results"]).replace_schema_metadata(None)
        pq.write_table(table, tmp_path / "r.parquet")

        message = _error(full, nodes=["projection"], datasets={"scenarios": tmp_path / "r.parquet"})

        assert "holds RESULT records" in message
        assert "SCENARIO records are needed" in message

    def test_re_run_node_layout_is_checked(
        self, full: Path, kept: dict[str, str], tmp_path: Path
    ) -> None:
        """Scenarios given as the results the re-run projection writes: refused before a run."""
        table = pq.read_table(kept["scenarios"]).replace_schema_metadata(None)
        pq.write_table(table, tmp_path / "s.parquet")
        datasets = {"scenarios": kept["scenarios"], "results": tmp_path / "s.parquet"}

        message = _error(full, nodes=["solver"], datasets=datasets)

        assert "holds SCENARIO records, but node 'projection' writes RESULT records" in message

    def test_bad_value_names_column_and_row(
        self, full: Path, kept: dict[str, str], tmp_path: Path
    ) -> None:
        """A NaN npv in a results file: the file, the column and the row."""
        table = pq.read_table(kept["results"])
        npv = table.column("npv").to_numpy().copy()
        npv[7] = np.nan
        bad = table.set_column(table.schema.get_field_index("npv"), "npv", pa.array(npv))
        pq.write_table(bad, tmp_path / "bad.parquet")
        datasets = {"scenarios": kept["scenarios"], "results": tmp_path / "bad.parquet"}

        message = _error(full, nodes=["solver"], datasets=datasets)

        assert "column 'npv', row 7: value nan is not a finite number" in message

    def test_not_parquet_and_not_json(
        self, full: Path, kept: dict[str, str], tmp_path: Path
    ) -> None:
        """A text file as records, a Parquet file as statistics, JSON as scenarios."""
        text = tmp_path / "x.parquet"
        text.write_text("not parquet")
        stats = tmp_path / "s.json"
        stats.write_text("[1, 2]")

        garbled = _error(full, nodes=["projection"], datasets={"scenarios": text})
        as_json = _error(full, nodes=["projection"], datasets={"scenarios": stats})

        assert "not a readable Parquet file" in garbled
        assert "give the Parquet file it kept (scenarios.parquet)" in as_json

    def test_statistics_round_trip_as_json(self, tmp_path: Path) -> None:
        """A node's second output (statistics) is kept as JSON and read back for its reader."""
        raw = {
            "plugins": ["livecalc.testing:register_testing_engines"],
            "engines": [
                {"id": "esg", "type": "esg", "config": {"outer": 2, "inner": 3, "years": 5},
                 "outputs": ["scenarios", "esg_stats"]},
                {"id": "b", "type": "test_echo", "inputs": ["scenarios", "esg_stats"],
                 "outputs": ["b_out"]},
            ],
        }  # fmt: skip
        first = pipeline_run(raw, base_dir=tmp_path, nodes=["esg"], keep_datasets=tmp_path / "k")
        stats = first.summary.kept["esg_stats"]

        second = pipeline_run(
            raw,
            base_dir=tmp_path,
            nodes=["b"],
            datasets={"scenarios": first.summary.kept["scenarios"], "esg_stats": stats},
        )
        wrong = tmp_path / "stats.parquet"
        shutil.copy(first.summary.kept["scenarios"], wrong)
        with pytest.raises(ConfigurationError) as info:
            pipeline_run(
                raw,
                base_dir=tmp_path,
                nodes=["b"],
                datasets={"scenarios": first.summary.kept["scenarios"], "esg_stats": wrong},
            )

        assert ".json" == stats.suffix
        assert json.loads(stats.read_text())["esg_metadata"]["outer"] == 2
        assert second.success
        assert "statistics, kept as JSON" in str(info.value)


class TestKeepDatasets:
    def test_kept_files_are_listed_everywhere(self, full: Path, livecalc_home: Path) -> None:
        """keep_datasets=True: files under runs/RUN_ID/datasets/, listed in extras, summary,
        store record and the context's state; they outlive the checkpoint clean-up."""
        context = LocalRunContext(run_id="kept-run-1")

        result = livecalc.run(full, keep_datasets=True, context=context)

        folder = livecalc_home / "runs" / "kept-run-1" / "datasets"
        expected = {
            "scenarios": str(folder / "scenarios.parquet"),
            "results": str(folder / "results.parquet"),
            "solution": str(folder / "solution.json"),
        }
        summary = json.loads((full.parent / "output/full_pipeline/summary.json").read_text())
        record = RunStore().get("kept-run-1")
        assert expected == result.summary.extras["datasets"]
        assert expected == summary["datasets"]
        assert expected == record["datasets"]
        assert expected == context.state["datasets"]
        assert all(Path(p).is_file() for p in expected.values())
        manifest = json.loads((folder.parent / "manifest.json").read_text())
        assert manifest["complete"]
        solution = json.loads(Path(expected["solution"]).read_text())
        assert (
            result.statistics["solver"]["solution"]["premium_multiplier"]
            == (solution["solution"]["premium_multiplier"])
        )

    def test_kept_scenarios_carry_the_esg_description(self, full: Path) -> None:
        """The kept scenario file has the ESG metadata the normal writer puts in."""
        result = livecalc.run(full, nodes=["esg"], keep_datasets=True, store=False)

        meta = ParquetReader().read_metadata(result.summary.extras["datasets"]["scenarios"])

        assert json.loads(meta[ESG_METADATA_KEY]) == result.statistics["esg"]["esg_metadata"]
        assert "scenarios" == meta["livecalc.dataset"]

    def test_keep_to_a_folder(self, full: Path, tmp_path: Path) -> None:
        """keep_datasets=PATH writes there."""
        result = livecalc.run(full, nodes=["esg"], keep_datasets=tmp_path / "k", store=False)

        assert {"scenarios": str(tmp_path / "k" / "scenarios.parquet")} == (
            result.summary.extras["datasets"]
        )

    def test_gc_removes_kept_datasets_with_the_run(self, full: Path, livecalc_home: Path) -> None:
        """A run without checkpoints still gets a manifest: gc ages it, then removes it all."""
        run_id = livecalc.run(full, nodes=["esg"], keep_datasets=True, checkpoint=False).run_id
        folder = livecalc_home / "runs" / run_id

        young = CliRunner().invoke(app, ["runs", "gc", "--older-than", "1d"])
        kept = (folder / "datasets" / "scenarios.parquet").is_file()
        old = CliRunner().invoke(app, ["runs", "gc", "--older-than", "0s"])

        assert 0 == young.exit_code and 0 == old.exit_code
        assert kept
        assert not folder.exists()

    def test_a_node_named_datasets_needs_a_folder(self, tmp_path: Path) -> None:
        """Its checkpoint parts would share runs/RUN_ID/datasets/: keep_datasets=True refused."""
        raw = {"engines": [{"id": "datasets", "type": "esg", "outputs": ["scenarios"]}]}

        with pytest.raises(ConfigurationError) as info:
            livecalc.run(raw, base_dir=tmp_path, keep_datasets=True)

        assert "keep_datasets=PATH" in str(info.value)


class TestDatasetKeeper:
    def test_names_become_safe_distinct_files(self, tmp_path: Path) -> None:
        """Odd characters become '_', names that come out alike get -2, and no name leaves
        the folder."""
        keeper = DatasetKeeper(tmp_path / "k")
        records = np.zeros(2, dtype=RESULT_DTYPE)

        keeper.keep("a/b", records, {})
        keeper.keep("a_b", records, {})
        keeper.keep("../up", {"x": 1}, {})

        assert {
            "a/b": tmp_path / "k" / "a_b.parquet",
            "a_b": tmp_path / "k" / "a_b-2.parquet",
            "../up": tmp_path / "k" / "_up.json",
        } == keeper.paths
        assert "a/b" == ParquetReader().read_metadata(keeper.paths["a/b"])["livecalc.dataset"]
        assert {"x": 1} == json.loads(keeper.paths["../up"].read_text())

    def test_a_folder_that_cannot_be_made_is_an_execution_error(self, tmp_path: Path) -> None:
        """A file where the folder should be: ExecutionError naming the dataset and the fix."""
        (tmp_path / "k").write_text("a file")

        with pytest.raises(ExecutionError) as info:
            DatasetKeeper(tmp_path / "k").keep("scenarios", {"x": 1}, {})

        assert "cannot write dataset 'scenarios'" in str(info.value)
        assert "choose another keep_datasets folder" in str(info.value)

    def test_pipeline_api_needs_a_folder(self, full: Path) -> None:
        """keep_datasets=True needs the run folder, which only livecalc.run knows."""
        with pytest.raises(ConfigurationError) as info:
            pipeline_run(full, nodes=["esg"], keep_datasets=True)

        assert "give a folder here" in str(info.value)


class TestChecksOfSomeNodes:
    def test_each_check_is_evaluated_once_by_the_run_of_its_node(self, full: Path) -> None:
        """Node by node, every declared check is evaluated once, by the run of the node it is
        about (a dataset's producer; a statistic's node; the last node); the other runs list
        it under checks_not_run naming that node, and no run fails."""
        raw = json.loads(full.read_text())
        raw["checks"] = [
            {"kind": "finite", "dataset": "scenarios", "name": "scenarios_finite"},
            {"kind": "finite", "dataset": "results", "name": "results_finite"},
            {"kind": "metric", "expr": "mean > -1e15", "name": "mean_bound"},
            {"kind": "range", "statistic": "solver.scenarios", "min": 1, "name": "solver_stat"},
            {"kind": "martingale", "dataset": "scenarios", "z_threshold": 6},
            {"kind": "row_count", "dataset": "policies", "min": 1, "name": "some_policies"},
        ]
        base = full.parent
        esg = livecalc.run(raw, base_dir=base, nodes=["esg"], keep_datasets=True)
        kept = esg.summary.extras["datasets"]
        projection = livecalc.run(
            raw, base_dir=base, nodes=["projection"], datasets=kept, keep_datasets=True
        )
        solver = livecalc.run(
            raw,
            base_dir=base,
            nodes=["solver"],
            datasets={**kept, **projection.summary.extras["datasets"]},
        )

        def names(result: Any, key: str) -> list[str]:
            return [c["name"] for c in result.summary.extras.get(key, [])]

        assert esg.success and projection.success and solver.success
        assert ["scenarios_finite", "martingale:scenarios"] == names(esg, "checks")
        assert ["results_finite", "some_policies"] == names(projection, "checks")
        assert ["mean_bound", "solver_stat"] == names(solver, "checks")
        assert all(
            c["passed"] for r in (esg, projection, solver) for c in r.summary.extras["checks"]
        )
        reasons = {c["name"]: c["reason"] for c in projection.summary.extras["checks_not_run"]}
        assert {
            "scenarios_finite": "evaluated by the run of node 'esg'",
            "martingale:scenarios": "evaluated by the run of node 'esg'",
            "mean_bound": "evaluated by the run of node 'solver'",
            "solver_stat": "evaluated by the run of node 'solver'",
        } == reasons

    def test_a_reconcile_across_nodes_is_evaluated_by_the_later_node(self, full: Path) -> None:
        """A reconcile of the scenarios (ESG) against the results (projection): the
        projection's run evaluates it on the ESG's kept scenarios, with the values of a whole
        run; the ESG's run leaves it to the projection's."""
        raw = json.loads(full.read_text())
        raw["checks"] = [
            {"kind": "reconcile", "name": "rates_vs_npv", "dataset": "scenarios",
             "column": "rate", "against": "results", "against_column": "npv",
             "severity": "warn"},
        ]  # fmt: skip
        base = full.parent
        whole = livecalc.run(raw, base_dir=base, store=False)
        esg = livecalc.run(raw, base_dir=base, nodes=["esg"], keep_datasets=True)
        projection = livecalc.run(
            raw, base_dir=base, nodes=["projection"], datasets=esg.summary.extras["datasets"]
        )

        (expected,) = whole.summary.extras["checks"]
        (found,) = projection.summary.extras["checks"]
        assert [] == esg.summary.extras["checks"]
        left = [{"name": "rates_vs_npv", "reason": "evaluated by the run of node 'projection'"}]
        assert left == esg.summary.extras["checks_not_run"]
        assert expected == found
        assert found["message"].startswith("sum scenarios.rate = ")

    def test_a_dataset_the_owner_does_not_read_comes_from_its_file(self, tmp_path: Path) -> None:
        """Echo a -> b -> c and a reconcile of c's output against a's: c's run owns it and
        reads a's output from the file given (c reads only b's); without that file the check
        fails saying the dataset is not available, rather than passing or vanishing."""
        from livecalc.io.generate import generate_policies, write_policies

        write_policies(tmp_path / "policies.parquet", generate_policies(20, seed=1))
        raw = {
            "plugins": ["livecalc.testing:register_testing_engines"],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
                {"id": "b", "type": "test_echo", "inputs": ["a_out"], "outputs": ["b_out"]},
                {"id": "c", "type": "test_echo", "inputs": ["b_out"], "outputs": ["c_out"]},
            ],
            "checks": [{"kind": "reconcile", "name": "same_sums", "dataset": "c_out",
                        "column": "sum_assured", "against": "a_out"}],
        }  # fmt: skip
        a = livecalc.run(raw, base_dir=tmp_path, nodes=["a"], keep_datasets=True)
        a_out = a.summary.extras["datasets"]
        b = livecalc.run(raw, base_dir=tmp_path, nodes=["b"], datasets=a_out, keep_datasets=True)
        b_out = b.summary.extras["datasets"]
        given = livecalc.run(raw, base_dir=tmp_path, nodes=["c"], datasets={**a_out, **b_out})
        missing = livecalc.run(raw, base_dir=tmp_path, nodes=["c"], datasets=b_out)

        assert [] == a.summary.extras["checks"] == b.summary.extras["checks"]
        assert [(True, "same_sums")] == [
            (c["passed"], c["name"]) for c in given.summary.extras["checks"]
        ]
        (unavailable,) = missing.summary.extras["checks"]
        assert not unavailable["passed"]
        assert "cannot check: dataset 'a_out' is not available" in unavailable["message"]


def _three_nodes(tmp_path: Path) -> Path:
    """Echo a -> echo b in 4 chunks -> a node that fails: b's chunks stay checkpointed."""
    from livecalc.io.generate import generate_policies, write_policies

    write_policies(tmp_path / "policies.parquet", generate_policies(100, seed=1))
    raw = {
        "plugins": ["livecalc.testing:register_testing_engines"],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
            {"id": "b", "type": "test_echo", "inputs": ["a_out"], "outputs": ["b_out"]},
            {"id": "c", "type": "test_fail_n", "config": {"n": 99}, "inputs": ["b_out"],
             "outputs": ["c_out"]},
        ],
        "output": {"path": "out/{name}.parquet", "write": ["b_out", "c_out"]},
        "run": {"chunk_size": 25, "checkpoint_min_chunk_seconds": 0},
    }  # fmt: skip
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestResumeSelection:
    def test_resume_reruns_the_same_selection(self, tmp_path: Path) -> None:
        """A failed run of b and c resumes b and c, reusing b's chunks; the checkpoint
        manifest and the provenance list the dataset file with its sha256."""
        config = _three_nodes(tmp_path)
        a_out = livecalc.run(config, nodes=["a"], keep_datasets=True).summary.extras["datasets"]
        failed = livecalc.run(config, nodes=["b", "c"], datasets=a_out)
        manifest = json.loads(
            (Path(a_out["a_out"]).parents[2] / failed.run_id / "manifest.json").read_text()
        )

        resumed = resume(failed.run_id)

        assert ["b", "c"] == manifest["meta"]["nodes"]
        assert ["b", "c"] == RunStore().get(failed.run_id)["selection"]["nodes"]
        shown = CliRunner().invoke(app, ["runs", "show", failed.run_id])
        assert "nodes run: b, c" in shown.output
        assert f"dataset a_out from {a_out['a_out']}" in shown.output
        assert a_out["a_out"] == manifest["meta"]["datasets"]["a_out"]["path"]
        inputs = failed.summary.extras["provenance"]["inputs"]
        listed = next(i for i in inputs if i.get("dataset") == "a_out")
        assert manifest["meta"]["datasets"]["a_out"]["sha256"] == listed["sha256"]
        assert ["b", "c"] == list(resumed.nodes)
        assert (4, 3) == (resumed.nodes["b"].chunks, resumed.nodes["b"].reused_chunks)
        assert "failed" == resumed.nodes["c"].status

    def test_resume_refuses_a_changed_dataset_file(self, tmp_path: Path) -> None:
        """The dataset file rewritten after the run: resume exits 2 naming it."""
        config = _three_nodes(tmp_path)
        a_out = livecalc.run(config, nodes=["a"], keep_datasets=True).summary.extras["datasets"]
        failed = livecalc.run(config, nodes=["b", "c"], datasets=a_out)
        table = pq.read_table(a_out["a_out"])
        pq.write_table(table.slice(0, 50), a_out["a_out"])

        result = CliRunner().invoke(app, ["resume", failed.run_id])

        assert 2 == result.exit_code
        assert f"dataset file {a_out['a_out']} (datasets['a_out']) changed" in result.output


class TestSchedulerRetry:
    def test_a_retry_resumes_its_own_selection_only(self, tmp_path: Path) -> None:
        """Attempt 2 of a task resumes its nodes from the checkpoint; a task with other nodes
        under the same run id is refused instead of resuming the first one's nodes."""
        config = _three_nodes(tmp_path)
        a_out = livecalc.run(config, nodes=["a"], keep_datasets=True).summary.extras["datasets"]
        first = livecalc.run(
            config, nodes=["b", "c"], datasets=a_out, context=LocalRunContext("task-1")
        )

        retry = LocalRunContext("task-1", attempt=2)
        resumed = livecalc.run(config, nodes=["c", "b"], datasets=a_out, context=retry)
        with pytest.raises(ConfigurationError) as info:
            livecalc.run(config, nodes=["a"], context=LocalRunContext("task-1", attempt=2))

        assert "failed" == first.nodes["c"].status
        assert retry.state["resumed"]
        assert (4, 3) == (resumed.nodes["b"].chunks, resumed.nodes["b"].reused_chunks)
        assert (
            "run 'task-1': its unfinished checkpoint is of b, c, but this attempt runs a; "
            "give each task its own run id"
        ) == str(info.value)


class TestCli:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--node", "nope"], "no node 'nope'"),
            (["--node", "esg", "--dataset", "scenarios"], "give NAME=PATH"),
            (
                ["--node", "solver", "--dataset", "results=a", "--dataset", "results=b"],
                "--dataset results: given twice",
            ),
        ],
    )
    def test_usage_errors_exit_2_with_one_line(
        self, full: Path, args: list[str], expected: str
    ) -> None:
        """A bad selection on the command line: exit 2, the message, no traceback."""
        result = CliRunner().invoke(app, ["run", str(full), "--no-progress", *args])

        assert 2 == result.exit_code
        assert expected in result.output
        assert "Traceback" not in result.output
