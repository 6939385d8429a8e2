"""Seeded, realistic sample policies and scenarios for demos, tests and benchmarks.

Policies look like a small life book: entry ages 18-70 skewed young, a few product mixes
with terms that end by age 120 (and by ``max_term``), lognormal sums assured by product, and
level premiums priced on a simple Gompertz-Makeham table at 3% with a loading, so that
projected NPVs come out modestly positive rather than absurd. The same arguments and seed give
the same data, bit for bit. Scenarios come from the ESG engine itself (no second rate model).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.io.parquet import RECORD_TYPE_KEY, PolicyData, aligned_records, write_records
from livecalc.runtime.buffers import POLICY_DTYPE, POLICY_EXT_DTYPE, SCENARIO_DTYPE

__all__ = [
    "ESG_METADATA_KEY",
    "GENERATE_METADATA_KEY",
    "ScenarioData",
    "generate_policies",
    "generate_scenarios",
    "premium_rates",
    "write_policies",
    "write_scenarios",
]

ESG_METADATA_KEY = "livecalc.esg"
"""Parquet key-value metadata key under which a scenario file keeps the ESG's metadata (JSON)."""

GENERATE_METADATA_KEY = "livecalc.io.generate"
"""Parquet key-value metadata key recording the generator's arguments (JSON)."""

MAX_AGE = 120

# Pricing basis of the generated premiums (not the projection's basis: the projection's own
# assumptions decide the NPVs; these only keep premiums in a plausible proportion to risk).
_MAKEHAM_A, _GOMPERTZ_B, _GOMPERTZ_C = 0.0002, 0.00003, 1.1
_PRICING_RATE = 0.03
_PREMIUM_LOADING = 1.25  # 25% on the net premium for expenses and margin
_POLICY_FEE = 50.0
_GENDER_FACTORS = (1.0, 0.8, 0.9)  # male, female, other
_CLASS_FACTORS = (1.0, 1.8)  # standard, smoker

_GENDER_WEIGHTS = (0.49, 0.49, 0.02)
_CLASS_WEIGHTS = (0.8, 0.2)
_PRODUCT_WEIGHTS = (0.5, 0.25, 0.25)  # term, whole life, endowment
_TERM_CHOICES = np.array([5, 10, 15, 20, 25, 30, 35, 40])
_ENDOWMENT_TERMS = np.array([10, 15, 20, 25, 30])
_MEDIAN_SUM_ASSURED = (250_000.0, 100_000.0, 50_000.0)  # by product
_SUM_ASSURED_SIGMA = 0.7


