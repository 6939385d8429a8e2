"""esg_check: the martingale test and moment checks, from arrays and from Parquet files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from livecalc.assumptions.curves import ZeroCurve
from livecalc.cli.esg import esg_app
from livecalc.engines.esg import ESGEngine
from livecalc.engines.esg_check import check_scenarios
from livecalc.errors import ConfigurationError
from livecalc.io.parquet import ParquetWriter
from livecalc.kernels.esg import GaussianParams, PathLayout, generate
from livecalc.kernels.esg_models import GaussianStep, cir_integral_variances, cir_rate_variance
from livecalc.kernels.esg_rng import seed_key
from livecalc.runtime.buffers import SCENARIO_DTYPE

SLOPED = {"maturities": [1, 5, 10, 30], "rates": [0.005, 0.02, 0.03, 0.04]}


def _scenarios(config: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    engine = ESGEngine()
    engine.initialize(config)
    spec = engine.output_spec({})
    assert spec is not None
    buffer = np.empty(spec.records, dtype=spec.dtype)
    engine.run_chunk(None, buffer)
    return buffer, dict(engine.get_outputs()["esg_metadata"])


def _write(path: Path, records: np.ndarray, metadata: dict[str, Any] | None) -> Path:
    table = pa.table({name: records[name] for name in ("scenario_id", "year", "rate")})
    if metadata is not None:
        table = table.replace_schema_metadata({"livecalc.esg": json.dumps(metadata)})
    pq.write_table(table, path)
    return path


def _biased_hull_white(outer: int, inner: int, years: int) -> np.ndarray:
    """Hull-White that forgets the convexity term: its shifts are the bare log forwards."""
    curve = 1.03 ** -np.arange(years + 1.0)
    params = GaussianParams(
        step=GaussianStep.of(0.1, 0.01),
        x0=0.0,
        levels=np.zeros(years),
        shifts=-np.diff(np.log(curve)),
    )
    out = np.empty(outer * inner * years, dtype=SCENARIO_DTYPE)
    generate(out, PathLayout(inner, years, 0, False, seed_key(1)), params, 0, outer)
    return out


class TestMartingaleCheck:
    @pytest.mark.parametrize("curve", [0.03, SLOPED], ids=["flat", "sloped"])
    def test_hull_white_passes(self, curve: object) -> None:
        """Hull-White fitted to a flat or sloped curve passes every check."""
        config = {"outer": 10, "inner": 1000, "years": 40, "seed": 42, "curve": curve}
        records, metadata = _scenarios(config)

        report = check_scenarios(records, metadata=metadata)

        assert (True, 120, 10_000) == (report.passed, len(report.rows), report.independent_units)

    def test_biased_generator_fails(self) -> None:
        """A Hull-White generator without the convexity correction fails the martingale test."""
        records = _biased_hull_white(outer=10, inner=1000, years=40)

        report = check_scenarios(records, curve=ZeroCurve.flat(0.03))

        assert False is report.passed
        assert {"martingale"} == {row.check for row in report.failures}
        assert report.failures[-1].z > 10  # Jensen: without the correction DFs are too high

    def test_shifted_rates_fail_the_moment_check(self) -> None:
        """Rates nudged up by 10bp fail the martingale test and the mean check."""
        records, metadata = _scenarios({"outer": 10, "inner": 1000, "years": 20, "seed": 5})
        records["rate"] += 0.001

        report = check_scenarios(records, metadata=metadata)

        assert {"martingale", "mean"} == {row.check for row in report.failures}

    @pytest.mark.parametrize(
        "config",
        [
            {"model": "vasicek", "b": 0.05, "r0": 0.01, "antithetic": True},
            {"model": "cir", "sigma": 0.08, "r0": 0.01},
            {"model": "hull_white", "branching_year": 10, "curve": SLOPED},
        ],
        ids=["vasicek-antithetic", "cir", "hull-white-nested"],
    )
    def test_other_models_and_layouts_pass(self, config: dict[str, Any]) -> None:
        """Vasicek (antithetic), CIR and nested Hull-White sets pass against their curves."""
        records, metadata = _scenarios(
            {"outer": 200, "inner": 50, "years": 20, "seed": 3, **config}
        )

        report = check_scenarios(records, metadata=metadata)

        assert [] == [(r.check, r.maturity, round(r.z, 2)) for r in report.failures]

    def test_blocks_add_up_to_the_whole_set(self) -> None:
        """A set larger than one block gives the plain means over all its scenarios."""
        records, metadata = _scenarios({"outer": 3, "inner": 1000, "years": 400, "seed": 4})
        rates = records["rate"].reshape(-1, 400)
        mean_discount = np.cumprod(1.0 / (1.0 + rates), axis=1).mean(axis=0)

        rows = check_scenarios(records, metadata=metadata).rows
        observed = [r.observed for r in rows if r.check == "martingale"]

        np.testing.assert_allclose(mean_discount, observed, rtol=1e-10)

    def test_independent_units_follow_the_layout(self) -> None:
        """Units are outer paths when nested and pairs when antithetic."""
        nested, nested_meta = _scenarios({"outer": 4, "inner": 10, "years": 3, "branching_year": 1})
        paired, paired_meta = _scenarios({"outer": 4, "inner": 10, "years": 3, "antithetic": True})

        units = [
            check_scenarios(nested, metadata=nested_meta).independent_units,
            check_scenarios(paired, metadata=paired_meta).independent_units,
        ]

        assert [4, 20] == units

    def test_gaussian_moment_errors_are_the_models(self) -> None:
        """Gaussian moment rows use exact errors: var/n for the mean, 2 var^2/n for variance."""
        records, metadata = _scenarios({"model": "vasicek", "outer": 2, "inner": 50, "years": 4})

        rows = check_scenarios(records, metadata=metadata).rows
        mean_rows = [r for r in rows if r.check == "mean"]
        var_rows = [r for r in rows if r.check == "variance"]

        np.testing.assert_allclose(
            [np.sqrt(r.expected / 100) for r in var_rows], [r.std_error for r in mean_rows]
        )
        np.testing.assert_allclose(
            [np.sqrt(2 * r.expected**2 / 100) for r in var_rows], [r.std_error for r in var_rows]
        )

    def test_shared_outer_years_count_once_per_outer_path(self) -> None:
        """Before the branching year a nested set's error is that of one path per outer path."""
        config = {"model": "vasicek", "outer": 3, "inner": 20, "years": 4, "branching_year": 2}
        records, metadata = _scenarios(config)
        rows = check_scenarios(records, metadata=metadata).rows
        means = [r for r in rows if r.check == "mean"]
        one_path_errors = np.sqrt([r.expected / 3 for r in rows if r.check == "variance"])

        np.testing.assert_allclose(one_path_errors[:2], [r.std_error for r in means[:2]])
        assert [True, True] == [
            r.std_error < e for r, e in zip(means[2:], one_path_errors[2:], strict=True)
        ]

    def test_real_world_nested_set_refused(self) -> None:
        """A set with a real-world segment is refused: it need not reproduce the curve."""
        records, metadata = _scenarios(
            {"outer": 4, "inner": 10, "years": 5, "branching_year": 2, "market_price_of_risk": 0.2}
        )

        with pytest.raises(ConfigurationError, match="real-world"):
            check_scenarios(records, metadata=metadata)

    def test_unsorted_records_refused(self) -> None:
        """Records out of scenario/year order are refused naming the first bad row."""
        records, metadata = _scenarios({"outer": 1, "inner": 4, "years": 5})
        records[[3, 4]] = records[[4, 3]]

        with pytest.raises(ConfigurationError, match="row 3 has year 5, expected 4"):
            check_scenarios(records, metadata=metadata)

    def test_metadata_that_is_not_json_refused(self, tmp_path: Path) -> None:
        """A file whose livecalc.esg metadata is not JSON is refused naming the key."""
        records, _ = _scenarios({"outer": 1, "inner": 4, "years": 5})
        table = pa.table({name: records[name] for name in ("scenario_id", "year", "rate")})
        pq.write_table(
            table.replace_schema_metadata({"livecalc.esg": "{oops"}), tmp_path / "s.parquet"
        )

        with pytest.raises(ConfigurationError, match=r"'livecalc\.esg' is not JSON"):
            check_scenarios(tmp_path / "s.parquet")

    def test_no_curve_refused(self) -> None:
        """Without metadata or a curve there is nothing to test against."""
        records, _ = _scenarios({"outer": 1, "inner": 4, "years": 5})

        with pytest.raises(ConfigurationError, match="no initial curve"):
            check_scenarios(records)


