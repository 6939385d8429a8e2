"""Sample data: generated policies within ranges, priced sensibly, reproducible; ESG scenarios."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.errors import ConfigurationError
from livecalc.io.generate import (
    ESG_METADATA_KEY,
    generate_policies,
    generate_scenarios,
    premium_rates,
    write_policies,
    write_scenarios,
)
from livecalc.io.parquet import ParquetReader


def _check_ranges(records: np.ndarray[Any, Any], max_term: int) -> list[str]:
    """The broken range rules of generated policies (empty when all hold)."""
    age = records["age"].astype(np.int64)
    term = records["term"].astype(np.int64)
    rules = {
        "age 18-70": bool(np.all((age >= 18) & (age <= 70))),
        "age + term <= 120": bool(np.all(age + term <= 120)),
        "1 <= term <= max_term": bool(np.all((term >= 1) & (term <= max_term))),
        "gender 0-2": bool(np.all(records["gender"] <= 2)),
        "class 0-1": bool(np.all(records["underwriting_class"] <= 1)),
        "product 0-2": bool(np.all(records["product_type"] <= 2)),
        "sum assured >= 10,000": bool(np.all(records["sum_assured"] >= 10_000)),
        "premium > 0 and finite": bool(np.all(np.isfinite(records["premium"])))
        and bool(np.all(records["premium"] > 0)),
        "ids unique": len(np.unique(records["policy_id"])) == len(records),
    }
    return [name for name, ok in rules.items() if not ok]


class TestGeneratePolicies:
    def test_ranges_and_alignment(self) -> None:
        """Ten thousand policies keep every range rule and start on a 16-byte boundary."""
        data = generate_policies(10_000, seed=3)

        assert [] == _check_ranges(data.records, 50)
        assert (data.records.ctypes.data % 16, data.ext) == (0, None)

    def test_realistic_mix(self) -> None:
        """The mix looks like a life book: ages skewed young, half term business."""
        records = generate_policies(20_000, seed=5).records

        shares = np.bincount(records["product_type"], minlength=3) / len(records)
        median_age = float(np.median(records["age"]))

        assert [0.5, 0.25, 0.25] == pytest.approx(shares.tolist(), abs=0.02)
        assert 30 <= median_age <= 40

    def test_same_seed_same_data(self) -> None:
        """The same seed and arguments give the same bytes; another seed differs."""
        first = generate_policies(500, seed=11, in_force_fraction=0.5, max_policy_count=3)
        again = generate_policies(500, seed=11, in_force_fraction=0.5, max_policy_count=3)
        other = generate_policies(500, seed=12, in_force_fraction=0.5, max_policy_count=3)

        assert first.records.tobytes() == again.records.tobytes()
        assert first.ext is not None and again.ext is not None and other.ext is not None
        assert first.ext.tobytes() == again.ext.tobytes()
        assert first.records.tobytes() != other.records.tobytes()

    def test_in_force_extension(self) -> None:
        """In-force policies have durations inside their term; counts lie in 1..max."""
        data = generate_policies(5_000, seed=2, in_force_fraction=0.4, max_policy_count=7)
        assert data.ext is not None
        months = data.ext["duration_months"].astype(np.int64)
        in_force = months > 0

        assert data.records["policy_id"].tolist() == data.ext["policy_id"].tolist()
        assert 0.4 == pytest.approx(float(in_force.mean()), abs=0.03)
        assert bool(np.all(months < data.records["term"].astype(np.int64) * 12))
        assert {1.0, 7.0} <= set(data.ext["policy_count"].tolist())
        assert bool(np.all((data.ext["policy_count"] >= 1) & (data.ext["policy_count"] <= 7)))

    @settings(max_examples=15, deadline=None)
    @given(
        n=st.integers(0, 300),
        seed=st.integers(0, 2**32),
        in_force=st.floats(0, 1),
        max_term=st.integers(1, 102),
    )
    def test_any_arguments_give_valid_readable_data(
        self, n: int, seed: int, in_force: float, max_term: int
    ) -> None:
        """Whatever the arguments, the data keeps its ranges and passes the reader's checks."""

        data = generate_policies(n, seed=seed, in_force_fraction=in_force, max_term=max_term)
        with tempfile.TemporaryDirectory() as folder:
            write_policies(Path(folder) / "p.parquet", data)

            back = ParquetReader().read_policies(Path(folder) / "p.parquet")

        assert [] == _check_ranges(data.records, max_term)
        assert data.records.tobytes() == back.records.tobytes()

    def test_bad_arguments_are_all_named(self) -> None:
        """Every bad argument is reported at once."""
        with pytest.raises(ConfigurationError) as info:
            generate_policies(-1, in_force_fraction=2.0, max_policy_count=0, max_term=200)

        message = str(info.value)
        assert all(
            name in message
            for name in ("n must", "in_force_fraction", "max_policy_count", "max_term")
        )


