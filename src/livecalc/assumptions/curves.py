"""Initial zero curves for the ESG: a flat rate, or spot rates or discount factors by maturity.

A ``ZeroCurve`` holds discount factors ``P(0, t)`` at maturities ``t`` (years, > 0). Rates are
annual effective, the ESG's compounding convention: a spot rate ``s`` at ``t`` means
``P(0, t) = (1 + s) ** -t`` (``compounding="continuous"`` reads ``exp(-s t)`` instead).

Interpolation is log-linear in the discount factor, which is piecewise-constant instantaneous
forward rates between nodes. Before the first node the curve starts from ``P(0, 0) = 1``; beyond
the last node the last segment's forward rate continues (a one-node curve is flat).

Files are CSV (header row) or Parquet, with a ``maturity`` column and a ``rate`` column for
``kind="spot"`` or a ``discount_factor`` column for ``kind="discount"``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from livecalc.errors import ConfigurationError

__all__ = ["CurveKind", "ZeroCurve"]

CurveKind = Literal["spot", "discount"]
FloatArray = npt.NDArray[np.float64]

_COLUMNS = {"spot": "rate", "discount": "discount_factor"}


@dataclass(frozen=True)
class ZeroCurve:
    """Discount factors ``P(0, t)`` at increasing maturities, interpolated log-linearly."""

    maturities: tuple[float, ...]
    discount_factors: tuple[float, ...]

    def __post_init__(self) -> None:
        m, d = self.maturities, self.discount_factors
        if not m or len(m) != len(d):
            raise ConfigurationError(
                f"curve: {len(m)} maturities and {len(d)} discount factors; give one "
                "discount factor per maturity, at least one"
            )
        for i, (t, p) in enumerate(zip(m, d, strict=True)):
            if not (math.isfinite(t) and t > 0.0):
                raise ConfigurationError(f"curve: maturity {t!r} (node {i}) must be > 0")
            if not (math.isfinite(p) and p > 0.0):
                raise ConfigurationError(
                    f"curve: discount factor {p!r} at maturity {t} must be finite and > 0"
                )
            if i and t <= m[i - 1]:
                raise ConfigurationError(
                    f"curve: maturity {t} follows {m[i - 1]}; sort maturities increasingly "
                    "without repeats"
                )

    @classmethod
    def flat(
        cls, rate_pa: float, compounding: Literal["annual", "continuous"] = "annual"
    ) -> ZeroCurve:
        """A flat curve: ``P(0, t) = (1 + rate_pa) ** -t``, or ``exp(-rate_pa t)`` when
        ``compounding`` is ``"continuous"``."""
        if compounding == "continuous":
            if not math.isfinite(rate_pa):
                raise ConfigurationError(f"curve: flat rate {rate_pa!r} must be a finite number")
            return cls((1.0,), (math.exp(-rate_pa),))
        if not (math.isfinite(rate_pa) and rate_pa > -1.0):
            raise ConfigurationError(f"curve: flat rate {rate_pa!r} must be a number > -1")
        return cls((1.0,), ((1.0 + rate_pa) ** -1.0,))

    @classmethod
    def from_spot_rates(
        cls,
        maturities: Sequence[float],
        rates: Sequence[float],
        compounding: Literal["annual", "continuous"] = "annual",
    ) -> ZeroCurve:
        """A curve from spot rates (annual effective, or continuously compounded)."""
        if len(maturities) != len(rates):
            raise ConfigurationError(
                f"curve: {len(maturities)} maturities and {len(rates)} rates; give one each"
            )
        if compounding == "continuous":
            dfs = [math.exp(-r * t) for t, r in zip(maturities, rates, strict=True)]
        else:
            for r in rates:
                if not r > -1.0:
                    raise ConfigurationError(f"curve: spot rate {r!r} must be > -1")
            dfs = [(1.0 + r) ** -t for t, r in zip(maturities, rates, strict=True)]
        return cls(tuple(float(t) for t in maturities), tuple(dfs))

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        kind: CurveKind,
        compounding: Literal["annual", "continuous"] = "annual",
    ) -> ZeroCurve:
        """Read a CSV or Parquet file of ``maturity`` and ``rate`` or ``discount_factor``."""
        path = Path(path)
        if kind not in _COLUMNS:
            raise ConfigurationError(f"curve.kind {kind!r}: use 'spot' or 'discount'")
        column = _COLUMNS[kind]
        try:
            maturities, values = _read_columns(path, column)
        except OSError as exc:
            raise ConfigurationError(f"curve.file {str(path)!r}: cannot read it ({exc})") from exc
        if kind == "spot":
            return cls.from_spot_rates(maturities, values, compounding)
        return cls(tuple(maturities), tuple(values))

    def discount_factor(self, t: float | npt.ArrayLike) -> FloatArray:
        """``P(0, t)`` at one or many maturities ``t >= 0``, interpolated log-linearly."""
        times = np.asarray(t, dtype=np.float64)
        if np.any(times < 0.0):
            raise ValueError("maturities must be >= 0")
        nodes_t = np.concatenate(([0.0], self.maturities))
        nodes_log = np.concatenate(([0.0], np.log(self.discount_factors)))
        inside = np.interp(times, nodes_t, nodes_log)
        # Beyond the last node, continue the last segment's forward rate.
        slope = (nodes_log[-1] - nodes_log[-2]) / (nodes_t[-1] - nodes_t[-2])
        beyond = nodes_log[-1] + slope * (times - nodes_t[-1])
        return np.asarray(np.exp(np.where(times > nodes_t[-1], beyond, inside)))

    def spot_rate(self, t: float | npt.ArrayLike) -> FloatArray:
        """Annual effective spot rates ``P(0, t) ** (-1/t) - 1`` at maturities ``t > 0``."""
        times = np.asarray(t, dtype=np.float64)
        return np.asarray(self.discount_factor(times) ** (-1.0 / times) - 1.0)

    def yearly_discount_factors(self, years: int) -> FloatArray:
        """``P(0, t)`` for t = 0, 1, ..., years: what the ESG fits and checks against."""
        return self.discount_factor(np.arange(years + 1, dtype=np.float64))


def _read_columns(path: Path, column: str) -> tuple[list[float], list[float]]:
    """The ``maturity`` column and ``column`` of a CSV or Parquet file, as floats."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise ConfigurationError(
                f"curve.file {str(path)!r}: not a Parquet file ({exc})"
            ) from exc
        names = table.column_names
        if "maturity" not in names or column not in names:
            raise ConfigurationError(
                f"curve.file {str(path)!r}: needs columns 'maturity' and {column!r}; found {names}"
            )
        return (
            [float(v) for v in table.column("maturity").to_pylist()],
            [float(v) for v in table.column(column).to_pylist()],
        )
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        names = reader.fieldnames or []
        if "maturity" not in names or column not in names:
            raise ConfigurationError(
                f"curve.file {str(path)!r}: needs a header with 'maturity' and {column!r}; "
                f"found {names}"
            )
        maturities: list[float] = []
        values: list[float] = []
        for line, row in enumerate(reader, start=2):
            try:
                maturities.append(float(row["maturity"]))
                values.append(float(row[column]))
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"curve.file {str(path)!r} line {line}: 'maturity' and {column!r} must be "
                    f"numbers; found {row.get('maturity')!r}, {row.get(column)!r}"
                ) from None
    return maturities, values
