"""Typed wrappers of the projection kernels: checks, allocation, and the output records.

``project`` is the one entry point: it writes a chunk's output records through the full kernel
or the separable path of ``livecalc.kernels.projection``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livecalc.kernels.projection import (
    BLOCKS,
    CF_FIELDS,
    COUNT,
    MODE_DETAIL,
    MODE_DETAIL_EXT,
    MODE_MEANS,
    MODE_NPV,
    MODE_TOTALS,
    PREMIUM,
    TOTAL_BLOCKS,
    cashflow_kernel,
    full_kernel,
    separable_flows_kernel,
)
from livecalc.kernels.projection_basis import (
    COMPONENTS,
    ChunkInputs,
    OutputMode,
    ProjectionBasis,
)
from livecalc.kernels.projection_pv import ids_kernel, separable_pv_kernel
from livecalc.runtime.buffers import ALL_SCENARIOS

__all__ = [
    "cashflow_slots",
    "inflation_factors",
    "kernel_args",
    "project",
    "project_cashflows",
    "write_components",
    "write_ids",
]

Array = np.ndarray[Any, Any]


def kernel_args(chunk: ChunkInputs, basis: ProjectionBasis) -> tuple[Any, ...]:
    """The arguments every kernel starts with: policies, assumptions, parameters, inflation."""
    qtab, ltab = basis.decrement_tables()
    return (
        chunk.pol_int,
        chunk.pol_float,
        qtab,
        basis.mortality_age_min,
        ltab,
        basis.commission,
        basis.surrender,
        basis.params(),
        inflation_factors(chunk, basis),
    )


def inflation_factors(chunk: ChunkInputs, basis: ProjectionBasis) -> Array:
    """(2, steps): ``(1 + inflation)^t`` at each step's start and at its claim time."""
    m = basis.steps_per_year
    t = np.arange(chunk.n_steps_max) / m
    tau = 0.5 * int(basis.claim_timing)
    growth = 1.0 + basis.inflation
    return np.stack([growth**t, growth ** (t + tau / m)])


def _dummy() -> Array:
    # A strided float view: the same numba type as a record field, so unused output slots do
    # not compile another specialisation.
    return np.zeros(4)[::2]


def _policy_ids(chunk: ChunkInputs, mode: OutputMode) -> Array:
    """Policy ids in the output's integer type (RESULT's is 32-bit: the engine checked)."""
    return chunk.policy_ids.astype(np.uint32) if mode is OutputMode.NPV else chunk.policy_ids


def write_ids(chunk: ChunkInputs, mode: OutputMode, out: Array) -> None:
    """Fill the id fields (and zero ``reserved``) of the output records."""
    n, n_scen = chunk.n_policies, chunk.n_scenarios
    if mode is OutputMode.SCENARIO_TOTALS:
        out["scenario_id"][:n_scen] = chunk.scenario_ids
        out["reserved"][:n_scen] = 0
        out["policy_count"][:n_scen] = chunk.pol_float[:, COUNT].sum()
    elif mode is OutputMode.POLICY_MEANS:
        out["scenario_id"][:n] = ALL_SCENARIOS
        out["reserved"][:n] = 0
        out["policy_id"][:n] = chunk.policy_ids
    else:
        rows = n * n_scen
        if mode is OutputMode.DETAIL_EXT:
            out["reserved2"][:rows] = 0
            out["premium"][:rows].reshape(n, n_scen)[:] = chunk.pol_float[:, PREMIUM, None]
        ids_kernel(
            _policy_ids(chunk, mode),
            chunk.scenario_ids,
            out["scenario_id"][:rows],
            out["policy_id"][:rows],
            out["reserved"][:rows],
        )


def write_components(out: Array, comps: list[Array], rows: slice) -> None:
    """Write five component arrays and their npv into ``out[rows]``'s float fields."""
    p, d, s, e, m = comps
    out["npv"][rows] = p - d - s - e - m
    out["premium_income"][rows] = p
    out["death_benefits"][rows] = d
    out["surrender_benefits"][rows] = s
    out["expenses"][rows] = e
    out["maturity_benefits"][rows] = m


