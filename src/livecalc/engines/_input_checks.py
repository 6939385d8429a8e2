"""The projection's check of whole input data sets, before a run starts.

The projection refuses, chunk by chunk, policies it cannot value: an id RESULT records cannot
hold, an underwriting class without a factor, ages the mortality table does not cover, terms
longer than the scenarios. Found only during the run, such a row fails the run (exit 1) and can
be named only within its chunk. ``projection_data_problems`` applies the same rules to the whole
data set before anything runs, so ``livecalc validate`` and the start of ``run`` refuse the data
(exit 2) naming the input, the column and the file's 0-based row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.assumptions.tables import MAX_AGE
from livecalc.runtime.buffers import POLICY_DTYPE, POLICY_EXT_DTYPE, SCENARIO_DTYPE
from livecalc.runtime.engine import DataProblem

__all__ = ["projection_data_problems"]

_UINT32_MAX = 0xFFFFFFFF


def _by_dtype(inputs: Mapping[str, np.ndarray | None], dtype: Any) -> tuple[str, np.ndarray] | None:
    return next(((k, v) for k, v in inputs.items() if v is not None and v.dtype == dtype), None)


def _first(bad: np.ndarray) -> int | None:
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def projection_steps(policies: np.ndarray, months: np.ndarray, steps_per_year: int) -> np.ndarray:
    """Projection steps left for each policy, as the projection counts them (0: expired)."""
    age = policies["age"].astype(np.int64)
    term = policies["term"].astype(np.int64)
    to_max_age = np.maximum(MAX_AGE - age, 0)
    whole_life = policies["product_type"] == 1
    years = np.where(whole_life & (term == 0), to_max_age, term)
    years = np.where(whole_life, np.minimum(years, to_max_age), years)
    months_left = np.maximum(12 * years - months, 0)
    return np.asarray(months_left // (12 // steps_per_year))


def projection_data_problems(
    inputs: Mapping[str, np.ndarray | None],
    *,
    output: str,
    class_factors: int,
    steps_per_year: int,
    mortality_ages: tuple[int, int],
    deterministic_years: int,
) -> list[DataProblem]:
    """The first bad row of each rule, for whole POLICY (+ POLICY_EXT, SCENARIO) inputs.

    An input given as None is another engine's output, not known before the run (an ESG's
    scenarios): the scenario length is then not checked.

    Args:
        output: the configured output mode ("npv" holds 32-bit policy ids).
        class_factors: how many underwriting classes have a mortality factor.
        steps_per_year: 1 (annual) or 12 (monthly).
        mortality_ages: the first and last age of the mortality table.
        deterministic_years: years of the deterministic curve used without SCENARIO input.
    """
    found = _by_dtype(inputs, POLICY_DTYPE)
    if found is None or len(found[1]) == 0:
        return []
    name, policies = found
    problems: list[DataProblem] = []
    ids = policies["policy_id"]
    if output == "npv" and (row := _first(ids > _UINT32_MAX)) is not None:
        problems.append(
            DataProblem(
                name,
                "policy_id",
                row,
                f"value {int(ids[row])} does not fit the 32-bit policy_id of RESULT records "
                '("output": "npv")',
                'renumber the policies below 4294967296, or use "output": "detail"',
            )
        )
    classes = policies["underwriting_class"]
    if (row := _first(classes >= class_factors)) is not None:
        problems.append(
            DataProblem(
                name,
                "underwriting_class",
                row,
                f"class {int(classes[row])} has no mortality factor "
                f"(config.underwriting_class_factors has {class_factors})",
                f"give factors up to class {int(classes[row])}, or fix the class",
            )
        )
    ext = _by_dtype(inputs, POLICY_EXT_DTYPE)
    months = np.zeros(len(policies), dtype=np.int64)
    if ext is not None and len(ext[1]) == len(policies):
        months = ext[1]["duration_months"].astype(np.int64)
        if steps_per_year == 1:
            months = months - months % 12  # annual steps count completed policy years
    n_steps = projection_steps(policies, months, steps_per_year)
    age_problems, past_table = _age_problems(
        name, policies, months, n_steps, steps_per_year, mortality_ages
    )
    problems += age_problems
    # A term past the table's last age is reported once, not again as too long for the rates.
    n_steps = np.where(past_table, 0, n_steps)
    scenarios = _by_dtype(inputs, SCENARIO_DTYPE)
    if scenarios is not None and len(scenarios[1]):
        scenario_ids = scenarios[1]["scenario_id"]
        changes = np.flatnonzero(scenario_ids != scenario_ids[0])
        n_years = int(changes[0]) if len(changes) else len(scenario_ids)
        covered = f"the scenarios ({scenarios[0]!r}) cover {n_years} years"
    elif any(v is None for v in inputs.values()):
        return problems  # the scenarios come from another engine: known only during the run
    else:
        n_years = deterministic_years
        covered = f"the deterministic curve (discount_rate or yield_curve) covers {n_years} years"
    years_needed = -(-n_steps // steps_per_year)
    if (row := _first(years_needed > n_years)) is not None:
        problems.append(
            DataProblem(
                name,
                "term",
                row,
                f"the policy runs {int(years_needed[row])} more years but {covered}",
                f"give at least {int(years_needed.max())} years of scenarios, or shorten the term",
            )
        )
    return problems


def _age_problems(
    name: str,
    policies: np.ndarray,
    months: np.ndarray,
    n_steps: np.ndarray,
    steps_per_year: int,
    mortality_ages: tuple[int, int],
) -> tuple[list[DataProblem], np.ndarray]:
    """Entry ages below the mortality table, terms that run past its last age, and the mask
    of the policies that run past it."""
    low, high = mortality_ages
    active = n_steps > 0
    entry = policies["age"].astype(np.int64)
    # The ages the projection reads: from the first step in force on (a policy issued in
    # the future, a negative duration, is at its entry age when it starts).
    first = entry + np.maximum(months, 0) // 12
    last = entry + np.maximum(months + (n_steps - 1) * (12 // steps_per_year), 0) // 12
    problems = []
    if (row := _first(active & (first < low))) is not None:
        problems.append(
            DataProblem(
                name,
                "age",
                row,
                f"age {int(first[row])} is below the mortality table's ages ({low}-{high})",
                "extend config.mortality_table to that age, or fix the age",
            )
        )
    past_table = active & (last > high)
    if (row := _first(past_table)) is not None:
        age, term = int(entry[row]), int(policies["term"][row])
        problems.append(
            DataProblem(
                name,
                "term",
                row,
                f"term {term} from age {age} runs past age {high}, the mortality table's last "
                f"age ({low}-{high})",
                f"give a term of at most {max(high + 1 - age, 0)} for this age, or extend "
                "config.mortality_table",
            )
        )
    return problems, past_table