class TestCIRVariance:
    def test_closed_form_matches_a_direct_double_integral(self) -> None:
        """Var(I_y) equals the double integral of Cov(r_s, r_u) = e^(-a|u-s|) Var(r_min)."""
        a, b, sigma, r0 = 0.3, 0.04, 0.1, 0.01
        n = 2000
        expected = []
        for y in (1, 3):
            s = (y - 1) + (np.arange(n) + 0.5) / n  # midpoint rule on a fine grid
            var_r = np.array([cir_rate_variance(a, b, sigma, r0, float(t)) for t in s])
            cov = np.exp(-a * np.abs(s[:, None] - s[None, :])) * np.minimum.outer(var_r, var_r)
            expected.append(cov.sum() / n**2)

        found = cir_integral_variances(a, b, sigma, r0, 3)

        np.testing.assert_allclose(expected, found[[0, 2]], rtol=1e-5)

    def test_one_substep_fails_the_variance_row(self) -> None:
        """A 1-sub-step CIR (year-1 variance 27% low) fails the variance row of year 1."""
        config = {"model": "cir", "outer": 2000, "inner": 1, "years": 5, "seed": 1}
        coarse, coarse_meta = _scenarios({**config, "substeps": 1})

        report = check_scenarios(coarse, metadata=coarse_meta)

        assert [("variance", 1)] == [(r.check, r.maturity) for r in report.failures]
        assert report.failures[0].z < -4

    def test_default_substeps_pass_with_variance_rows(self) -> None:
        """The default 4 sub-steps pass, and the report now has a variance row per year."""
        records, metadata = _scenarios({"model": "cir", "outer": 2000, "inner": 1, "years": 5})

        report = check_scenarios(records, metadata=metadata)

        assert (True, 5) == (report.passed, sum(r.check == "variance" for r in report.rows))


