"""Bad data is refused before a run: `validate` and `run` exit 2 naming file, column and row.

Rows count from 0 (the file's data rows, as docs/data.md says); CSV files add the line number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import check_engines

LIVECALC = str(Path(sys.executable).parent / "livecalc")


def _policies(folder: Path, name: str, column: str = "", value: Any = None) -> Path:
    """20 generated policies; ``column`` of row 3 set to ``value`` when given."""
    path = folder / "ok.parquet"
    write_policies(path, generate_policies(20, seed=1))
    table = pq.read_table(path)
    if column:
        values = table.column(column).to_pylist()
        values[3] = value
        i = table.column_names.index(column)
        table = table.set_column(i, column, pa.array(values, table.column(column).type))
    out = folder / name
    if out.suffix == ".csv":
        pa_csv.write_csv(table, out)
    else:
        pq.write_table(table, out)
    return out


def _short_scenarios(folder: Path, years: int) -> Path:
    rows = [(s, y) for s in range(3) for y in range(1, years + 1)]
    table = pa.table(
        {
            "scenario_id": pa.array([r[0] for r in rows], pa.uint32()),
            "year": pa.array([r[1] for r in rows], pa.uint32()),
            "rate": [0.03] * len(rows),
        }
    )
    path = folder / "scenarios.parquet"
    pq.write_table(table, path)
    return path


def _config(folder: Path, policies: Path, projection: dict[str, Any], scenarios: bool) -> Path:
    sources: dict[str, Any] = {"policies": {"path": policies.name}}
    inputs = ["policies"]
    if scenarios:
        sources["scenarios"] = {"path": "scenarios.parquet"}
        inputs.append("scenarios")
    config = {
        "data_sources": sources,
        "engines": [
            {
                "id": "projection",
                "type": "projection",
                "config": projection,
                "inputs": inputs,
                "outputs": ["results"],
            }
        ],
        "output": {"path": "out/results.parquet"},
    }
    path = folder / "pipeline.json"
    path.write_text(json.dumps(config), "utf-8")
    return path


def _mortality_20_to_60(folder: Path) -> dict[str, Any]:
    lines = ["age,q", *(f"{age},0.01" for age in range(20, 61))]
    (folder / "mortality.csv").write_text("\n".join(lines) + "\n", "utf-8")
    return {"mortality_table": "mortality.csv"}


CASES = {
    "term_over_120": ("term", 150, False, {}, "column 'term', row 3: term 150 from age"),
    "term_uint32_max": ("term", 4294967295, False, {}, "column 'term', row 3: term 4294967295"),
    "policy_id_over_32_bits": ("policy_id", 2**32 + 5, False, {}, "column 'policy_id', row 3"),
    "scenarios_shorter_than_terms": ("", None, True, {}, "cover 5 years"),
    "mortality_table_misses_ages": ("", None, False, None, "the mortality table's last age"),
}


class TestValidateFindsBadData:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_validate_exits_2_naming_file_column_and_row(self, tmp_path: Path, case: str) -> None:
        """`livecalc validate` refuses the data with exit 2, naming file, column and 0-based row."""
        column, value, scenarios, projection, expected = CASES[case]
        policies = _policies(tmp_path, "policies.parquet", column, value)
        if scenarios:
            _short_scenarios(tmp_path, 5)
        if projection is None:
            projection = _mortality_20_to_60(tmp_path)
        config = _config(tmp_path, policies, projection, scenarios)

        result = subprocess.run(
            [LIVECALC, "validate", str(config)], capture_output=True, text=True, timeout=120
        )

        assert 2 == result.returncode
        assert f"policy file {policies}: " in result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr

    def test_run_refuses_before_any_chunk(self, tmp_path: Path) -> None:
        """`livecalc run` exits 2 on the same data, with no output file."""
        policies = _policies(tmp_path, "policies.parquet", "term", 150)
        config = _config(tmp_path, policies, {}, False)

        result = subprocess.run(
            [LIVECALC, "run", str(config)], capture_output=True, text=True, timeout=120
        )

        assert 2 == result.returncode
        assert f"policy file {policies}: column 'term', row 3: " in result.stderr
        assert not (tmp_path / "out").exists()

    def test_data_false_checks_the_engines_and_reads_no_data(self, tmp_path: Path) -> None:
        """check_engines(data=False) (a scheduler parsing a DAG file): the bad row is not
        read, while an engine config problem is still found."""
        policies = _policies(tmp_path, "policies.parquet", "term", 150)
        config = _config(tmp_path, policies, {}, False)

        checked = check_engines(config, data=False)
        with pytest.raises(ConfigurationError, match="column 'term', row 3"):
            check_engines(config)
        bad_key = _config(tmp_path, policies, {"discount_ratee": 0.03}, False)
        with pytest.raises(ConfigurationError, match=r"config\.discount_ratee: unknown key"):
            check_engines(bad_key, data=False)

        assert ["projection"] == [node.id for node in checked.engines]

    def test_csv_rows_name_their_line(self, tmp_path: Path) -> None:
        """In a CSV file the 0-based row comes with its line (header on line 1)."""
        policies = _policies(tmp_path, "policies.csv", "policy_id", 2**32 + 5)
        config = _config(tmp_path, policies, {}, False)

        with pytest.raises(ConfigurationError, match=r"column 'policy_id', row 3 \(line 5\)"):
            check_engines(config)

    def test_detail_output_takes_64_bit_ids(self, tmp_path: Path) -> None:
        """The same ids pass with "output": "detail", whose records hold 64-bit ids."""
        policies = _policies(tmp_path, "policies.parquet", "policy_id", 2**32 + 5)
        config = _config(tmp_path, policies, {"output": "detail"}, False)

        checked = check_engines(config)

        assert "projection" == checked.engines[0].id


class TestWhereTheCheckRuns:
    def test_scenarios_from_an_engine_are_not_judged_before_the_run(self, tmp_path: Path) -> None:
        """Scenarios an ESG will produce are unknown at validation: no deterministic-curve rule."""
        policies = _policies(tmp_path, "policies.parquet")
        config = json.loads(_config(tmp_path, policies, {}, False).read_text("utf-8"))
        esg = {"id": "esg", "type": "esg", "config": {"inner": 2, "years": 130}}
        config["engines"].insert(0, {**esg, "outputs": ["scenarios"]})
        config["engines"][1]["inputs"].append("scenarios")
        path = tmp_path / "esg.json"
        path.write_text(json.dumps(config), "utf-8")

        checked = check_engines(path)

        assert ["esg", "projection"] == [n.id for n in checked.engines]

    def test_process_workers_check_their_own_engine(self, tmp_path: Path) -> None:
        """Under the processes executor the worker's engine checks the data: exit 2, by row."""
        policies = _policies(tmp_path, "policies.parquet", "policy_id", 2**32 + 5)
        config = _config(tmp_path, policies, {}, False)

        result = subprocess.run(
            [LIVECALC, "run", str(config), "--executor", "processes"],
            capture_output=True,
            text=True,
            timeout=300,
        )

        assert 2 == result.returncode
        assert "column 'policy_id', row 3: value 4294967301" in result.stderr
        assert not (tmp_path / "out").exists()