def _project_full_path(
    chunk: ChunkInputs, basis: ProjectionBasis, mode: OutputMode, out: Array
) -> None:
    """Every policy under every scenario through the full kernel."""
    n, n_scen = chunk.n_policies, chunk.n_scenarios
    df_t = np.ascontiguousarray(chunk.disc_factors.T)
    if basis.dynamic_lapse:
        dyn_t = np.ascontiguousarray(basis.dynamic_factors(chunk.rates).T)
    else:
        dyn_t = np.zeros((1, 1))
    code = {
        OutputMode.NPV: MODE_NPV,
        OutputMode.DETAIL: MODE_DETAIL,
        OutputMode.POLICY_MEANS: MODE_MEANS,
        OutputMode.SCENARIO_TOTALS: MODE_TOTALS,
        OutputMode.DETAIL_EXT: MODE_DETAIL_EXT,
    }[mode]
    n_blocks = max(1, min(n, TOTAL_BLOCKS if code == MODE_TOTALS else BLOCKS))
    partial = np.zeros((n_blocks if code == MODE_TOTALS else 1, n_scen, 5))
    fields = _float_fields(mode, out, mode.records(n, n_scen))
    if mode is OutputMode.DETAIL_EXT:
        rows = n * n_scen
        extra = [out["commissions"][:rows], out["premium_annuity"][:rows]]
    else:
        extra = [_dummy(), _dummy()]
    if mode is OutputMode.NPV:  # the kernel writes the ids with the values
        rows = n * n_scen
        records = out[:rows]
        policy_ids = _policy_ids(chunk, mode)
    else:  # written by write_ids; empty views of the same types (no second specialisation)
        records = np.zeros(0, dtype=OutputMode.NPV.dtype)
        policy_ids = np.zeros(0, dtype=np.uint32)
    ids = (
        policy_ids,
        chunk.scenario_ids,
        records["scenario_id"],
        records["policy_id"],
        records["reserved"],
    )
    full_kernel(
        *kernel_args(chunk, basis),
        df_t, dyn_t, basis.grid_per_step, basis.claim_offset, n_blocks, code,
        *fields, *extra, partial, *ids,
    )  # fmt: skip
    if code == MODE_TOTALS:
        totals = partial.sum(axis=0)
        write_components(out, [totals[:, c] for c in range(5)], slice(0, n_scen))


def _float_fields(mode: OutputMode, out: Array, rows: int) -> list[Array]:
    """The six float output fields the kernels write, dummies where the mode has none."""
    if mode in (OutputMode.NPV, OutputMode.SCENARIO_TOTALS):
        first = [out["npv"][:rows]] if mode is OutputMode.NPV else [_dummy()]
        return first + [_dummy() for _ in range(5)]
    names = ["npv", *COMPONENTS]
    return [out[f][:rows] for f in names]


def _project_separable_path(
    chunk: ChunkInputs, basis: ProjectionBasis, mode: OutputMode, out: Array
) -> None:
    """Cash flows once per policy, then discounted under every scenario."""
    n, n_scen = chunk.n_policies, chunk.n_scenarios
    disc = chunk.disc_factors
    n_comp = 1 if mode is OutputMode.NPV else 5
    flows = np.zeros((n_comp, n, disc.shape[1]))
    n_blocks = max(1, min(n, BLOCKS))
    g = basis.grid_per_step
    separable_flows_kernel(*kernel_args(chunk, basis), g, basis.claim_offset, n_blocks, flows)
    if mode is OutputMode.SCENARIO_TOTALS:
        totals = flows.sum(axis=1) @ disc.T
        write_components(out, list(totals), slice(0, n_scen))
    elif mode is OutputMode.POLICY_MEANS:
        means = flows @ disc.mean(axis=0)
        write_components(out, list(means), slice(0, n))
    else:
        df_t = np.ascontiguousarray(disc.T)
        rows = n * n_scen
        fields = _float_fields(mode, out, rows)
        ids = (
            _policy_ids(chunk, mode),
            chunk.scenario_ids,
            out["scenario_id"][:rows],
            out["policy_id"][:rows],
            out["reserved"][:rows],
        )
        separable_pv_kernel(flows, chunk.pol_int, df_t, g, n_blocks, *fields, *ids)


