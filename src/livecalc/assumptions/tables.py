"""Assumption tables (mortality, lapse and other rates by policy year), loaded and validated.

A table comes from a CSV or Parquet file (chosen by the file's suffix), a ``pyarrow.Table``, or
an ``am://name@version`` reference resolved by the assumptions client. Every problem is reported
with the table's source and the data row (1-based, header not counted) and the fix.

Mortality layouts (annual probabilities of death ``q`` by attained age):

- ``age, q``: unisex;
- ``age, q_male, q_female[, q_other]``: by gender;
- ``age, select_1, ..., select_N, ultimate``: select and ultimate by attained age, the column
  for policy year ``k <= N`` then the ultimate column from year ``N + 1`` on;
- either of the long layouts (``q`` or select columns) with a ``gender`` column (0/1/2 or
  male/female/other/unisex), one block of consecutive ages per gender.

A gender without its own rates ("other" in a male/female table) uses the mean of the male and
female rates. Rates by policy year use ``policy_year, rate`` (years 1..N, the last rate carries
on); a yield curve uses ``year, rate``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import ConfigurationError

__all__ = [
    "MAX_AGE",
    "MortalityTable",
    "RateTable",
    "TableSource",
    "default_lapse_path",
    "default_mortality_path",
    "gompertz_makeham_table",
    "load_mortality_table",
    "load_rate_table",
    "read_table",
]

MAX_AGE = 120
"""The oldest attained age LiveCalc projects to."""

TableSource: TypeAlias = "str | os.PathLike[str] | pa.Table"
"""A file path (CSV or Parquet), an ``am://name@version`` reference, or an Arrow table."""

_GENDERS = {"0": 0, "1": 1, "2": 2, "male": 0, "m": 0, "female": 1, "f": 1, "other": 2}
_UNISEX = {"unisex", "u", "all"}


@dataclass(frozen=True)
class MortalityTable:
    """Annual death probabilities ``q[gender, age - age_min, column]``, validated.

    ``column`` is ``min(policy_year, select_period + 1) - 1``; an ultimate-only table has one
    column. Genders are 0 male, 1 female, 2 other.
    """

    q: np.ndarray[Any, np.dtype[np.float64]]
    age_min: int
    source: str

    @property
    def age_max(self) -> int:
        """The oldest attained age the table covers."""
        return self.age_min + int(self.q.shape[1]) - 1

    @property
    def select_period(self) -> int:
        """The number of select years (0 for an ultimate-only table)."""
        return int(self.q.shape[2]) - 1

    def rate(self, gender: int, age: int, policy_year: int = 1) -> float:
        """The annual q for a gender, attained age and policy year (1-based)."""
        if not self.age_min <= age <= self.age_max:
            raise ConfigurationError(
                f"{self.source}: age {age} is outside the table's ages "
                f"{self.age_min}-{self.age_max}"
            )
        col = min(policy_year, self.select_period + 1) - 1
        return float(self.q[gender, age - self.age_min, col])


@dataclass(frozen=True)
class RateTable:
    """Rates by policy year 1..N; the last rate carries on for later years."""

    rates: np.ndarray[Any, np.dtype[np.float64]]
    source: str

    def rate(self, policy_year: int) -> float:
        """The rate for a policy year (1-based)."""
        return float(self.rates[min(policy_year, len(self.rates)) - 1])

    @classmethod
    def from_values(
        cls, values: Any, source: str, low: float = 0.0, high: float = 1.0
    ) -> RateTable:
        """A table from a list of rates by policy year, each checked to lie in [low, high]."""
        if not isinstance(values, list | tuple) or not values:
            raise ConfigurationError(
                f"{source}: expected a non-empty list of rates by policy year, got {values!r}"
            )
        out = []
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                raise ConfigurationError(
                    f"{source}[{i}] (policy year {i + 1}): {v!r} is not a number in [{low}, {high}]"
                )
            out.append(float(v))
        return cls(np.array(out, dtype=np.float64), source)


def default_mortality_path() -> Path:
    """The packaged Gompertz-Makeham mortality table (ages 0-120, male and female)."""
    return Path(str(resources.files("livecalc") / "data" / "mortality_gompertz_makeham.csv"))


def default_lapse_path() -> Path:
    """The packaged lapse table by policy year."""
    return Path(str(resources.files("livecalc") / "data" / "lapse_standard.csv"))


