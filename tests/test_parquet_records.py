"""ParquetReader.read_records: any LiveCalc record layout read back from a file, checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livecalc.errors import ConfigurationError
from livecalc.io.parquet import ParquetReader, write_records
from livecalc.runtime.records import (
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)


def _results(n: int = 6) -> np.ndarray:
    records = np.zeros(n, dtype=RESULT_DTYPE)
    records["scenario_id"] = np.arange(n) % 3
    records["policy_id"] = np.arange(n) // 3 + 1
    records["npv"] = np.linspace(-2.5, 7.25, n)
    return records


class TestReadRecords:
    def test_round_trip_by_the_record_type_in_the_metadata(self, tmp_path: Path) -> None:
        """A file LiveCalc wrote comes back with the same dtype and values."""
        records = _results()
        write_records(tmp_path / "r.parquet", records)

        back = ParquetReader().read_records(tmp_path / "r.parquet")

        assert RESULT_DTYPE == back.dtype
        assert records.tobytes() == back.tobytes()

    def test_layout_found_by_its_columns(self, tmp_path: Path) -> None:
        """Without metadata, the layout whose columns the file has exactly is used."""
        records = np.zeros(3, dtype=SCENARIO_TOTAL_DTYPE)
        records["scenario_id"] = [0, 1, 2]
        records["npv"] = [1.0, 2.0, 3.0]
        write_records(tmp_path / "t.parquet", records)
        table = pq.read_table(tmp_path / "t.parquet").replace_schema_metadata(None)
        pq.write_table(table, tmp_path / "plain.parquet")

        back = ParquetReader().read_records(tmp_path / "plain.parquet")

        assert SCENARIO_TOTAL_DTYPE == back.dtype
        assert [1.0, 2.0, 3.0] == back["npv"].tolist()

    def test_other_layout_than_asked_is_refused(self, tmp_path: Path) -> None:
        """RESULT records asked as RESULT_DETAIL: both layouts named."""
        write_records(tmp_path / "r.parquet", _results())

        with pytest.raises(ConfigurationError) as info:
            ParquetReader().read_records(tmp_path / "r.parquet", RESULT_DETAIL_DTYPE)

        assert "holds RESULT records" in str(info.value)
        assert "RESULT_DETAIL records are needed" in str(info.value)

    def test_unknown_columns_are_refused(self, tmp_path: Path) -> None:
        """A file of no LiveCalc layout: its columns and the layouts are named."""
        pq.write_table(pa.table({"a": [1], "b": [2.0]}), tmp_path / "x.parquet")

        with pytest.raises(ConfigurationError) as info:
            ParquetReader().read_records(tmp_path / "x.parquet")

        assert "columns ['a', 'b'] match no LiveCalc record layout" in str(info.value)

    def test_id_out_of_its_type_is_refused(self, tmp_path: Path) -> None:
        """A RESULT policy_id past uint32 would wrap: refused with the row."""
        table = pa.table(
            {
                "scenario_id": pa.array([0, 1], pa.uint32()),
                "policy_id": pa.array([1, 2**32], pa.uint64()),
                "npv": [1.0, 2.0],
            }
        )
        pq.write_table(table, tmp_path / "r.parquet")

        with pytest.raises(ConfigurationError) as info:
            ParquetReader().read_records(tmp_path / "r.parquet", RESULT_DTYPE)

        assert "column 'policy_id', row 1: value 4294967296 is out of range" in str(info.value)

    def test_scenarios_are_checked_for_order(self, tmp_path: Path) -> None:
        """SCENARIO records keep the scenario file's rule: years 1..Y per scenario."""
        records = np.zeros(4, dtype=SCENARIO_DTYPE)
        records["scenario_id"] = [0, 0, 1, 1]
        records["year"] = [1, 2, 2, 1]
        write_records(tmp_path / "s.parquet", records)

        with pytest.raises(ConfigurationError) as info:
            ParquetReader().read_records(tmp_path / "s.parquet")

        assert "sort the rows by scenario_id then year" in str(info.value)