def project(
    chunk: ChunkInputs, basis: ProjectionBasis, mode: OutputMode, out: Array, separable: bool
) -> int:
    """Project a chunk into ``out[:records]``; returns the number of records written.

    Raises:
        ValueError: ``out`` is too small, or ``separable`` with dynamic lapses.
    """
    rows = mode.records(chunk.n_policies, chunk.n_scenarios)
    if len(out) < rows:
        raise ValueError(f"the output buffer holds {len(out)} records; this chunk needs {rows}")
    if out.dtype != mode.dtype:
        raise ValueError(f"the output buffer's dtype is not {mode.value}'s record dtype")
    if separable and basis.dynamic_lapse:
        raise ValueError("dynamic lapses make cash flows scenario-dependent: no separable path")
    if rows == 0:
        return 0
    if mode is OutputMode.CASHFLOWS:
        raise ValueError("cash flows are written by project_cashflows")
    if mode is OutputMode.DETAIL_EXT:
        separable = False  # commissions and the premium annuity come from the full kernel
    pair = mode in (OutputMode.NPV, OutputMode.DETAIL)
    # The separable pair kernel and the full kernel's NPV mode write the ids themselves.
    if not (separable and pair) and mode is not OutputMode.NPV:
        write_ids(chunk, mode, out)
    if separable:
        _project_separable_path(chunk, basis, mode, out)
    else:
        _project_full_path(chunk, basis, mode, out)
    return rows


def cashflow_slots(
    scenario_ids: Array, chosen: list[int], deterministic: bool
) -> tuple[Array, Array]:
    """The cash-flow output's slots: (scenario id of each slot, weights (slots, scenarios)).

    A deterministic run has one slot, its scenario; otherwise the first slot is the mean over
    the scenarios (``ALL_SCENARIOS``) and then one slot per chosen scenario id.
    """
    n_scen = len(scenario_ids)
    if deterministic:
        return np.asarray(scenario_ids[:1], dtype=np.uint32), np.ones((1, 1))
    ids = [ALL_SCENARIOS, *chosen]
    weights = np.zeros((len(ids), n_scen))
    weights[0] = 1.0 / n_scen
    index = {int(v): i for i, v in enumerate(scenario_ids)}
    for slot, sid in enumerate(chosen, start=1):
        if sid not in index:
            raise ValueError(f"scenario {sid} is not in the scenarios")
        weights[slot, index[sid]] = 1.0
    return np.array(ids, dtype=np.uint32), weights


def project_cashflows(
    chunk: ChunkInputs,
    basis: ProjectionBasis,
    out: Array,
    slot_ids: Array,
    slot_weights: Array,
) -> int:
    """Portfolio cash flows per output slot and period into ``out`` (CASHFLOW records,
    slot-major: record ``slot * periods + k``); returns the records written (the chunk's
    longest projection decides the periods)."""
    n_slots, k_max = len(slot_ids), chunk.n_steps_max
    rows = n_slots * k_max
    if len(out) < rows:
        raise ValueError(f"the output buffer holds {len(out)} records; this chunk needs {rows}")
    if rows == 0:
        return 0
    g, coff = basis.grid_per_step, basis.claim_offset
    df_t = np.ascontiguousarray(chunk.disc_factors.T)
    if basis.dynamic_lapse:
        dyn_t = np.ascontiguousarray(basis.dynamic_factors(chunk.rates).T)
    else:
        dyn_t = np.zeros((1, 1))
    n_blocks = max(1, min(chunk.n_policies, TOTAL_BLOCKS))
    partial = np.zeros((n_blocks, n_slots, k_max, len(CF_FIELDS)))
    cashflow_kernel(
        *kernel_args(chunk, basis), df_t, dyn_t, g, coff, n_blocks,
        np.ascontiguousarray(slot_weights), partial,
    )  # fmt: skip
    sums = partial.sum(axis=0)
    view = out[:rows].reshape(n_slots, k_max)
    view["scenario_id"] = slot_ids[:, None]
    view["period"] = np.arange(1, k_max + 1)[None, :]
    view["time_years"] = (np.arange(k_max) / basis.steps_per_year)[None, :]
    view["discount_factor"] = slot_weights @ chunk.disc_factors[:, : k_max * g : g]
    for f, name in enumerate(CF_FIELDS):
        view[name] = sums[:, :, f]
    return rows