def gompertz_makeham_table(
    params: dict[str, tuple[float, float, float]] | None = None,
) -> pa.Table:
    """A mortality table ``age, q_male, q_female`` for ages 0-120 from Gompertz-Makeham laws.

    The force of mortality is ``mu(x) = A + B * c**x``; the one-year probability of death is
    ``1 - exp(-(A + B * c**x * (c - 1) / ln c))`` (the force integrated over the year of age),
    and ``q(120) = 1`` closes the table. The packaged table uses the defaults below.
    """
    laws = params or {"male": (5.0e-4, 3.0e-5, 1.1), "female": (3.0e-4, 1.8e-5, 1.1)}
    ages = np.arange(0, MAX_AGE + 1)
    columns: dict[str, Any] = {"age": pa.array(ages, pa.int64())}
    for gender, (a, b, c) in laws.items():
        q = 1.0 - np.exp(-(a + b * c**ages * (c - 1.0) / math.log(c)))
        q[-1] = 1.0
        columns[f"q_{gender}"] = pa.array(q, pa.float64())
    return pa.table(columns)


def read_table(
    source: TableSource, credentials: AMCredentials | None = None, key: str = "table"
) -> tuple[pa.Table, str]:
    """The Arrow table behind ``source`` and a label naming it in messages.

    Raises:
        ConfigurationError: the file is missing, unreadable or of an unknown kind.
        InitializationError: an ``am://`` reference cannot be resolved.
    """
    if isinstance(source, pa.Table):
        return source, f"{key} (Arrow table)"
    text = os.fspath(source)
    if text.startswith("am://"):
        # Imported here: the client pulls in httpx, which file-only runs do not need.
        from livecalc.assumptions.client import AssumptionResolutionError, resolve_reference

        try:
            resolved = resolve_reference(text, credentials)
        except AssumptionResolutionError as exc:
            # Name the config key, so the runner reports engines[i].config.<key>: ...
            raise AssumptionResolutionError(f"{key}: {exc}") from exc
        return resolved.table, f"{key} ({text})"
    path = Path(text)
    label = f"{key} (file {text!r})"
    if not path.is_file():
        raise ConfigurationError(f"{label}: no such file; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            from pyarrow import csv

            return csv.read_csv(path), label
        if suffix in (".parquet", ".pq"):
            from pyarrow import parquet

            return parquet.read_table(path), label
    except (pa.ArrowException, OSError) as exc:
        raise ConfigurationError(f"{label}: cannot be read: {exc}") from exc
    raise ConfigurationError(f"{label}: unknown file type {suffix!r}; use .csv or .parquet")


def _column(table: pa.Table, name: str, label: str) -> np.ndarray[Any, Any]:
    """A column as float64, with nulls and non-numbers reported by row."""
    col = table.column(name)
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise ConfigurationError(f"{label}: row {row}: column {name!r} is empty; fill it in")
    try:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{label}: column {name!r} must hold numbers (found {col.type})"
        ) from None