@dataclass
class ScenarioData:
    """SCENARIO records from the ESG with the metadata that describes them (model, seed...)."""

    records: np.ndarray[Any, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


def premium_rates() -> np.ndarray[Any, Any]:
    """Loaded annual premium per unit sum assured, by [gender, class, product, age, term].

    Net level premiums (premiums yearly in advance, deaths paid at the end of the year of
    death) on the pricing basis above: term and whole life as temporary assurances over the
    term (whole life runs to age 120 or the term), endowments with the sum assured also paid
    at maturity; times the 25% loading (the per-policy fee comes on top). Terms past age 120
    are not priced (NaN).
    """
    ages = np.arange(MAX_AGE + 1)
    mu = _MAKEHAM_A + _GOMPERTZ_B * _GOMPERTZ_C ** ages.astype(np.float64)
    v = 1.0 / (1.0 + _PRICING_RATE)
    # attained[x, k] = x + k for entry age x and policy year k (0-based); past 120 nobody lives.
    attained = ages[:, None] + ages[None, :]
    factors = np.array([[g * c for c in _CLASS_FACTORS] for g in _GENDER_FACTORS])
    q = np.ones(factors.shape + attained.shape)
    alive = attained < MAX_AGE
    base_q = 1.0 - np.exp(-mu[np.minimum(attained, MAX_AGE)])
    q[..., alive] = np.minimum(1.0, factors[..., None] * base_q[alive])
    survive = np.cumprod(1.0 - q, axis=-1)
    kpx = np.concatenate([np.ones((*q.shape[:-1], 1)), survive[..., :-1]], axis=-1)
    vk = v ** ages.astype(np.float64)
    annuity = np.cumsum(kpx * vk, axis=-1)  # [..., n-1] is ä over n years
    assurance = np.cumsum(kpx * q * vk * v, axis=-1)
    endowment = survive * vk * v  # [..., n-1] is v^n · npx
    rates = np.full((*factors.shape, 3, MAX_AGE + 1, MAX_AGE + 2), np.nan)
    net_term = assurance / annuity
    net_endow = (assurance + endowment) / annuity
    for product, net in ((0, net_term), (1, net_term), (2, net_endow)):
        rates[:, :, product, :, 1:] = net * _PREMIUM_LOADING
    # A policy must end by age 120: age + term <= 120.
    too_long = ages[:, None] + np.arange(MAX_AGE + 2)[None, :] > MAX_AGE
    rates[..., too_long] = np.nan
    return rates


def generate_policies(
    n: int,
    seed: int = 42,
    in_force_fraction: float = 0.0,
    max_policy_count: int = 1,
    max_term: int = 50,
    start_id: int = 1,
) -> PolicyData:
    """``n`` realistic policies, reproducible by ``seed``.

    Args:
        n: number of policies (ids ``start_id`` .. ``start_id + n - 1``).
        seed: the random seed; the same arguments give the same data.
        in_force_fraction: share of policies already in force, with ``duration_months``
            uniform over their term (the rest are new business, duration 0).
        max_policy_count: model points stand for 1..max_policy_count identical policies.
        max_term: the longest term in years (whole life runs to age 120 or this).
        start_id: the first policy id.

    Returns:
        PolicyData; ``ext`` is filled when ``in_force_fraction > 0`` or
        ``max_policy_count > 1``, else None.
    """
    _check_args(n, in_force_fraction, max_policy_count, max_term, start_id)
    rng = np.random.default_rng(seed)
    age = 18 + np.floor(rng.beta(2.0, 3.5, n) * 53).astype(np.int64)
    gender = rng.choice(3, n, p=_GENDER_WEIGHTS)
    uw_class = rng.choice(len(_CLASS_WEIGHTS), n, p=_CLASS_WEIGHTS)
    product = rng.choice(3, n, p=_PRODUCT_WEIGHTS)
    # Term assurances mostly end by 85, endowments by 75 (with at least 5 years); whole life
    # runs to 120. Every policy then ends by 120 and within max_term.
    term = np.where(
        product == 0,
        np.minimum(rng.choice(_TERM_CHOICES, n), np.maximum(5, 85 - age)),
        np.where(
            product == 2,
            np.minimum(rng.choice(_ENDOWMENT_TERMS, n), np.maximum(5, 75 - age)),
            MAX_AGE - age,
        ),
    )
    term = np.clip(term, 1, np.minimum(max_term, MAX_AGE - age))
    median = np.asarray(_MEDIAN_SUM_ASSURED)[product]
    sum_assured = np.maximum(
        10_000.0, np.round(median * rng.lognormal(0.0, _SUM_ASSURED_SIGMA, n), -3)
    )
    rate = premium_rates()[gender, uw_class, product, age, term]
    premium = np.round(sum_assured * rate + _POLICY_FEE, 2)

    records = aligned_records(POLICY_DTYPE, n)
    records["policy_id"] = np.arange(start_id, start_id + n, dtype=np.uint64)
    records["age"] = age
    records["gender"] = gender
    records["underwriting_class"] = uw_class
    records["product_type"] = product
    records["term"] = term
    records["sum_assured"] = sum_assured
    records["premium"] = premium
    if in_force_fraction == 0.0 and max_policy_count == 1:
        return PolicyData(records, None)

    ext = aligned_records(POLICY_EXT_DTYPE, n)
    ext["policy_id"] = records["policy_id"]
    in_force = rng.random(n) < in_force_fraction
    months = np.floor(rng.random(n) * (term * 12)).astype(np.int64)
    ext["duration_months"] = np.where(in_force, np.maximum(months, 1), 0)
    ext["reserved"] = 0
    ext["policy_count"] = rng.integers(1, max_policy_count + 1, n).astype(np.float64)
    return PolicyData(records, ext)


def _check_args(
    n: int, in_force_fraction: float, max_policy_count: int, max_term: int, start_id: int
) -> None:
    problems = []
    if n < 0:
        problems.append(f"n must be >= 0, got {n}")
    if not 0.0 <= in_force_fraction <= 1.0:
        problems.append(f"in_force_fraction must be in [0, 1], got {in_force_fraction}")
    if max_policy_count < 1:
        problems.append(f"max_policy_count must be >= 1, got {max_policy_count}")
    if not 1 <= max_term <= MAX_AGE - 18:
        problems.append(f"max_term must be from 1 to {MAX_AGE - 18}, got {max_term}")
    if start_id < 0 or start_id + n > 2**64:
        problems.append(f"start_id must be >= 0 with ids fitting uint64, got {start_id}")
    if problems:
        raise ConfigurationError("generate_policies: " + "; ".join(problems))


def _policy_table(data: PolicyData) -> np.ndarray[Any, Any]:
    """One record array with the POLICY fields and, when present, the in-force columns."""
    if data.ext is None:
        return data.records
    fields = [(name, POLICY_DTYPE[name]) for name in POLICY_DTYPE.names or ()]
    combined = np.empty(
        len(data), dtype=np.dtype([*fields, ("duration_months", "<i4"), ("policy_count", "<f8")])
    )
    for name, _ in fields:
        combined[name] = data.records[name]
    combined["duration_months"] = data.ext["duration_months"]
    combined["policy_count"] = data.ext["policy_count"]
    return combined


def write_policies(
    path: str | os.PathLike[str],
    data: PolicyData,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write policies (and their in-force columns) to Parquet, or CSV by suffix; returns rows."""
    meta = {RECORD_TYPE_KEY: "POLICY", **(metadata or {})}
    return write_records(Path(path), _policy_table(data), meta)


def _outer_inner(n_scenarios: int) -> tuple[int, int]:
    """Split a scenario count into outer x inner paths, with as many inner paths as fit."""
    # scenario_id = outer_id * 1000 + inner_id caps inner paths at 1,000 per outer path.
    inner = max(d for d in range(1, min(n_scenarios, 1000) + 1) if n_scenarios % d == 0)
    return n_scenarios // inner, inner


def generate_scenarios(
    n_scenarios: int | None = None,
    years: int = 50,
    seed: int = 42,
    *,
    model: str = "hull_white",
    outer: int | None = None,
    inner: int | None = None,
    **esg_options: Any,
) -> ScenarioData:
    """Interest-rate scenarios from the ESG engine, with the ESG's metadata.

    Give ``n_scenarios`` (split into ``outer x inner`` paths with as many inner paths per
    outer path as divide it, at most 1,000: 500 gives 1 x 500, 5,000 gives 5 x 1,000), or
    ``outer`` and ``inner`` themselves. Other ESG config keys (``a``, ``sigma``, ``curve``,
    ``antithetic``...) pass through ``esg_options``; docs/engines/esg.md lists them. The ESG
    validates the config and raises ConfigurationError naming a bad key.
    """
    # Imported here so that policy generation does not load the ESG's numba kernels.
    from livecalc.engines.esg import ESGEngine

    if outer is None and inner is None:
        if n_scenarios is None or n_scenarios < 1:
            raise ConfigurationError(
                f"generate_scenarios: n_scenarios must be >= 1, got {n_scenarios} "
                "(or give outer and inner)"
            )
        outer, inner = _outer_inner(n_scenarios)
    elif (
        outer is None or inner is None or (n_scenarios is not None and n_scenarios != outer * inner)
    ):
        raise ConfigurationError(
            f"generate_scenarios: give n_scenarios (CLI -n), or both outer and inner (--outer, "
            f"--inner) with outer x inner = n_scenarios (got n_scenarios={n_scenarios}, "
            f"outer={outer}, inner={inner})"
        )
    config = {
        **esg_options,
        "model": model,
        "outer": outer,
        "inner": inner,
        "years": years,
        "seed": seed,
    }
    engine = ESGEngine()
    engine.initialize(config)
    try:
        spec = engine.output_spec({})
        records = aligned_records(SCENARIO_DTYPE, spec.records if spec is not None else 0)
        engine.run_chunk(None, records)
        metadata = dict(engine.get_outputs().get("esg_metadata", {}))
    finally:
        engine.dispose()
    return ScenarioData(records, metadata)


def write_scenarios(
    path: str | os.PathLike[str],
    data: ScenarioData,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write scenarios to Parquet (ESG metadata as JSON under ``livecalc.esg``), or CSV."""
    meta = {ESG_METADATA_KEY: json.dumps(data.metadata), **(metadata or {})}
    return write_records(Path(path), data.records, meta)