NESTED = {"outer": 200, "inner": 50, "years": 20, "seed": 3, "branching_year": 5}


class TestNestedPerOuterPath:
    @pytest.mark.parametrize("model", ["hull_white", "vasicek", "cir"])
    def test_correct_nested_sets_pass_the_per_outer_rows(self, model: str) -> None:
        """A correct nested set passes the inner_history row and an inner_variance row a year."""
        records, metadata = _scenarios({**NESTED, "model": model})

        report = check_scenarios(records, metadata=metadata)

        checks = [r.check for r in report.rows]
        assert (True, 1, 15) == (
            report.passed,
            checks.count("inner_history"),
            checks.count("inner_variance"),
        )

    def test_inner_paths_that_forget_their_outer_path_fail(self) -> None:
        """Inner paths drawn without their outer path's state pass the pooled rows but fail
        the per-outer-path variance rows."""
        records, metadata = _scenarios(NESTED)
        unconditional, _ = _scenarios({"outer": 10, "inner": 1000, "years": 20, "seed": 9})
        rates = records["rate"].reshape(-1, 20)
        rates[:, 5:] = unconditional["rate"].reshape(-1, 20)[:, 5:]

        report = check_scenarios(records, metadata=metadata)

        assert {"inner_variance"} == {r.check for r in report.failures}
        assert min(r.z for r in report.failures) > 4

    def test_inner_paths_must_share_the_outer_history(self) -> None:
        """Inner paths that differ before the branching year fail inner_history."""
        records, metadata = _scenarios(NESTED)
        independent, _ = _scenarios({"outer": 10, "inner": 1000, "years": 20, "seed": 9})
        records["rate"] = independent["rate"]

        report = check_scenarios(records, metadata=metadata)

        assert "inner_history" in {r.check for r in report.failures}


