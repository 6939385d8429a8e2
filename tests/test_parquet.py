"""ParquetReader and ParquetWriter: validation with precise errors, round trips, atomic writes."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.io.parquet import (
    RECORD_TYPE_KEY,
    ParquetReader,
    ParquetWriter,
    aligned_records,
    write_records,
)
from livecalc.runtime.buffers import (
    ALL_SCENARIOS,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferManager,
    BufferType,
)


def _policies(n: int = 5) -> dict[str, Any]:
    """Valid policy columns as plain lists, the way a user would build a table."""
    return {
        "policy_id": list(range(100, 100 + n)),
        "age": [30 + i % 40 for i in range(n)],
        "gender": [i % 3 for i in range(n)],
        "underwriting_class": [i % 2 for i in range(n)],
        "product_type": [i % 3 for i in range(n)],
        "term": [10 + i % 20 for i in range(n)],
        "sum_assured": [100_000.0 + i for i in range(n)],
        "premium": [1_000.5 + i for i in range(n)],
    }


def _scenarios(n_scen: int = 3, years: int = 4) -> dict[str, Any]:
    return {
        "scenario_id": [s for s in range(n_scen) for _ in range(years)],
        "year": [y for _ in range(n_scen) for y in range(1, years + 1)],
        "rate": [0.01 * (s + 1) + 0.001 * y for s in range(n_scen) for y in range(years)],
    }


def _write(path: Path, columns: dict[str, Any]) -> Path:
    """Write columns with pyarrow's own writers (Parquet, or CSV by suffix)."""
    table = pa.table(columns)
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def _error(call: Any, *args: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        call(*args)
    return str(info.value)


def _result_detail(n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    records = aligned_records(RESULT_DETAIL_DTYPE, n)
    records["scenario_id"] = np.arange(n) // 7
    records["reserved"] = 0
    records["policy_id"] = np.arange(n) % 7 + 1
    for name in RESULT_DETAIL_DTYPE.names[3:]:  # type: ignore[index]
        records[name] = rng.normal(1_000.0, 300.0, n)
    return records


class TestReadPolicies:
    def test_parquet_round_trip(self, tmp_path: Path) -> None:
        """Policies written by write_records read back equal, 16-byte aligned, with no ext."""
        records = aligned_records(POLICY_DTYPE, 5)
        for name, values in _policies().items():
            records[name] = values
        write_records(tmp_path / "p.parquet", records)

        data = ParquetReader().read_policies(tmp_path / "p.parquet")

        assert records.tobytes() == data.records.tobytes()
        assert (data.records.ctypes.data % 16, data.ext) == (0, None)

    def test_csv_round_trip(self, tmp_path: Path) -> None:
        """A CSV policy file reads to the same records as the Parquet one."""
        _write(tmp_path / "p.parquet", _policies())
        _write(tmp_path / "p.csv", _policies())

        from_parquet = ParquetReader().read_policies(tmp_path / "p.parquet")
        from_csv = ParquetReader().read_policies(tmp_path / "p.csv")

        assert from_parquet.records.tobytes() == from_csv.records.tobytes()

    def test_whole_floats_and_extra_columns_are_accepted(self, tmp_path: Path) -> None:
        """Integer columns stored as whole floats cast safely; unknown columns are ignored."""
        cols = _policies(3)
        cols["age"] = [30.0, 41.0, 52.0]
        cols["comment"] = ["a", "b", "c"]
        _write(tmp_path / "p.parquet", cols)

        data = ParquetReader().read_policies(tmp_path / "p.parquet")

        assert data.records["age"].tolist() == [30, 41, 52]

    def test_in_force_columns_fill_ext_with_defaults(self, tmp_path: Path) -> None:
        """A file with duration_months only gets ext with that column and policy_count 1.0."""
        cols = _policies(3)
        cols["duration_months"] = [0, 12, 30]
        _write(tmp_path / "p.parquet", cols)

        data = ParquetReader().read_policies(tmp_path / "p.parquet")

        assert data.ext is not None
        assert [
            (int(e["policy_id"]), int(e["duration_months"]), float(e["policy_count"]))
            for e in data.ext
        ] == [(100, 0, 1.0), (101, 12, 1.0), (102, 30, 1.0)]

    def test_read_into_buffer_manager_buffers(self, tmp_path: Path) -> None:
        """read_policies_into fills caller buffers in place and defaults ext when absent."""
        _write(tmp_path / "p.parquet", _policies(4))
        with BufferManager() as mgr:
            pol = mgr.allocate_buffer(BufferType.INPUT, "pol", 10)
            ext = mgr.allocate("ext", POLICY_EXT_DTYPE, 10)

            rows = ParquetReader().read_policies_into(tmp_path / "p.parquet", pol.data, ext.data)

            assert 4 == rows
            assert [100, 101, 102, 103] == pol.data["policy_id"][:4].tolist()
            assert [100, 101, 102, 103] == ext.data["policy_id"][:4].tolist()
            assert [1.0] * 4 == ext.data["policy_count"][:4].tolist()
            assert [0] * 4 == ext.data["duration_months"][:4].tolist()

    def test_too_small_buffer_is_refused(self, tmp_path: Path) -> None:
        """A buffer with fewer records than the file's rows is refused with the fix."""
        _write(tmp_path / "p.parquet", _policies(4))
        out = aligned_records(POLICY_DTYPE, 3)

        message = _error(ParquetReader().read_policies_into, tmp_path / "p.parquet", out)

        assert "holds 3 records" in message and "get_row_count" in message

    def test_wrong_buffer_dtype_is_refused(self, tmp_path: Path) -> None:
        """A buffer of another record type is refused, naming both dtypes."""
        _write(tmp_path / "p.parquet", _policies(2))
        out = aligned_records(SCENARIO_DTYPE, 3)

        message = _error(ParquetReader().read_policies_into, tmp_path / "p.parquet", out)

        assert "records_out has dtype" in message

    @settings(max_examples=15, deadline=None)
    @given(
        ages=st.lists(st.integers(0, 120), min_size=1, max_size=40),
        amounts=st.floats(0, 1e12, allow_nan=False),
    )
    def test_any_valid_policy_round_trips(self, ages: list[int], amounts: float) -> None:
        """Any policies within the ranges survive write then read unchanged."""

        records = aligned_records(POLICY_DTYPE, len(ages))
        records["policy_id"] = np.arange(len(ages))[::-1]  # descending ids are fine too
        records["age"] = ages
        records["gender"] = 2
        records["underwriting_class"] = 7
        records["product_type"] = 1
        records["term"] = 2**32 - 1
        records["sum_assured"] = amounts
        records["premium"] = amounts / 3
        with tempfile.TemporaryDirectory() as folder:
            write_records(Path(folder) / "p.parquet", records)

            data = ParquetReader().read_policies(Path(folder) / "p.parquet")

        assert records.tobytes() == data.records.tobytes()


class TestPolicyValidation:
    @pytest.mark.parametrize(
        ("column", "values", "shown"),
        [
            ("age", [30, 40, 30.5, 20, 20], "30.5"),
            ("age", [30, 40, -1, 20, 20], "-1"),
            ("age", [30, 40, 300, 20, 20], "300"),
            ("gender", [0, 1, 3, 0, 0], "3"),
            ("underwriting_class", [0, 1, 256, 0, 0], "256"),
            ("product_type", [0, 1, 5, 0, 0], "5"),
            ("term", [5, 5, 0, 5, 5], "0"),
            ("sum_assured", [1.0, 1.0, -0.01, 1.0, 1.0], "-0.01"),
            ("premium", [1.0, 1.0, math.nan, 1.0, 1.0], "nan"),
            ("premium", [1.0, 1.0, math.inf, 1.0, 1.0], "inf"),
            ("policy_id", [1, 2, -7, 3, 4], "-7"),
            ("age", [30, 40, None, 20, 20], "null"),
        ],
    )
    def test_bad_value_names_file_column_row_value_and_fix(
        self, tmp_path: Path, column: str, values: list[Any], shown: str
    ) -> None:
        """A bad value is refused with the file, column, first bad row (2), value and fix."""
        cols = _policies()
        cols[column] = values
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert str(path) in message
        assert f"column {column!r}, row 2:" in message
        assert shown in message
        assert "fix the file" in message

    def test_csv_error_gives_the_line_too(self, tmp_path: Path) -> None:
        """In a CSV file the error names the 0-based row and the file line (header is 1)."""
        cols = _policies()
        cols["age"] = [30, 40, 30, 121, 20]
        path = _write(tmp_path / "bad.csv", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "column 'age', row 3 (line 5): value 121 is out of range" in message

    def test_fractional_integer_is_not_truncated(self, tmp_path: Path) -> None:
        """A fractional value in an integer column is refused as not whole, never truncated."""
        cols = _policies()
        cols["term"] = [10.0, 10.0, 10.0, 10.0, 12.75]
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "column 'term', row 4: value 12.75 is not a whole number" in message

    def test_text_column_is_refused(self, tmp_path: Path) -> None:
        """A text value in a numeric column is pointed at by row."""
        cols = _policies()
        cols["term"] = ["10", "10", "ten", "10", "10"]
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "column 'term', row 2: value 'ten' is not a number" in message

    def test_numbers_as_text_parse_exactly(self, tmp_path: Path) -> None:
        """Numbers stored as text are parsed exactly, ids above 2**53 included."""
        cols = _policies(2)
        cols["policy_id"] = ["18446744073709551615", "9007199254740993"]
        cols["premium"] = ["12.5", "1e3"]
        path = _write(tmp_path / "text.parquet", cols)

        data = ParquetReader().read_policies(path)

        assert [2**64 - 1, 2**53 + 1] == data.records["policy_id"].tolist()
        assert [12.5, 1000.0] == data.records["premium"].tolist()

    def test_non_numeric_type_is_refused(self, tmp_path: Path) -> None:
        """A column of another type (here booleans) is refused, naming its type."""
        cols = _policies(2)
        cols["gender"] = [True, False]
        path = _write(tmp_path / "bool.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "column 'gender', row 0: the column holds bool values, not numbers" in message

    def test_duplicate_policy_id_names_both_rows(self, tmp_path: Path) -> None:
        """A repeated policy_id is refused at its second row, naming the first."""
        cols = _policies()
        cols["policy_id"] = [5, 9, 7, 9, 5]
        path = _write(tmp_path / "dup.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "column 'policy_id', row 3: value 9 repeats row 1" in message

    def test_bad_in_force_column(self, tmp_path: Path) -> None:
        """The optional in-force columns are validated like the required ones."""
        cols = _policies()
        cols["policy_count"] = [1.0, 2.0, 1.0, -3.0, 1.0]
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "column 'policy_count', row 3: value -3.0 is out of range" in message

    def test_missing_columns_are_listed_with_a_suggestion(self, tmp_path: Path) -> None:
        """Missing required columns are all named, with a near-miss rename suggested."""
        cols = _policies()
        cols["Age"] = cols.pop("age")
        del cols["premium"]
        path = _write(tmp_path / "cols.parquet", cols)

        message = _error(ParquetReader().read_policies, path)

        assert "missing required column(s) 'age', 'premium'" in message
        assert "'Age' -> 'age'" in message

    def test_missing_file_is_named(self, tmp_path: Path) -> None:
        """A missing file is refused with its path and a hint."""
        message = _error(ParquetReader().read_policies, tmp_path / "nope.parquet")

        assert f"policy file not found: {tmp_path / 'nope.parquet'}" in message

    def test_not_parquet_is_refused(self, tmp_path: Path) -> None:
        """A file that is not Parquet is refused as unreadable, not with a pyarrow error."""
        path = tmp_path / "junk.parquet"
        path.write_bytes(b"not a parquet file at all")

        message = _error(ParquetReader().read_policies, path)

        assert "not a readable Parquet file" in message

    def test_malformed_csv_is_refused(self, tmp_path: Path) -> None:
        """A CSV file with a short line is refused by name, not with a pyarrow error."""
        path = tmp_path / "bad.csv"
        header = ",".join(_policies())
        path.write_text(f"{header}\n1,30,0,0,0,10,1000.0,10.0\n2,30,0\n")

        message = _error(ParquetReader().read_policies, path)

        assert f"policy file {path}: not a readable CSV file" in message

    def test_folder_is_refused(self, tmp_path: Path) -> None:
        """A folder path is refused with the fix."""
        message = _error(ParquetReader().read_policies, tmp_path)

        assert "is a folder" in message


class TestReadScenarios:
    def test_round_trip_and_read_into(self, tmp_path: Path) -> None:
        """Scenarios read equal to the file, by read_scenarios and read_scenarios_into."""
        path = _write(tmp_path / "s.parquet", _scenarios())
        out = aligned_records(SCENARIO_DTYPE, 20)

        data = ParquetReader().read_scenarios(path)
        rows = ParquetReader().read_scenarios_into(path, out)

        assert _scenarios()["rate"] == data["rate"].tolist()
        assert (12, data.tobytes()) == (rows, out[:12].tobytes())

    def test_csv_scenarios(self, tmp_path: Path) -> None:
        """A CSV scenario file reads like the Parquet one."""
        path = _write(tmp_path / "s.csv", _scenarios())

        data = ParquetReader().read_scenarios(path)

        assert _scenarios()["year"] == data["year"].tolist()

    @pytest.mark.parametrize(
        ("change", "column", "row", "text"),
        [
            ({"year": [1, 2, 4, 3] * 3}, "year", 2, "year 4 where 3 was expected"),
            (
                {"scenario_id": [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]},
                "scenario_id",
                7,
                "scenario 1 ends after 3 years, but scenario 0 has 4",
            ),
            (
                {"scenario_id": [0] * 4 + [2] * 4 + [1] * 4},
                "scenario_id",
                8,
                "scenario_id 1 follows 2",
            ),
            ({"scenario_id": [0] * 4 + [1] * 4 + [1] * 4}, "scenario_id", 8, "follows 1"),
            ({"rate": [0.0] * 5 + [-1.0] + [0.0] * 6}, "rate", 5, "value -1.0 is out of range"),
            ({"rate": [0.0] * 5 + [math.nan] + [0.0] * 6}, "rate", 5, "nan"),
            ({"scenario_id": [ALL_SCENARIOS] * 12}, "scenario_id", 0, "out of range"),
            ({"year": [0, 1, 2, 3] * 3}, "year", 0, "value 0 is out of range"),
        ],
    )
    def test_bad_scenarios(
        self, tmp_path: Path, change: dict[str, Any], column: str, row: int, text: str
    ) -> None:
        """A scenario file out of order or out of range is refused at its first bad row."""
        cols = {**_scenarios(), **change}
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_scenarios, path)

        assert f"column {column!r}, row {row}: " in message
        assert text in message

    def test_short_last_scenario(self, tmp_path: Path) -> None:
        """A last scenario with fewer years than the first is refused at its first row."""
        cols = {k: v[:-1] for k, v in _scenarios().items()}
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_scenarios, path)

        assert "row 8: the last scenario (2) has 3 row(s), but scenario 0 has 4" in message

    def test_scenario_running_past_the_first_ones_years(self, tmp_path: Path) -> None:
        """A scenario with more years than the first is named where it goes on."""
        cols = {"scenario_id": [0, 0, 1, 1, 1], "year": [1, 2, 1, 2, 3], "rate": [0.01] * 5}
        path = _write(tmp_path / "bad.parquet", cols)

        message = _error(ParquetReader().read_scenarios, path)

        assert "'year', row 4: scenario 1 goes on to year 3, but scenario 0 has 2" in message

    def test_empty_scenario_file(self, tmp_path: Path) -> None:
        """A scenario file with no rows is refused."""
        cols = {k: pa.array([], type=pa.float64()) for k in _scenarios()}
        path = _write(tmp_path / "empty.parquet", cols)

        message = _error(ParquetReader().read_scenarios, path)

        assert "no rows" in message


class TestRowCount:
    def test_parquet_count_reads_only_the_footer(self, tmp_path: Path) -> None:
        """get_row_count answers from the footer even when the data pages are destroyed."""
        path = tmp_path / "p.parquet"
        records = _result_detail(5_000)
        write_records(path, records)
        raw = bytearray(path.read_bytes())
        # Overwrite the middle of the file (data pages); the footer at the end survives.
        raw[100 : len(raw) // 2] = b"\xff" * (len(raw) // 2 - 100)
        path.write_bytes(bytes(raw))

        count = ParquetReader().get_row_count(path)

        assert 5_000 == count
        with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error for broken pages
            pq.read_table(path)

    def test_damaged_data_pages_are_refused_on_read(self, tmp_path: Path) -> None:
        """A file whose footer is fine but whose pages are damaged fails reading by name."""
        path = tmp_path / "p.parquet"
        write_policies(path, generate_policies(5_000))
        raw = bytearray(path.read_bytes())
        raw[100 : len(raw) // 2] = b"\xff" * (len(raw) // 2 - 100)
        path.write_bytes(bytes(raw))

        message = _error(ParquetReader().read_policies, path)

        assert 5_000 == ParquetReader().get_row_count(path)
        assert f"policy file {path}: reading failed" in message and "write it again" in message

    def test_metadata_from_the_footer(self, tmp_path: Path) -> None:
        """read_metadata returns the writer's key-value metadata as text."""
        path = tmp_path / "r.parquet"
        write_records(path, _result_detail(3), {"livecalc.esg": '{"seed": 1}'})

        meta = ParquetReader().read_metadata(path)

        assert {"livecalc.esg": '{"seed": 1}', RECORD_TYPE_KEY: "RESULT_DETAIL"} == meta

    def test_csv_count(self, tmp_path: Path) -> None:
        """get_row_count counts a CSV file's data rows, not its header."""
        path = _write(tmp_path / "p.csv", _policies(7))

        assert 7 == ParquetReader().get_row_count(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """get_row_count names a missing file."""
        message = _error(ParquetReader().get_row_count, tmp_path / "x.csv")

        assert "not found" in message and "x.csv" in message


class TestParquetWriter:
    @pytest.mark.parametrize(
        ("dtype", "expected"),
        [
            (RESULT_DTYPE, [("scenario_id", "uint32"), ("policy_id", "uint64"), ("npv", "double")]),
            (
                RESULT_DETAIL_DTYPE,
                [("scenario_id", "uint32"), ("policy_id", "uint64")]
                + [
                    (n, "double")
                    for n in [
                        "npv",
                        "premium_income",
                        "death_benefits",
                        "surrender_benefits",
                        "expenses",
                        "maturity_benefits",
                    ]
                ],
            ),
            (
                SCENARIO_TOTAL_DTYPE,
                [("scenario_id", "uint32"), ("policy_count", "double")]
                + [
                    (n, "double")
                    for n in [
                        "npv",
                        "premium_income",
                        "death_benefits",
                        "surrender_benefits",
                        "expenses",
                        "maturity_benefits",
                    ]
                ],
            ),
            (SCENARIO_DTYPE, [("scenario_id", "uint32"), ("year", "uint32"), ("rate", "double")]),
        ],
    )
    def test_result_schemas(
        self, tmp_path: Path, dtype: np.dtype[Any], expected: list[tuple[str, str]]
    ) -> None:
        """Files carry the seed's column names and types, without reserved padding."""
        path = tmp_path / "r.parquet"
        records = np.zeros(3, dtype=dtype)
        write_records(path, records)

        schema = pq.read_schema(path)

        assert expected == [(f.name, str(f.type)) for f in schema]

    def test_values_round_trip(self, tmp_path: Path) -> None:
        """Every written column equals its record field, RESULT's uint32 ids widened."""
        records = aligned_records(RESULT_DTYPE, 4)
        records["scenario_id"] = [0, 0, 1, 1]
        records["policy_id"] = [2**32 - 1, 5, 2**32 - 1, 5]
        records["npv"] = [1.5, -2.25, 3.0, 1e300]
        records["reserved"] = 0
        write_records(tmp_path / "r.parquet", records)

        table = pq.read_table(tmp_path / "r.parquet")

        assert records["policy_id"].tolist() == table["policy_id"].to_pylist()
        assert records["npv"].tolist() == table["npv"].to_pylist()

    def test_row_groups_zstd_and_metadata(self, tmp_path: Path) -> None:
        """Chunks of 700 fill row groups of 1000 rows, zstd-compressed, with the metadata."""
        path = tmp_path / "r.parquet"
        records = _result_detail(2_500)
        with ParquetWriter(path, RESULT_DETAIL_DTYPE, {"run": "r1"}, row_group_size=1_000) as w:
            for start in range(0, 2_500, 700):
                w.write_chunk(records[start : start + 700])

        meta = pq.ParquetFile(path).metadata

        assert [meta.row_group(i).num_rows for i in range(3)] == [1_000, 1_000, 500]
        assert "ZSTD" == meta.row_group(0).column(3).compression
        kv = pq.read_schema(path).metadata
        assert (kv[b"run"], kv[RECORD_TYPE_KEY.encode()]) == (b"r1", b"RESULT_DETAIL")
        assert 2_500 == w.rows_written

    def test_exception_leaves_no_file(self, tmp_path: Path) -> None:
        """An exception mid-stream leaves neither the file nor a temporary file."""
        path = tmp_path / "r.parquet"
        records = _result_detail(3_000)

        writer = ParquetWriter(path, RESULT_DETAIL_DTYPE, row_group_size=1_000)
        with pytest.raises(RuntimeError), writer:
            writer.write_chunk(records)
            raise RuntimeError("engine failed")

        assert [] == list(tmp_path.iterdir())

    def test_exception_keeps_previous_file(self, tmp_path: Path) -> None:
        """A failed rewrite leaves the previous file at path byte for byte."""
        path = tmp_path / "r.parquet"
        write_records(path, _result_detail(10, seed=1))
        before = path.read_bytes()

        with pytest.raises(RuntimeError), ParquetWriter(path, RESULT_DETAIL_DTYPE) as w:
            w.write_chunk(_result_detail(50, seed=2))
            raise RuntimeError("engine failed")

        assert before == path.read_bytes()
        assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]

    def test_abort_discards(self, tmp_path: Path) -> None:
        """abort() deletes the temporary file and a later close does nothing."""
        path = tmp_path / "r.parquet"
        w = ParquetWriter(path, RESULT_DTYPE)
        w.write_chunk(np.zeros(5, RESULT_DTYPE))

        w.abort()
        w.close()

        assert [] == list(tmp_path.iterdir())

    def test_clean_close_replaces_previous_file(self, tmp_path: Path) -> None:
        """A successful write replaces an existing file."""
        path = tmp_path / "r.parquet"
        write_records(path, _result_detail(10))

        write_records(path, _result_detail(20))

        assert 20 == pq.ParquetFile(path).metadata.num_rows

    def test_empty_file_has_schema(self, tmp_path: Path) -> None:
        """A writer closed without chunks leaves a valid file with zero rows."""
        path = tmp_path / "r.parquet"
        with ParquetWriter(path, RESULT_DTYPE):
            pass

        assert (pq.ParquetFile(path).metadata.num_rows, len(pq.read_schema(path))) == (0, 3)

    def test_csv_output(self, tmp_path: Path) -> None:
        """A .csv path is written as CSV with the same columns, floats exact."""
        records = _result_detail(30)
        write_records(tmp_path / "r.csv", records)

        table = pa_csv.read_csv(tmp_path / "r.csv")

        assert records["expenses"].tolist() == table["expenses"].to_pylist()
        assert "scenario_id" == table.column_names[0]

    def test_wrong_chunk_dtype(self, tmp_path: Path) -> None:
        """A chunk of another record type is refused and nothing is written."""
        writer = ParquetWriter(tmp_path / "r.parquet", RESULT_DTYPE)
        with pytest.raises(ConfigurationError, match="open one writer per record type"), writer:
            writer.write_chunk(np.zeros(2, RESULT_DETAIL_DTYPE))

        assert [] == list(tmp_path.iterdir())

    def test_missing_folder(self, tmp_path: Path) -> None:
        """A target in a folder that does not exist is refused, naming the folder."""
        message = _error(ParquetWriter, tmp_path / "no" / "r.parquet", RESULT_DTYPE)

        assert f"folder {tmp_path / 'no'} does not exist" in message

    def test_non_string_metadata(self, tmp_path: Path) -> None:
        """Metadata values must be strings; the key is named."""
        message = _error(ParquetWriter, tmp_path / "r.parquet", RESULT_DTYPE, {"seed": 42})

        assert "metadata 'seed'" in message

    def test_plain_dtype_is_refused(self, tmp_path: Path) -> None:
        """Only record dtypes can be written."""
        message = _error(ParquetWriter, tmp_path / "r.parquet", np.dtype("f8"))

        assert "structured" in message

    @settings(max_examples=20, deadline=None)
    @given(
        chunks=st.lists(st.integers(0, 300), min_size=0, max_size=6),
        row_group_size=st.integers(1, 400),
    )
    def test_any_chunking_gives_the_same_rows(self, chunks: list[int], row_group_size: int) -> None:
        """Whatever the chunk sizes, the file holds the rows in order in full row groups."""

        records = _result_detail(sum(chunks))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "r.parquet"
            with ParquetWriter(path, RESULT_DETAIL_DTYPE, row_group_size=row_group_size) as w:
                start = 0
                for size in chunks:
                    w.write_chunk(records[start : start + size])
                    start += size
            table = pq.read_table(path)
            meta = pq.ParquetFile(path).metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

        assert records["npv"].tolist() == table["npv"].to_pylist()
        assert all(size == row_group_size for size in sizes[:-1])
