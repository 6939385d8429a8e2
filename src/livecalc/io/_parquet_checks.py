"""Column rules of the policy and scenario files, and the checks that enforce them.

Every check finds the *first* bad row and raises ``ConfigurationError`` naming the file, the
column, the 0-based data row (and, for CSV, the file line), the value, and the fix. Values are
checked in numpy before they are cast into a record buffer, so a cast never truncates or wraps
silently: ``age = 30.5``, ``-1`` or ``300`` is refused rather than stored as 30, 255 or 44.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from livecalc.errors import ConfigurationError
from livecalc.runtime.buffers import ALL_SCENARIOS

__all__ = [
    "EXT_RULES",
    "POLICY_RULES",
    "SCENARIO_RULES",
    "ColumnRule",
    "FileContext",
    "check_scenario_order",
    "check_unique_ids",
    "column_values",
    "require_columns",
]

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class ColumnRule:
    """What one column must hold: whole numbers or reals, within a range."""

    name: str
    kind: Literal["int", "float"]
    low: float
    high: float
    meaning: str
    low_inclusive: bool = True

    def range_text(self) -> str:
        """The allowed range in words, for error messages."""
        if self.high == math.inf or self.high >= _UINT32_MAX:
            op = ">=" if self.low_inclusive else ">"
            return f"{op} {_fmt(self.low)}"
        return f"from {_fmt(self.low)} to {_fmt(self.high)}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


POLICY_RULES = (
    ColumnRule("policy_id", "int", 0, _UINT64_MAX, "a unique whole number per policy"),
    ColumnRule("age", "int", 0, 120, "the age at entry in whole years"),
    ColumnRule("gender", "int", 0, 2, "0 male, 1 female, 2 other"),
    ColumnRule("underwriting_class", "int", 0, 255, "0 standard, 1 smoker, ..."),
    ColumnRule("product_type", "int", 0, 2, "0 term, 1 whole life, 2 endowment"),
    ColumnRule("term", "int", 1, _UINT32_MAX, "the policy term in whole years"),
    ColumnRule("sum_assured", "float", 0, math.inf, "the sum assured, a finite amount"),
    ColumnRule("premium", "float", 0, math.inf, "the annual premium, a finite amount"),
)
"""Required columns of a policy file, in POLICY record order."""

EXT_RULES = (
    ColumnRule(
        "duration_months",
        "int",
        -(2**31),
        2**31 - 1,
        "whole months in force (0 = new, -m = issued m months after valuation)",
    ),
    ColumnRule("policy_count", "float", 0, math.inf, "the number of policies the row stands for"),
)
"""Optional in-force columns of a policy file (the POLICY_EXT record)."""

SCENARIO_RULES = (
    ColumnRule(
        "scenario_id",
        "int",
        0,
        ALL_SCENARIOS - 1,
        f"a whole number below {ALL_SCENARIOS} (that value marks per-policy means)",
    ),
    ColumnRule("year", "int", 1, _UINT32_MAX, "the projection year, 1 for the first"),
    ColumnRule(
        "rate", "float", -1, math.inf, "the per-annum rate, a finite number", low_inclusive=False
    ),
)
"""Required columns of a scenario file, in SCENARIO record order."""


@dataclass(frozen=True)
class FileContext:
    """The file being read, so that every error can say where."""

    path: Path
    what: str  # "policy" or "scenario"

    @property
    def is_csv(self) -> bool:
        """Whether the file is read as CSV (by its suffix)."""
        return self.path.suffix.lower() == ".csv"

    def row_text(self, row: int) -> str:
        """A 0-based data row, with its line number in a CSV file (header is line 1)."""
        return f"row {row} (line {row + 2})" if self.is_csv else f"row {row}"

    def error(self, column: str, row: int, problem: str, fix: str) -> ConfigurationError:
        """The error for a bad value at ``row`` of ``column``."""
        return ConfigurationError(
            f"{self.what} file {self.path}: column {column!r}, {self.row_text(row)}: "
            f"{problem}; {fix}"
        )


def require_columns(ctx: FileContext, found: list[str], rules: tuple[ColumnRule, ...]) -> None:
    """Refuse a file that lacks any required column, suggesting near-miss names."""
    missing = [r.name for r in rules if r.name not in found]
    if not missing:
        return
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, found, n=1)
        if close:
            hints.append(f"{close[0]!r} -> {name!r}")
    hint = f" (rename {', '.join(hints)}?)" if hints else ""
    if len(found) == 1 and any(sep in found[0] for sep in ";\t|"):
        # One column whose name holds the others: a CSV with another separator.
        hint += " (the header looks like one column: CSV files must be comma-separated)"
    raise ConfigurationError(
        f"{ctx.what} file {ctx.path}: missing required column(s) "
        f"{', '.join(repr(m) for m in missing)}{hint}; found {found}; "
        f"add them as described in docs/data.md"
    )


def _first(mask: np.ndarray[Any, Any]) -> int:
    return int(np.argmax(mask))


def _fix(rule: ColumnRule) -> str:
    return f"fix the file so that every {rule.name!r} is {rule.meaning}, {rule.range_text()}"


def column_values(
    ctx: FileContext, column: pa.Array, rule: ColumnRule, row0: int
) -> np.ndarray[Any, Any]:
    """The column's values as a numpy array, after checking nulls, type and range.

    ``row0`` is the file row of the column's first value (batches are checked one by one).
    The returned array is integral for ``int`` rules (or float with whole values) and float64
    for ``float`` rules; every value fits the rule's range, so storing it is exact.
    """
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if column.null_count:
        row = _first(column.is_null().to_numpy(zero_copy_only=False))
        raise ctx.error(rule.name, row0 + row, "the value is empty (null)", _fix(rule))
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = _parse_text(ctx, column, rule, row0)
    kind = column.type
    values: np.ndarray[Any, Any]
    if pa.types.is_integer(kind):
        values = column.to_numpy()
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64()).to_numpy()
        bad = ~np.isfinite(values)
        if rule.kind == "int":
            with np.errstate(invalid="ignore"):
                bad |= values != np.trunc(values)
        if bad.any():
            row = _first(bad)
            value = values[row].item()
            problem = "not a finite number" if not math.isfinite(value) else "not a whole number"
            raise ctx.error(rule.name, row0 + row, f"value {value!r} is {problem}", _fix(rule))
    else:
        raise _type_error(ctx, column, rule, row0)
    if rule.kind == "float":
        values = values.astype(np.float64, copy=False)
    _check_range(ctx, values, rule, row0)
    return values


def _parse_text(ctx: FileContext, column: pa.Array, rule: ColumnRule, row0: int) -> pa.Array:
    """Numbers written as text (a CSV column with a stray word is read as text) parsed exactly.

    Whole numbers parse as integers first, so a 20-digit id is never rounded through float.
    """
    targets = [pa.int64(), pa.uint64(), pa.float64()] if rule.kind == "int" else [pa.float64()]
    for target in targets:
        try:
            return column.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    row = next((i for i, v in enumerate(column.to_pylist()) if not _is_number(v)), 0)
    value = column[row].as_py()
    raise ctx.error(rule.name, row0 + row, f"value {value!r} is not a number", _fix(rule))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "_" not in text  # Python reads 1_000 as a number; Arrow, rightly, does not


def _type_error(ctx: FileContext, column: pa.Array, rule: ColumnRule, row0: int) -> Exception:
    return ctx.error(
        rule.name,
        row0,
        f"the column holds {column.type} values, not numbers",
        _fix(rule),
    )


def _check_range(
    ctx: FileContext, values: np.ndarray[Any, Any], rule: ColumnRule, row0: int
) -> None:
    if len(values) == 0:
        return
    low, high = rule.low, rule.high
    if values.dtype.kind in "iu":
        # Compare only with bounds the dtype can hold, so numpy never wraps or overflows them.
        info = np.iinfo(values.dtype)
        check_low = low > info.min
        check_high = high < info.max
    else:
        check_low, check_high = True, high != math.inf
    bad = np.zeros(len(values), dtype=bool)
    if check_low:
        bad |= values < low if rule.low_inclusive else values <= low
    if check_high:
        bad |= values > high
    if bad.any():
        row = _first(bad)
        value = values[row].item()
        raise ctx.error(rule.name, row0 + row, f"value {value!r} is out of range", _fix(rule))


def check_unique_ids(ctx: FileContext, ids: np.ndarray[Any, Any]) -> None:
    """Refuse a repeated policy_id, naming the first row that repeats an earlier one."""
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return  # ascending ids (the usual case) are unique without a sort
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    if dup.size == 0:
        return
    # A stable sort keeps equal ids in row order, so order[dup + 1] are the later copies.
    row = int(order[dup + 1].min())
    value = int(ids[row])
    earlier = int(np.flatnonzero(ids[:row] == value)[0])
    raise ctx.error(
        "policy_id",
        row,
        f"value {value} repeats {ctx.row_text(earlier)}",
        "give every policy its own policy_id",
    )


def check_scenario_order(
    ctx: FileContext, scenario_id: np.ndarray[Any, Any], year: np.ndarray[Any, Any]
) -> int:
    """Check that rows run scenario by scenario with years 1..Y each; returns Y.

    The layout lets the projection view ``rate`` as a (scenarios, years) matrix without a copy.
    """
    n = len(year)
    fix = (
        "sort the rows by scenario_id then year, with every scenario having years 1..Y "
        "(Y the same for all)"
    )
    if n == 0:
        raise ConfigurationError(
            f"scenario file {ctx.path}: no rows; a scenario file needs at least one scenario"
        )
    changes = np.flatnonzero(scenario_id[1:] != scenario_id[0])
    years = int(changes[0]) + 1 if changes.size else n
    # (row, priority, column, problem): the earliest row wins; on a tie, the likelier cause.
    problems: list[tuple[int, int, str, str]] = []
    full = n // years
    if full:
        sid = scenario_id[: full * years].reshape(full, years)
        yr = year[: full * years].reshape(full, years)
        bad_year = yr != np.arange(1, years + 1)
        if bad_year.any():
            b, t = divmod(_first(bad_year.ravel()), years)
            problems.append(
                (b * years + t, 1, "year", f"year {int(yr[b, t])} where {t + 1} was expected")
            )
        bad_sid = sid != sid[:, :1]
        if bad_sid.any():
            b, t = divmod(_first(bad_sid.ravel()), years)
            problems.append(
                (
                    b * years + t,
                    0,
                    "scenario_id",
                    f"scenario {int(sid[b, 0])} ends after {t} years, but scenario "
                    f"{int(scenario_id[0])} has {years}",
                )
            )
        firsts = sid[:, 0]
        unsorted = firsts[1:] <= firsts[:-1]
        if unsorted.any():
            b = _first(unsorted) + 1
            problems.append(
                (
                    b * years,
                    0,
                    "scenario_id",
                    f"scenario_id {int(firsts[b])} follows {int(firsts[b - 1])}; "
                    "scenario ids must increase and appear once each",
                )
            )
    if n % years:
        start = full * years
        problems.append(
            (
                start,
                0,
                "scenario_id",
                f"the last scenario ({int(scenario_id[start])}) has {n - start} row(s), but "
                f"scenario {int(scenario_id[0])} has {years}",
            )
        )
    # A block that starts inside the scenario before it means that scenario runs too long.
    for row, *_ in list(problems):
        continues = row % years == 0 and year[row] == year[row - 1] + 1
        if row and continues and scenario_id[row] == scenario_id[row - 1]:
            problems.append(
                (
                    row,
                    -1,
                    "year",
                    f"scenario {int(scenario_id[row])} goes on to year {int(year[row])}, but "
                    f"scenario {int(scenario_id[0])} has {years} years",
                )
            )
    if problems:
        row, _, column, problem = min(problems)
        raise ctx.error(column, row, problem, fix)
    return years