class TestCheckCommand:
    def _invoke(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(esg_app, ["check", *args])
        return result.exit_code, result.output

    def test_passing_file_exits_zero(self, tmp_path: Path) -> None:
        """A good scenario file with its metadata prints the table and exits 0."""
        records, metadata = _scenarios({"outer": 10, "inner": 200, "years": 10, "seed": 2})
        path = _write(tmp_path / "s.parquet", records, metadata)

        code, output = self._invoke(str(path))

        assert 0 == code
        assert "PASS: 30/30 checks" in output

    def test_file_from_parquet_writer_exits_zero(self, tmp_path: Path) -> None:
        """A file written by livecalc's ParquetWriter with the ESG metadata passes the check."""
        records, metadata = _scenarios({"outer": 5, "inner": 200, "years": 10, "seed": 8})
        path = tmp_path / "w.parquet"
        with ParquetWriter(path, SCENARIO_DTYPE, {"livecalc.esg": json.dumps(metadata)}) as w:
            w.write_chunk(records)

        code, output = self._invoke(str(path))

        assert (0, True) == (code, "PASS" in output)

    def test_coarse_cir_file_fails_its_variance_row(self, tmp_path: Path) -> None:
        """`esg check` on a 1-sub-step CIR file prints a failing variance row and exits 1."""
        config = {"model": "cir", "outer": 2000, "inner": 1, "years": 3, "substeps": 1}
        path = _write(tmp_path / "cir.parquet", *_scenarios(config))

        code, output = self._invoke(str(path))

        assert 1 == code
        assert any(
            line.split()[:3] == ["│", "variance", "│"] and "FAIL" in line
            for line in output.splitlines()
        )

    def test_failing_file_exits_one(self, tmp_path: Path) -> None:
        """A biased scenario file exits 1 and says FAIL."""
        records, metadata = _scenarios({"outer": 10, "inner": 1000, "years": 10, "seed": 2})
        records["rate"] += 0.002
        path = _write(tmp_path / "s.parquet", records, metadata)

        code, output = self._invoke(str(path))

        assert 1 == code
        assert "FAIL:" in output

    @pytest.mark.parametrize(
        ("name", "content", "expected"),
        [
            ("missing.parquet", None, "no such file"),
            ("text.parquet", b"not parquet", "not a scenario Parquet file"),
            ("plain.parquet", "no-metadata", "no initial curve"),
        ],
    )
    def test_bad_input_exits_two_with_one_line(
        self, tmp_path: Path, name: str, content: object, expected: str
    ) -> None:
        """A missing, unreadable or metadata-less file exits 2 with one error line."""
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content == "no-metadata":
            _write(path, _scenarios({"outer": 1, "inner": 4, "years": 5})[0], None)

        code, output = self._invoke(str(path))

        assert (2, 1) == (code, len(output.strip().splitlines()))
        assert expected in output
        assert "Traceback" not in output


class TestCurveOnTheCommandLine:
    def _invoke(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(esg_app, ["check", *args])
        return result.exit_code, result.output

    def test_file_without_metadata_checked_against_a_given_curve(self, tmp_path: Path) -> None:
        """A scenario file with no metadata is refused (exit 2) until a curve is given: the
        right flat rate passes (0), a wrong one fails (1), and a curve file works too."""
        config = {"model": "hull_white", "outer": 10, "inner": 200, "years": 10, "seed": 4}
        records, _ = _scenarios({**config, "curve": 0.03})
        path = _write(tmp_path / "bare.parquet", records, None)
        curve = tmp_path / "curve.csv"
        curve.write_text("maturity,rate\n1,0.03\n10,0.03\n")

        codes = [
            self._invoke(str(path))[0],
            self._invoke(str(path), "--flat-rate", "0.03")[0],
            self._invoke(str(path), "--flat-rate", "0.05")[0],
            self._invoke(str(path), "--curve", str(curve))[0],
            self._invoke(str(path), "--curve", str(curve), "--curve-kind", "forward")[0],
        ]

        assert [2, 0, 1, 0, 2] == codes
