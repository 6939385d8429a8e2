"""The record layouts engines exchange: numpy structured dtypes with every offset spelled out.

The four layouts of the original design (POLICY, SCENARIO, RESULT, RESULT_DETAIL) and
LiveCalc's extensions: POLICY_EXT (in-force duration and policy count beside each POLICY
record), SCENARIO_TOTAL (per-scenario portfolio totals) and the ``ALL_SCENARIOS`` marker for
per-policy means. docs/data.md gives every layout byte by byte; tests pin every offset.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

__all__ = [
    "ALIGNMENT",
    "ALL_SCENARIOS",
    "CASHFLOW_DTYPE",
    "MAX_RECORDS",
    "POLICY_DTYPE",
    "POLICY_EXT_DTYPE",
    "RESULT_DETAIL_DTYPE",
    "RESULT_DETAIL_EXT_DTYPE",
    "RESULT_DTYPE",
    "SCENARIO_DTYPE",
    "SCENARIO_TOTAL_DTYPE",
    "BufferType",
]

ALIGNMENT = 16
"""Every buffer starts on a multiple of this many bytes (SIMD loads, C ABI engines)."""


def _dtype(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype[Any]:
    return np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )


POLICY_DTYPE = _dtype(
    [
        ("policy_id", "<u8", 0),
        ("age", "u1", 8),
        ("gender", "u1", 9),
        ("underwriting_class", "u1", 10),
        ("product_type", "u1", 11),
        ("term", "<u4", 12),
        ("sum_assured", "<f8", 16),
        ("premium", "<f8", 24),
    ],
    32,
)
"""POLICY (the seed's INPUT buffer), 32 bytes."""

SCENARIO_DTYPE = _dtype([("scenario_id", "<u4", 0), ("year", "<u4", 4), ("rate", "<f8", 8)], 16)
"""SCENARIO, 16 bytes, sorted by scenario then year (1-indexed)."""

RESULT_DTYPE = _dtype(
    [
        ("scenario_id", "<u4", 0),
        ("policy_id", "<u4", 4),
        ("npv", "<f8", 8),
        ("reserved", "<u8", 16),
    ],
    24,
)
"""RESULT, 24 bytes (the seed's layout)."""

_COMPONENTS = [
    ("npv", "<f8", 16),
    ("premium_income", "<f8", 24),
    ("death_benefits", "<f8", 32),
    ("surrender_benefits", "<f8", 40),
    ("expenses", "<f8", 48),
    ("maturity_benefits", "<f8", 56),
]

RESULT_DETAIL_DTYPE = _dtype(
    [("scenario_id", "<u4", 0), ("reserved", "<u4", 4), ("policy_id", "<u8", 8), *_COMPONENTS], 64
)
"""RESULT_DETAIL, 64 bytes: npv and its present-value components (all positive but npv)."""

SCENARIO_TOTAL_DTYPE = _dtype(
    [("scenario_id", "<u4", 0), ("reserved", "<u4", 4), ("policy_count", "<f8", 8), *_COMPONENTS],
    64,
)
"""Per-scenario portfolio totals, 64 bytes; the float fields sit where RESULT_DETAIL has them.

``policy_count`` is the number of policies summed (model-point counts included); totals of
several policy chunks merge by adding every float field per scenario.
"""

POLICY_EXT_DTYPE = _dtype(
    [
        ("policy_id", "<u8", 0),
        ("duration_months", "<i4", 8),
        ("reserved", "<u4", 12),
        ("policy_count", "<f8", 16),
    ],
    24,
)
"""Side record for a POLICY record at the same index: months in force at the valuation date
(0 = new business; ``-m``: issued ``m`` months after it, future new business) and the number of
identical policies the record stands for (model points)."""

RESULT_DETAIL_EXT_DTYPE = _dtype(
    [
        ("scenario_id", "<u4", 0),
        ("reserved", "<u4", 4),
        ("policy_id", "<u8", 8),
        *_COMPONENTS,
        ("commissions", "<f8", 64),
        ("premium_annuity", "<f8", 72),
        ("premium", "<f8", 80),
        ("reserved2", "<u8", 88),
    ],
    96,
)
"""RESULT_DETAIL extended, 96 bytes: the RESULT_DETAIL fields at the same offsets, except that
``expenses`` leaves out commissions, which get their own field; then the premium annuity (the
present value of the lives in force at each premium date) and the premium per payment used.
``npv = premium_income - death_benefits - surrender_benefits - expenses - maturity_benefits -
commissions``; ``premium_income = premium x premium_multiplier x premium_annuity``."""

CASHFLOW_DTYPE = _dtype(
    [
        ("scenario_id", "<u4", 0),
        ("period", "<u4", 4),
        ("time_years", "<f8", 8),
        ("premiums", "<f8", 16),
        ("death_claims", "<f8", 24),
        ("surrenders", "<f8", 32),
        ("maturities", "<f8", 40),
        ("expenses", "<f8", 48),
        ("commissions", "<f8", 56),
        ("net_cash_flow", "<f8", 64),
        ("policies_in_force", "<f8", 72),
        ("deaths", "<f8", 80),
        ("lapses", "<f8", 88),
        ("discount_factor", "<f8", 96),
        ("pv_net_cash_flow", "<f8", 104),
    ],
    112,
)
"""Portfolio cash flows of one projection period (month or year), 112 bytes: totals over the
policies of a chunk; chunks merge by adding every float field but ``time_years`` and
``discount_factor`` per (scenario_id, period)."""

ALL_SCENARIOS = 0xFFFFFFFF
"""``scenario_id`` of a RESULT_DETAIL record that holds a policy's mean over all scenarios."""


class BufferType(enum.Enum):
    """The kinds of buffer of the original design, each with its record dtype."""

    INPUT = "input"
    SCENARIO = "scenario"
    RESULT = "result"
    RESULT_DETAIL = "result_detail"

    @property
    def dtype(self) -> np.dtype[Any]:
        """The record dtype of this buffer type."""
        return _TYPE_DTYPES[self]

    @property
    def max_records(self) -> int:
        """The most records one buffer of this type may hold; larger work is chunked."""
        return MAX_RECORDS[self]


_TYPE_DTYPES = {
    BufferType.INPUT: POLICY_DTYPE,
    BufferType.SCENARIO: SCENARIO_DTYPE,
    BufferType.RESULT: RESULT_DTYPE,
    BufferType.RESULT_DETAIL: RESULT_DETAIL_DTYPE,
}

MAX_RECORDS = {
    BufferType.INPUT: 10_000_000,
    BufferType.SCENARIO: 100_000_000,
    BufferType.RESULT: 100_000_000,
    BufferType.RESULT_DETAIL: 100_000_000,
}