class TestPremiumRates:
    def test_one_year_products_by_hand(self) -> None:
        """A one-year term rate is 1.25·v·q; a one-year endowment rate is 1.25·v."""
        rates = premium_rates()
        v = 1 / 1.03
        q40 = 1 - math.exp(-(0.0002 + 0.00003 * 1.1**40))

        assert 1.25 * v * q40 == pytest.approx(rates[0, 0, 0, 40, 1], rel=1e-12)
        assert 1.25 * v == pytest.approx(rates[0, 0, 2, 40, 1], rel=1e-12)

    def test_loadings_order_the_rates(self) -> None:
        """Smokers pay more than non-smokers, women less than men, older lives more."""
        rates = premium_rates()

        assert rates[0, 1, 0, 40, 20] > rates[0, 0, 0, 40, 20] > rates[1, 0, 0, 40, 20]
        assert rates[0, 0, 0, 50, 20] > rates[0, 0, 0, 40, 20]

    def test_terms_past_120_are_unpriced(self) -> None:
        """A term that would run past age 120 has no rate; one ending at 120 has one."""
        rates = premium_rates()

        assert (
            math.isnan(rates[0, 0, 1, 70, 51]),
            math.isnan(rates[0, 0, 1, 70, 50]),
        ) == (True, False)


class TestWritePolicies:
    @pytest.mark.parametrize("name", ["p.parquet", "p.csv"])
    def test_round_trip_with_in_force_columns(self, tmp_path: Path, name: str) -> None:
        """Policies and their in-force columns read back equal from Parquet and CSV."""
        data = generate_policies(300, seed=9, in_force_fraction=0.5, max_policy_count=4)

        rows = write_policies(tmp_path / name, data)
        back = ParquetReader().read_policies(tmp_path / name)

        assert 300 == rows
        assert data.records.tobytes() == back.records.tobytes()
        assert data.ext is not None and back.ext is not None
        assert data.ext.tobytes() == back.ext.tobytes()

    def test_policy_file_metadata(self, tmp_path: Path) -> None:
        """A policy file says it holds POLICY records and keeps the caller's metadata."""
        write_policies(tmp_path / "p.parquet", generate_policies(10), {"source": "test"})

        meta = pq.read_schema(tmp_path / "p.parquet").metadata

        assert (meta[b"livecalc.record_type"], meta[b"source"]) == (b"POLICY", b"test")