class TestScenariosFromAnEsg:
    """Scenarios an ESG will write are known by length once it is initialised (issue 9 item 11)."""

    def test_term_longer_than_the_esg_horizon_is_refused_before_the_run(
        self, tmp_path: Path
    ) -> None:
        policies = generate_policies(30, seed=3)
        policies.records["term"][7] = 60
        policies.records["age"][7] = 30
        write_policies(tmp_path / "policies.parquet", policies)
        config = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "esg", "type": "esg", "outputs": ["scenarios"],
                 "config": {"model": "hull_white", "outer": 4, "inner": 1, "years": 40,
                            "curve": 0.03}},
                {"id": "projection", "type": "projection",
                 "inputs": ["policies", "scenarios"], "outputs": ["results"], "config": {}},
            ],
            "output": {"path": "out/results.parquet"},
        }  # fmt: skip
        (tmp_path / "pipeline.json").write_text(json.dumps(config))
        cli = [LIVECALC]

        for command in ("validate", "run"):
            done = subprocess.run(
                [*cli, command, "pipeline.json"],
                cwd=tmp_path, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert 2 == done.returncode, done.stderr
            assert "column 'term', row " in done.stderr
            assert "cover 40 years" in done.stderr
            assert "Traceback" not in done.stderr
        assert not (tmp_path / "out" / "results.parquet").exists()