def _check_probabilities(values: np.ndarray[Any, Any], name: str, label: str, rows: Any) -> None:
    bad = ~((values >= 0.0) & (values <= 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigurationError(
            f"{label}: row {rows[i] + 1}: {name} = {float(values[i])!r} is not a probability "
            "in [0, 1]"
        )


def _check_ages(ages: np.ndarray[Any, Any], label: str, rows: Any) -> None:
    bad = (ages != np.floor(ages)) | (ages < 0) | (ages > MAX_AGE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigurationError(
            f"{label}: row {rows[i] + 1}: age {float(ages[i])!r} is not a whole number in "
            f"0-{MAX_AGE}"
        )
    steps = np.diff(ages)
    if (steps != 1).any():
        i = int(np.flatnonzero(steps != 1)[0]) + 1
        raise ConfigurationError(
            f"{label}: row {rows[i] + 1}: age {ages[i]:g} follows {ages[i - 1]:g}; ages must "
            "rise by one with no gaps or repeats"
        )


def _value_columns(names: list[str], label: str) -> list[str]:
    if "q" in names:
        return ["q"]
    select = sorted((int(m.group(1)), n) for n in names if (m := re.fullmatch(r"select_(\d+)", n)))
    if not select or "ultimate" not in names:
        raise ConfigurationError(
            f"{label}: expected columns 'age' and 'q', or 'q_male' and 'q_female', or "
            f"'select_1'..'select_N' and 'ultimate'; found {names}"
        )
    if [k for k, _ in select] != list(range(1, len(select) + 1)):
        raise ConfigurationError(
            f"{label}: select columns must be select_1..select_N with none missing; "
            f"found {[n for _, n in select]}"
        )
    return [n for _, n in select] + ["ultimate"]


def _gender_code(value: Any, label: str, row: int) -> int:
    text = str(value).strip().lower()
    if text in _UNISEX:
        return -1
    if text in _GENDERS:
        return _GENDERS[text]
    raise ConfigurationError(
        f"{label}: row {row + 1}: gender {value!r} is not one of 0/1/2, male/female/other, unisex"
    )


def _block(
    table: pa.Table, value_cols: list[str], rows: np.ndarray[Any, Any], label: str
) -> tuple[int, np.ndarray[Any, Any]]:
    """(first age, q[age, column]) of the table rows ``rows``, validated."""
    ages = _column(table, "age", label)[rows]
    _check_ages(ages, label, rows)
    q = np.empty((len(rows), len(value_cols)))
    for j, name in enumerate(value_cols):
        q[:, j] = _column(table, name, label)[rows]
        _check_probabilities(q[:, j], name, label, rows)
    return int(ages[0]), q


def load_mortality_table(
    source: TableSource, credentials: AMCredentials | None = None, key: str = "mortality_table"
) -> MortalityTable:
    """Load and validate a mortality table in any layout of the module docstring."""
    table, label = read_table(source, credentials, key)
    names = list(table.column_names)
    if "age" not in names:
        raise ConfigurationError(f"{label}: no 'age' column (found {names})")
    if table.num_rows == 0:
        raise ConfigurationError(f"{label}: the table has no rows")
    all_rows = np.arange(table.num_rows)
    blocks: dict[int, tuple[int, np.ndarray[Any, Any]]] = {}
    if "q_male" in names or "q_female" in names:
        for gender, col in enumerate(("q_male", "q_female", "q_other")):
            if col in names:
                blocks[gender] = _block(table, [col], all_rows, label)
        if 0 not in blocks or 1 not in blocks:
            raise ConfigurationError(f"{label}: a gendered table needs both q_male and q_female")
    else:
        value_cols = _value_columns(names, label)
        if "gender" in names:
            codes = [_gender_code(v, label, r) for r, v in enumerate(table.column("gender"))]
            code_arr = np.array(codes)
            for code in dict.fromkeys(codes):
                rows = np.flatnonzero(code_arr == code)
                if rows[-1] - rows[0] + 1 != len(rows):
                    raise ConfigurationError(
                        f"{label}: rows of gender {code} are not contiguous (row {rows[0] + 1} "
                        "onwards); sort the table by gender then age"
                    )
                blocks[code] = _block(table, value_cols, rows, label)
        else:
            blocks[-1] = _block(table, value_cols, all_rows, label)
    return _assemble(blocks, label)


def _assemble(blocks: dict[int, tuple[int, np.ndarray[Any, Any]]], label: str) -> MortalityTable:
    """Place the gender blocks in one (3, ages, columns) array; fill missing genders."""
    shapes = {(a, q.shape) for a, q in blocks.values()}
    if len(shapes) != 1:
        ranges = {g: f"{a}-{a + q.shape[0] - 1}" for g, (a, q) in blocks.items()}
        raise ConfigurationError(
            f"{label}: every gender must cover the same ages and select years; found {ranges}"
        )
    age_min, q0 = next(iter(blocks.values()))
    out = np.empty((3, *q0.shape))
    if -1 in blocks:
        out[:] = blocks[-1][1]
    if 0 in blocks and 1 in blocks:
        out[2] = 0.5 * (blocks[0][1] + blocks[1][1])
    elif -1 not in blocks:
        raise ConfigurationError(
            f"{label}: give rates for male and female (and optionally other), or unisex rates"
        )
    for gender in (0, 1, 2):
        if gender in blocks:
            out[gender] = blocks[gender][1]
    return MortalityTable(np.ascontiguousarray(out), age_min, label)


def load_rate_table(
    source: TableSource,
    credentials: AMCredentials | None = None,
    key: str = "lapse_table",
    index: str = "policy_year",
    probabilities: bool = True,
) -> RateTable:
    """Load rates by ``index`` (``policy_year`` or ``year``), starting at 1 with no gaps.

    With ``probabilities`` the rates must lie in [0, 1]; otherwise they must be finite and
    above -1 (interest rates).
    """
    table, label = read_table(source, credentials, key)
    names = list(table.column_names)
    if index not in names or "rate" not in names:
        raise ConfigurationError(f"{label}: expected columns {index!r} and 'rate'; found {names}")
    if table.num_rows == 0:
        raise ConfigurationError(f"{label}: the table has no rows")
    years = _column(table, index, label)
    rates = _column(table, "rate", label)
    expected = np.arange(1, len(years) + 1)
    bad = years != expected
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigurationError(
            f"{label}: row {i + 1}: {index} {years[i]:g} should be {i + 1}; "
            f"{index}s must run 1, 2, 3, ... with no gaps"
        )
    rows = np.arange(len(rates))
    if probabilities:
        _check_probabilities(rates, "rate", label, rows)
    else:
        bad = ~(np.isfinite(rates) & (rates > -1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigurationError(
                f"{label}: row {i + 1}: rate {float(rates[i])!r} must be a finite number above -1"
            )
    return RateTable(np.ascontiguousarray(rates), label)