class TestGenerateScenarios:
    def test_layout_from_the_esg(self) -> None:
        """Scenarios come sorted with years 1..Y and ids outer*1000 + inner."""
        data = generate_scenarios(outer=2, inner=3, years=4, seed=1)
        ids = sorted(set(data.records["scenario_id"].tolist()))

        assert [0, 1, 2, 1000, 1001, 1002] == ids
        assert data.records["year"].tolist() == [1, 2, 3, 4] * 6
        assert (2, 3, 4, 1) == tuple(data.metadata[k] for k in ("outer", "inner", "years", "seed"))

    @pytest.mark.parametrize(
        ("n", "outer", "inner"), [(7, 1, 7), (1_500, 2, 750), (5_000, 5, 1_000)]
    )
    def test_count_split(self, n: int, outer: int, inner: int) -> None:
        """A scenario count splits into outer x inner with the most inner paths that fit."""
        data = generate_scenarios(n, years=1, seed=0)

        assert (n, outer, inner) == (len(data), data.metadata["outer"], data.metadata["inner"])

    def test_same_seed_same_scenarios(self) -> None:
        """The seed fixes the scenarios; another seed changes them."""
        first = generate_scenarios(5, years=3, seed=8)
        again = generate_scenarios(5, years=3, seed=8)
        other = generate_scenarios(5, years=3, seed=9)

        assert first.records.tobytes() == again.records.tobytes()
        assert first.records.tobytes() != other.records.tobytes()

    def test_write_keeps_esg_metadata_and_reads_back(self, tmp_path: Path) -> None:
        """The scenario file keeps the ESG metadata as JSON and passes the reader's checks."""
        data = generate_scenarios(4, years=5, seed=3, sigma=0.02)
        write_scenarios(tmp_path / "s.parquet", data)

        back = ParquetReader().read_scenarios(tmp_path / "s.parquet")
        meta = json.loads(
            pq.read_schema(tmp_path / "s.parquet").metadata[ESG_METADATA_KEY.encode()]
        )

        assert data.records.tobytes() == back.tobytes()
        assert (meta["model"], meta["parameters"]["sigma"]) == ("hull_white", 0.02)

    def test_metadata_key_matches_the_esg(self) -> None:
        """The metadata key is the one the ESG engine documents."""
        from livecalc.engines.esg import METADATA_KEY

        assert METADATA_KEY == ESG_METADATA_KEY

    @pytest.mark.parametrize(
        "kwargs",
        [{"n_scenarios": 0}, {"n_scenarios": 6, "outer": 2, "inner": 2}, {"outer": 2}],
    )
    def test_bad_counts(self, kwargs: dict[str, Any]) -> None:
        """Inconsistent scenario counts are refused with the rule."""
        with pytest.raises(ConfigurationError, match="generate_scenarios"):
            generate_scenarios(**kwargs)

    def test_bad_esg_option_is_named(self) -> None:
        """An ESG option the engine rejects surfaces as its ConfigurationError."""
        with pytest.raises(ConfigurationError, match="sigma"):
            generate_scenarios(3, years=2, sigma=-1.0)


class TestGenerateScenariosCommand:
    def _generate(self, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        livecalc = Path(sys.executable).with_name("livecalc")
        return subprocess.run(
            [str(livecalc), "generate", "scenarios", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )

    def test_set_passes_model_parameters_to_the_esg(self, tmp_path: Path) -> None:
        """`--set KEY=VALUE` reaches the ESG: the file's metadata records the parameters."""
        done = self._generate(
            tmp_path, "v.parquet", "-n", "20", "--years", "3", "--model", "vasicek",
            "--set", "a=0.2", "--set", "b=0.04", "--set", "sigma=0.02",
        )  # fmt: skip

        assert 0 == done.returncode, done.stderr
        meta = json.loads(pq.read_schema(tmp_path / "v.parquet").metadata[b"livecalc.esg"])
        assert {"a": 0.2, "b": 0.04, "sigma": 0.02, "r0": 0.03} == meta["parameters"]

    def test_a_key_of_another_model_is_one_error_line(self, tmp_path: Path) -> None:
        """A Vasicek key given to Hull-White is refused with exit 2, one line, no file."""
        done = self._generate(tmp_path, "h.parquet", "-n", "20", "--set", "b=0.04")

        assert 2 == done.returncode
        assert ["error: config.b: not a parameter of model 'hull_white'; remove it"] == (
            done.stderr.strip().splitlines()
        )
        assert not (tmp_path / "h.parquet").exists()

    def test_keys_with_their_own_option_are_refused(self, tmp_path: Path) -> None:
        """`--set seed=3` is refused, pointing at --seed, rather than silently overridden."""
        done = self._generate(tmp_path, "s.parquet", "-n", "20", "--set", "seed=3")

        assert 2 == done.returncode
        assert "have their own options" in done.stderr
