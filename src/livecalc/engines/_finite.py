"""Sane ranges for engines' numbers, and the finite check of their output records.

A value such as ``Infinity`` (Python's json reads the literal), ``NaN`` or ``1e308`` is not an
assumption: the projection would turn it into NaN or infinite present values and the run would
still report success. ``check_ranges`` refuses such config values by key, with the range to
give; ``check_finite`` refuses output records with a non-finite float, naming the engine, the
parameters in play and the first bad record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from livecalc.errors import ConfigurationError, ExecutionError

__all__ = [
    "MAX_MULTIPLIER",
    "PROJECTION_RANGES",
    "check_finite",
    "check_projection_output",
    "check_ranges",
]

MAX_MULTIPLIER = 1000.0
"""The largest stress multiplier the projection takes (and the solver may search up to)."""

# (low, high, low inclusive): the range a value must lie in, by dotted key ("*": list items).
# Wide enough for any stress a user means, narrow enough that 120 years of compounding stay
# finite: an inflation of 100% a year over 120 years is 2**120 ~ 1e36, far below 1e308.
PROJECTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "discount_rate": (-1.0, 1.0, False),
    "premium_multiplier": (0.0, MAX_MULTIPLIER, True),
    "mortality_multiplier": (0.0, MAX_MULTIPLIER, True),
    "lapse_multiplier": (0.0, MAX_MULTIPLIER, True),
    "expense_multiplier": (0.0, MAX_MULTIPLIER, True),
    "underwriting_class_factors.*": (0.0, 1000.0, True),
    "expenses.acquisition": (0.0, 1e9, True),
    "expenses.maintenance": (0.0, 1e9, True),
    "expenses.per_claim": (0.0, 1e9, True),
    "expenses.inflation": (-1.0, 1.0, False),
    "expenses.percent_of_premium": (0.0, 10.0, True),
    "dynamic_lapse.reference_rate": (-1.0, 1.0, False),
    "dynamic_lapse.sensitivity": (-1000.0, 1000.0, True),
    "dynamic_lapse.min_factor": (0.0, 100.0, True),
    "dynamic_lapse.max_factor": (0.0, 100.0, True),
}


def _numbers(value: Any, key: str) -> list[tuple[str, float]]:
    """Every float in a validated config, with its dotted key (list items as ``key.*``)."""
    if isinstance(value, BaseModel):
        return [
            found
            for name in type(value).model_fields
            for found in _numbers(getattr(value, name), f"{key}.{name}" if key else name)
        ]
    if isinstance(value, list | tuple):
        return [(f"{key}[{i}]", float(v)) for i, v in enumerate(value) if isinstance(v, float)]
    if isinstance(value, float):
        return [(key, value)]
    return []


def check_ranges(config: BaseModel, ranges: Mapping[str, tuple[float, float, bool]]) -> None:
    """Refuse any non-finite float of ``config``, and any value outside its range.

    Raises:
        ConfigurationError: every problem at once, each as ``config.<key>: ...``.
    """
    problems = []
    for key, value in _numbers(config, ""):
        pattern = key.split("[")[0] + (".*" if "[" in key else "")
        if not math.isfinite(value):
            problems.append(f"config.{key}: {value!r} is not a finite number; give a number")
            continue
        if pattern not in ranges:
            continue
        low, high, low_inclusive = ranges[pattern]
        if not ((value >= low if low_inclusive else value > low) and value <= high):
            bracket = "[" if low_inclusive else "("
            problems.append(
                f"config.{key}: {value!r} is out of range; give a number in "
                f"{bracket}{low:g}, {high:g}]"
            )
    if problems:
        raise ConfigurationError("; ".join(problems))


def check_finite(
    records: np.ndarray,
    engine: str,
    parameters: Mapping[str, Any],
    hint: str,
    fields: tuple[str, ...] | None = None,
) -> None:
    """Refuse records whose float ``fields`` (default: every float field) are not finite.

    Raises:
        ExecutionError: naming the engine, the parameters in play and the first bad record
            (0-based, with its integer fields: ids, year).
    """
    names = records.dtype.names or ()
    floats = fields or tuple(n for n in names if records.dtype[n].kind == "f")
    # A sum is finite only if every term is (a NaN or an infinity carries through, and two
    # opposite infinities make a NaN): one pass, no temporaries, for the usual case. A
    # non-finite sum (bad records, or finite ones overflowing) is looked at record by record.
    with np.errstate(over="ignore", invalid="ignore"):
        if all(math.isfinite(float(np.add.reduce(records[name]))) for name in floats):
            return
    bad = np.zeros(len(records), dtype=bool)
    for name in floats:
        bad |= ~np.isfinite(records[name])
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    record = records[row]
    ids = ", ".join(
        f"{n} {int(record[n])}" for n in names if records.dtype[n].kind == "u" and n != "reserved"
    )
    values = ", ".join(
        f"{n} = {float(record[n])!r}" for n in floats if not math.isfinite(float(record[n]))
    )
    in_play = ", ".join(f"{k} = {v!r}" for k, v in parameters.items())
    raise ExecutionError(
        f"the {engine} engine: {int(bad.sum()):,} of {len(records):,} output records are not "
        f"finite; the first is record {row} ({ids}): {values}. Parameters in play: {in_play}. "
        f"{hint}"
    )


def check_projection_output(
    records: np.ndarray, config: Any, multipliers: Mapping[str, float]
) -> None:
    """``check_finite`` for the projection's output, naming its multipliers and expenses."""
    expenses = config.expenses
    in_play = {
        **multipliers,
        "discount_rate": config.discount_rate,
        "yield_curve": config.yield_curve,
        **{
            f"expenses.{k}": v
            for k in type(expenses).model_fields
            if isinstance(v := getattr(expenses, k), int | float)
        },
    }
    check_finite(
        records,
        "projection",
        {k: v for k, v in in_play.items() if v is not None},
        "Check the assumptions, policy amounts and scenario rates behind these cash flows.",
    )
