"""Least-squares Monte Carlo: a regression proxy of the value at t on the outer state.

Nested Monte Carlo values each outer path on many inner paths; LSMC values many outer paths on
few inner paths each (noisy, but unbiased, values) and regresses those values on the outer
state, so the fitted function of the state stands in for the conditional expectation. Here the
state is one number (the short rate at t) and the basis one of two families of ``degree + 1``
columns, on the fitting set's standardised state ``s = (x - mean) / std``:

- ``polynomial``: ``1, s, s^2, ..., s^degree``;
- ``laguerre``: ``1`` and the weighted Laguerre functions ``e^(-u/2) L_k(u)``, k = 0..degree-1,
  of ``u = s - min(s)`` (>= 0 on the fitting set), as in Longstaff and Schwartz (2001).

The coefficients minimise ``sum (y - X b)^2 / n + ridge * sum_{k>=1} b_k^2`` (the intercept is
not shrunk); ``ridge = 0`` is ordinary least squares. ``validate`` compares the proxy with
values computed on many inner paths per outer path ("validation scenarios"), outside the
fitting set. Formulas and limits: docs/engines/nested.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASIS_KINDS",
    "QUANTILE_LEVELS",
    "BasisKind",
    "Proxy",
    "fit_proxy",
    "r_squared",
    "validate",
]

FloatArray = npt.NDArray[np.float64]
BasisKind = Literal["polynomial", "laguerre"]
BASIS_KINDS: tuple[BasisKind, ...] = ("polynomial", "laguerre")

QUANTILE_LEVELS = (0.005, 0.05, 0.25, 0.5, 0.75, 0.95, 0.995)
"""Levels at which ``validate`` compares the proxy's and the nested values' distributions."""


@dataclass(frozen=True)
class Proxy:
    """A fitted proxy: the basis, its standardisation and the coefficients."""

    kind: BasisKind
    degree: int
    center: float
    scale: float
    shift: float  # min of the standardised fitting states (Laguerre's origin)
    coefficients: FloatArray
    ridge: float = 0.0

    def design(self, x: FloatArray) -> FloatArray:
        """The basis columns at the states ``x``: (len(x), degree + 1)."""
        s = (np.asarray(x, dtype=np.float64) - self.center) / self.scale
        if self.kind == "polynomial":
            return np.asarray(np.vander(s, self.degree + 1, increasing=True), dtype=np.float64)
        u = s - self.shift
        weighted = np.polynomial.laguerre.lagvander(u, self.degree - 1) * np.exp(-u / 2)[:, None]
        return np.column_stack([np.ones_like(s), weighted])

    def predict(self, x: FloatArray) -> FloatArray:
        """The proxy's value at each state."""
        return np.asarray(self.design(x) @ self.coefficients, dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        """Plain JSON: the basis and coefficients (enough to evaluate the proxy elsewhere)."""
        return {
            "basis": self.kind,
            "degree": self.degree,
            "ridge": self.ridge,
            "center": self.center,
            "scale": self.scale,
            "shift": self.shift,
            "coefficients": [float(c) for c in self.coefficients],
        }


def fit_proxy(
    x: FloatArray,
    y: FloatArray,
    kind: BasisKind = "polynomial",
    degree: int = 3,
    ridge: float = 0.0,
) -> Proxy:
    """Fit ``y`` (noisy values at t) on the states ``x`` by (ridge) least squares.

    Raises:
        ValueError: unknown basis, degree below 1, fewer points than columns plus one, a
            negative ridge, or states that do not vary.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if kind not in BASIS_KINDS:
        raise ValueError(f"basis {kind!r} is unknown: use one of {', '.join(BASIS_KINDS)}")
    if degree < 1:
        raise ValueError(f"degree {degree} must be at least 1")
    if ridge < 0.0 or not np.isfinite(ridge):
        raise ValueError(f"ridge {ridge!r} must be a finite number >= 0")
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"states {x.shape} and values {y.shape} must be equal 1-d arrays")
    if len(x) < degree + 2:
        raise ValueError(f"{len(x)} fitting points for {degree + 1} coefficients; give more")
    scale = float(x.std())
    if not scale > 0.0:
        raise ValueError("the fitting states do not vary: nothing to regress on")
    center = float(x.mean())
    shift = float(((x - center) / scale).min())
    proxy = Proxy(kind, degree, center, scale, shift, np.zeros(degree + 1), ridge)
    design = proxy.design(x)
    if ridge > 0.0:
        # Augmented least squares: rows sqrt(n ridge) e_k (k >= 1) with target 0.
        n = len(x)
        penalty = np.sqrt(n * ridge) * np.eye(degree + 1)[1:]
        design = np.vstack([design, penalty])
        y = np.concatenate([y, np.zeros(degree)])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return Proxy(kind, degree, center, scale, shift, np.asarray(coefficients), ridge)


def r_squared(y: FloatArray, fitted: FloatArray) -> float:
    """``1 - sum (y - fitted)^2 / sum (y - mean y)^2`` (1 for a perfect fit)."""
    y = np.asarray(y, dtype=np.float64)
    total = float(((y - y.mean()) ** 2).sum())
    residual = float(((y - np.asarray(fitted)) ** 2).sum())
    return 1.0 - residual / total if total > 0.0 else (1.0 if residual == 0.0 else 0.0)


def validate(
    proxy: Proxy,
    x: FloatArray,
    values: FloatArray,
    standard_errors: FloatArray,
    central: float = 0.99,
) -> dict[str, Any]:
    """The proxy against validation values (many inner paths per outer path).

    Errors are ``proxy(x) - value`` per validation point. ``max_abs_rel_error_oos`` is the
    largest ``|error| / mean |value|`` (relative to the value's average size) over the points
    whose state lies within the central ``central`` of the validation states (the tails of a
    regression are extrapolation, and reported apart, in ``by_quantile``). ``by_quantile``
    gives, at each level of ``QUANTILE_LEVELS``, the validation values' quantile, the proxy's
    quantile over the same states, and their relative difference; ``z`` is the error over
    the value's standard error (|z| of order 1: the proxy is within the validation's noise).
    """
    x = np.asarray(x, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    predicted = proxy.predict(x)
    error = predicted - values
    lo, hi = np.quantile(x, [(1.0 - central) / 2.0, (1.0 + central) / 2.0])
    inside = (x >= lo) & (x <= hi)
    # Relative to the value's average size, not to each value: a value that passes through 0
    # would make a pointwise relative error unbounded.
    scale = max(float(np.abs(values).mean()), np.finfo(np.float64).tiny)
    rel = np.abs(error) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(standard_errors > 0.0, error / standard_errors, 0.0)
    by_quantile = []
    for level in QUANTILE_LEVELS:
        nested_q = float(np.quantile(values, level))
        proxy_q = float(np.quantile(predicted, level))
        by_quantile.append(
            {
                "level": level,
                "nested": nested_q,
                "proxy": proxy_q,
                "rel_error": (proxy_q - nested_q) / abs(nested_q) if nested_q else 0.0,
            }
        )
    return {
        "points": len(x),
        "r2_oos": r_squared(values, predicted),
        "rmse_oos": float(np.sqrt((error**2).mean())),
        "max_abs_rel_error_oos": float(rel[inside].max()) if inside.any() else 0.0,
        "max_abs_rel_error_all": float(rel.max()),
        "central_range": [float(lo), float(hi)],
        "mean_abs_z": float(np.abs(z).mean()),
        "by_quantile": by_quantile,
    }
