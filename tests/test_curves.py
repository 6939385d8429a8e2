"""Initial zero curves: construction, files, log-linear interpolation and extrapolation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.assumptions.curves import ZeroCurve
from livecalc.errors import ConfigurationError

SLOPED = ZeroCurve.from_spot_rates([1.0, 5.0, 10.0, 30.0], [0.01, 0.02, 0.03, 0.035])


class TestZeroCurve:
    def test_flat_curve_is_annual_effective(self) -> None:
        """A flat 3% curve discounts by 1.03 per year at every maturity, also between years."""

        dfs = ZeroCurve.flat(0.03).discount_factor([0.0, 0.5, 1.0, 7.0, 60.0])

        np.testing.assert_allclose(1.03 ** -np.array([0.0, 0.5, 1.0, 7.0, 60.0]), dfs, rtol=1e-14)

    def test_spot_rates_give_their_discount_factors(self) -> None:
        """Spot rates s at t give (1 + s)^-t, or exp(-s t) when continuously compounded."""
        continuous = ZeroCurve.from_spot_rates([2.0], [0.04], "continuous")

        assert math.isclose(1.02**-5.0, float(SLOPED.discount_factor(5.0)), rel_tol=1e-14)
        assert math.isclose(math.exp(-0.08), float(continuous.discount_factor(2.0)), rel_tol=1e-14)

    def test_interpolation_is_log_linear(self) -> None:
        """Between nodes the log discount factor is linear: piecewise-constant forwards."""
        p5, p10 = SLOPED.discount_factor(5.0), SLOPED.discount_factor(10.0)

        expected = math.exp(0.3 * math.log(p5) + 0.7 * math.log(p10))

        assert math.isclose(expected, float(SLOPED.discount_factor(8.5)), rel_tol=1e-13)

    def test_extrapolation_continues_last_forward(self) -> None:
        """Beyond the last node the last segment's forward rate carries on."""
        p10, p30 = SLOPED.discount_factor(10.0), SLOPED.discount_factor(30.0)
        forward = math.log(p10 / p30) / 20.0
        expected = float(p30) * math.exp(-forward * 20.0)

        assert math.isclose(expected, float(SLOPED.discount_factor(50.0)), rel_tol=1e-13)

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=6),
        st.floats(min_value=0.0, max_value=80.0),
    )
    def test_non_negative_forwards_give_decreasing_factors(
        self, forwards: list[float], t: float
    ) -> None:
        """With forward rates >= 0 between nodes, discount factors never rise with maturity."""
        maturities = [float(i + 1) for i in range(len(forwards))]
        dfs = tuple(np.exp(-np.cumsum(forwards)))
        curve = ZeroCurve(tuple(maturities), dfs)

        later = curve.discount_factor(t + 0.5)

        assert bool(later <= curve.discount_factor(t) * (1 + 1e-15))

    def test_yearly_factors_start_at_one(self) -> None:
        """The yearly discount factors run from P(0, 0) = 1 to P(0, years)."""

        dfs = SLOPED.yearly_discount_factors(3)

        assert (4, 1.0) == (len(dfs), float(dfs[0]))
        assert math.isclose(1.01**-1, float(dfs[1]), rel_tol=1e-14)

    def test_spot_rate_inverts_discount_factor(self) -> None:
        """spot_rate gives back the annual spot rates the curve was built from."""
        spot = SLOPED.spot_rate([1.0, 5.0, 10.0])

        np.testing.assert_allclose([0.01, 0.02, 0.03], spot, rtol=1e-12)

    @pytest.mark.parametrize(
        ("maturities", "dfs", "message"),
        [
            ((1.0, 1.0), (0.99, 0.98), "sort maturities"),
            ((0.0,), (1.0,), "must be > 0"),
            ((1.0,), (-0.5,), "must be finite and > 0"),
            ((1.0, 2.0), (0.99,), "one discount factor per maturity"),
        ],
    )
    def test_invalid_nodes_raise(
        self, maturities: tuple[float, ...], dfs: tuple[float, ...], message: str
    ) -> None:
        """Unsorted, non-positive or mismatched nodes raise ConfigurationError saying why."""

        with pytest.raises(ConfigurationError, match=message):
            ZeroCurve(maturities, dfs)


class TestCurveFiles:
    def test_csv_of_spot_rates(self, tmp_path: Path) -> None:
        """A CSV of maturity and rate reads as spot rates."""
        path = tmp_path / "curve.csv"
        path.write_text("maturity,rate\n1,0.01\n10,0.03\n", encoding="utf-8")

        curve = ZeroCurve.from_file(path, "spot")

        assert (1.0, 10.0) == curve.maturities
        assert math.isclose(1.03**-10, curve.discount_factors[1], rel_tol=1e-14)

    def test_parquet_of_discount_factors(self, tmp_path: Path) -> None:
        """A Parquet file of maturity and discount_factor reads as discount factors."""
        path = tmp_path / "curve.parquet"
        pq.write_table(pa.table({"maturity": [1.0, 2.0], "discount_factor": [0.99, 0.97]}), path)

        curve = ZeroCurve.from_file(path, "discount")

        assert ((1.0, 2.0), (0.99, 0.97)) == (curve.maturities, curve.discount_factors)

    def test_missing_column_names_file_and_columns(self, tmp_path: Path) -> None:
        """A file without the kind's column raises naming the file and the columns needed."""
        path = tmp_path / "curve.csv"
        path.write_text("maturity,rate\n1,0.01\n", encoding="utf-8")

        with pytest.raises(ConfigurationError, match=r"curve\.csv.*'discount_factor'"):
            ZeroCurve.from_file(path, "discount")

    def test_bad_number_names_line(self, tmp_path: Path) -> None:
        """A value that is not a number raises naming the file's line."""
        path = tmp_path / "curve.csv"
        path.write_text("maturity,rate\n1,0.01\n2,abc\n", encoding="utf-8")

        with pytest.raises(ConfigurationError, match="line 3"):
            ZeroCurve.from_file(path, "spot")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file raises ConfigurationError naming it."""

        with pytest.raises(ConfigurationError, match=r"nope\.csv"):
            ZeroCurve.from_file(tmp_path / "nope.csv", "spot")
