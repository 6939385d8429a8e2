"""Assumption tables: layouts, the packaged tables, and validation errors naming rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import csv, parquet

from livecalc.assumptions.tables import (
    RateTable,
    default_lapse_path,
    default_mortality_path,
    gompertz_makeham_table,
    load_mortality_table,
    load_rate_table,
)
from livecalc.errors import ConfigurationError

# exp() differs by an ulp or two between libm builds (and numpy's SIMD paths), so a table
# computed here may differ in the last bit from the packaged CSV written on another machine.
# 1e-13 relative is a few hundred ulps: far below any actuarial meaning, far above libm noise.
LIBM_RTOL = 1e-13


def assert_same_rates(expected: np.ndarray, actual: np.ndarray) -> None:
    """Rates equal up to LIBM_RTOL: a transcendental result is never compared bit for bit."""
    np.testing.assert_allclose(actual, expected, rtol=LIBM_RTOL, atol=0.0)


def write_csv(tmp_path: Path, text: str, name: str = "t.csv") -> str:
    """Write ``text`` to a CSV file and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class TestPackagedTables:
    """The tables shipped in livecalc/data."""

    def test_mortality_is_the_gompertz_makeham_law(self) -> None:
        """The packaged CSV holds what gompertz_makeham_table() generates, to LIBM_RTOL."""
        table = load_mortality_table(default_mortality_path())
        law = gompertz_makeham_table()

        assert_same_rates(law.column("q_male").to_numpy(), table.q[0, :, 0])
        assert_same_rates(law.column("q_female").to_numpy(), table.q[1, :, 0])
        assert (0, 120) == (table.age_min, table.age_max)

    def test_law_comparison_survives_another_libm(self) -> None:
        """A law computed by a libm a few ulps off still matches the packaged table."""
        table = load_mortality_table(default_mortality_path())
        q = gompertz_makeham_table().column("q_male").to_numpy()
        # What another machine's exp() may give: odd ages 4 ulps up, even ages 4 ulps down.
        direction = np.where(np.arange(len(q)) % 2, 2.0, -1.0)
        other_libm = q
        for _ in range(4):
            other_libm = np.nextafter(other_libm, direction)

        assert_same_rates(other_libm, table.q[0, :, 0])

    def test_mortality_rises_with_age_to_one(self) -> None:
        """Gompertz-Makeham q rises with age and closes at q(120) = 1."""
        table = load_mortality_table(default_mortality_path())

        assert (np.diff(table.q[:2, :, 0], axis=1) > 0).all()
        assert 1.0 == table.rate(0, 120) == table.rate(1, 120)

    def test_lapse_table(self) -> None:
        """The packaged lapse rates fall by policy year and the last one carries on."""
        lapse = load_rate_table(default_lapse_path())

        assert 0.10 == lapse.rate(1)
        assert 0.03 == lapse.rate(40)


class TestMortalityLayouts:
    """Every documented mortality layout loads to q[gender, age, column]."""

    def test_gendered_other_is_the_mean(self, tmp_path: Path) -> None:
        """Gender 'other' takes the mean of the male and female rates."""
        path = write_csv(tmp_path, "age,q_male,q_female\n30,0.002,0.001\n31,0.004,0.002\n")

        table = load_mortality_table(path)

        assert 0.003 == pytest.approx(table.rate(2, 31))
        assert 0.004 == table.rate(0, 31)

    def test_unisex(self, tmp_path: Path) -> None:
        """A single q column applies to every gender."""
        path = write_csv(tmp_path, "age,q\n18,0.001\n19,0.0011\n")

        table = load_mortality_table(path)

        assert [0.0011] * 3 == [table.rate(g, 19) for g in range(3)]

    def test_select_and_ultimate(self, tmp_path: Path) -> None:
        """Policy years 1..N read the select columns, later years the ultimate one."""
        text = "age,select_1,select_2,ultimate\n40,0.001,0.002,0.003\n41,0.0015,0.0025,0.0035\n"
        table = load_mortality_table(write_csv(tmp_path, text))

        rates = [table.rate(0, 41, year) for year in (1, 2, 3, 10)]

        assert [0.0015, 0.0025, 0.0035, 0.0035] == rates
        assert 2 == table.select_period

    def test_gender_column_in_parquet(self, tmp_path: Path) -> None:
        """A long table with a gender column, from Parquet, is split by gender."""
        data = pa.table(
            {
                "gender": ["male", "male", "female", "female"],
                "age": [60, 61, 60, 61],
                "q": [0.01, 0.02, 0.005, 0.01],
            }
        )
        path = tmp_path / "q.parquet"
        parquet.write_table(data, path)

        table = load_mortality_table(str(path))

        assert [0.02, 0.01, 0.015] == pytest.approx([table.rate(g, 61) for g in range(3)])

    def test_arrow_table(self) -> None:
        """A pyarrow Table loads directly."""
        table = load_mortality_table(pa.table({"age": [0, 1], "q": [0.5, 1.0]}))

        assert 1.0 == table.rate(1, 1)


class TestValidation:
    """Bad tables are refused with the source, the row and the fix."""

    def test_probability_above_one(self, tmp_path: Path) -> None:
        """A q above 1 is refused, naming file and row."""
        path = write_csv(tmp_path, "age,q\n20,0.1\n21,1.5\n")

        with pytest.raises(ConfigurationError, match=r"t\.csv.*row 2: q = 1\.5"):
            load_mortality_table(path)

    def test_gap_in_ages(self, tmp_path: Path) -> None:
        """A missing age is refused, naming the row after the gap."""
        path = write_csv(tmp_path, "age,q\n20,0.1\n21,0.1\n23,0.1\n")

        with pytest.raises(ConfigurationError, match="row 3: age 23 follows 21"):
            load_mortality_table(path)

    def test_empty_cell(self, tmp_path: Path) -> None:
        """An empty value is refused, naming row and column."""
        path = write_csv(tmp_path, "age,q\n20,0.1\n21,\n")

        with pytest.raises(ConfigurationError, match="row 2: column 'q' is empty"):
            load_mortality_table(path)

    def test_missing_select_column(self, tmp_path: Path) -> None:
        """select_1 and select_3 without select_2 are refused."""
        path = write_csv(tmp_path, "age,select_1,select_3,ultimate\n20,0.1,0.1,0.1\n")

        with pytest.raises(ConfigurationError, match=r"select_1..select_N"):
            load_mortality_table(path)

    def test_genders_cover_different_ages(self) -> None:
        """Gender blocks over different ages are refused."""
        data = pa.table({"gender": [0, 0, 1], "age": [20, 21, 20], "q": [0.1, 0.1, 0.1]})

        with pytest.raises(ConfigurationError, match="same ages"):
            load_mortality_table(data)

    def test_unknown_file_type(self, tmp_path: Path) -> None:
        """A file that is neither CSV nor Parquet is refused."""
        path = write_csv(tmp_path, "age,q\n", name="t.xlsx")

        with pytest.raises(ConfigurationError, match=r"unknown file type '\.xlsx'"):
            load_mortality_table(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is named."""
        with pytest.raises(ConfigurationError, match=r"absent.csv.*no such file"):
            load_mortality_table(str(tmp_path / "absent.csv"), key="config.mortality_table")

    def test_policy_years_must_start_at_one(self, tmp_path: Path) -> None:
        """Rates by policy year must run 1, 2, 3 ..."""
        path = write_csv(tmp_path, "policy_year,rate\n1,0.1\n3,0.05\n")

        with pytest.raises(ConfigurationError, match="row 2: policy_year 3 should be 2"):
            load_rate_table(path)

    def test_yield_curve_allows_negative_rates(self, tmp_path: Path) -> None:
        """A yield curve accepts negative rates above -1 and refuses -1."""
        ok = write_csv(tmp_path, "year,rate\n1,-0.005\n2,0.01\n")
        bad = write_csv(tmp_path, "year,rate\n1,-1.0\n", name="bad.csv")

        curve = load_rate_table(ok, index="year", probabilities=False)

        assert [-0.005, 0.01] == curve.rates.tolist()
        with pytest.raises(ConfigurationError, match=r"row 1: rate -1.0"):
            load_rate_table(bad, index="year", probabilities=False)

    def test_rates_from_config_list(self) -> None:
        """A config list of rates is checked value by value."""
        assert 0.05 == RateTable.from_values([1.0, 0.05], "config.commissions").rate(9)
        with pytest.raises(ConfigurationError, match=r"config.lapse_table\[1\] \(policy year 2\)"):
            RateTable.from_values([0.1, 2.0], "config.lapse_table")

    def test_csv_and_parquet_agree(self, tmp_path: Path) -> None:
        """The same table read from CSV and from Parquet gives the same rates."""
        data = gompertz_makeham_table()
        csv.write_csv(data, tmp_path / "m.csv")
        parquet.write_table(data, tmp_path / "m.parquet")

        a = load_mortality_table(str(tmp_path / "m.csv"))
        b = load_mortality_table(str(tmp_path / "m.parquet"))

        assert np.array_equal(a.q, b.q)
