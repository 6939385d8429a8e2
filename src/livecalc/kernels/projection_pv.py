"""Numba kernels that write policy x scenario records from the separable path's grid flows.

``separable_pv_kernel`` discounts each policy's expected cash flows on the time grid (from
``separable_flows_kernel`` in ``projection.py``) under every scenario and writes the values and
the ids in one pass; ``ids_kernel`` writes only the ids (for the full kernel's records). Both
are policy-major: record ``i * n_scenarios + s``. Typed wrappers: ``projection_run.py``.

They call no other jitted function, so numba's cache (keyed on this file) stays right; they
read only ``NSTEPS`` of ``projection.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from livecalc.kernels.projection import NSTEPS

__all__ = ["ids_kernel", "separable_pv_kernel"]

Array = np.ndarray[Any, Any]

# Typed as a plain decorator, as in projection.py (numba's hints read a Dispatcher).
_njit: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]] = numba.njit


@_njit(parallel=True, cache=True, nogil=True)
def separable_pv_kernel(
    flows: Array,
    pol_int: Array,
    df_t: Array,
    g: int,
    n_blocks: int,
    out_npv: Array,
    out_prem: Array,
    out_death: Array,
    out_surr: Array,
    out_exp: Array,
    out_mat: Array,
    policy_ids: Array,
    scenario_ids: Array,
    out_sid: Array,
    out_pid: Array,
    out_res: Array,
) -> None:
    """Present values of each policy's grid cash flows under every scenario, into the records.

    Only grid points up to the policy's last step carry flows, so the dot products stop
    there: shorter policies cost less, which a dense matrix product would ignore.
    """
    n_comp, n_pol, _ = flows.shape
    n_scen = df_t.shape[1]
    for b in numba.prange(n_blocks):
        acc = np.empty((n_comp, n_scen))
        nz = np.empty(flows.shape[2], dtype=np.int64)
        for i in range(b * n_pol // n_blocks, (b + 1) * n_pol // n_blocks):
            acc[:] = 0.0
            for c in range(n_comp):
                # The grid points that carry a flow, then four of them per pass over the
                # scenarios: one load and store of each accumulator per four multiply-adds
                # instead of one per multiply-add (the loop was bound by those, not by the
                # arithmetic).
                fc = flows[c, i]
                m = 0
                for j in range(pol_int[i, NSTEPS] * g + 1):
                    if fc[j] != 0.0:
                        nz[m] = j
                        m += 1
                a = acc[c]
                k = 0
                while k + 4 <= m:
                    j0, j1, j2, j3 = nz[k], nz[k + 1], nz[k + 2], nz[k + 3]
                    f0, f1, f2, f3 = fc[j0], fc[j1], fc[j2], fc[j3]
                    r0, r1, r2, r3 = df_t[j0], df_t[j1], df_t[j2], df_t[j3]
                    for s in range(n_scen):
                        a[s] += (f0 * r0[s] + f1 * r1[s]) + (f2 * r2[s] + f3 * r3[s])
                    k += 4
                while k < m:
                    f0, r0 = fc[nz[k]], df_t[nz[k]]
                    for s in range(n_scen):
                        a[s] += f0 * r0[s]
                    k += 1
            base = i * n_scen
            pid = policy_ids[i]
            # The ids go in the same pass over the records as the values (one write of the
            # output buffer, which is the largest cost here).
            for s in range(n_scen):
                out_sid[base + s] = scenario_ids[s]
                out_pid[base + s] = pid
                out_res[base + s] = 0
            if n_comp == 1:
                for s in range(n_scen):
                    out_npv[base + s] = acc[0, s]
            else:
                for s in range(n_scen):
                    r = base + s
                    out_npv[r] = acc[0, s] - acc[1, s] - acc[2, s] - acc[3, s] - acc[4, s]
                    out_prem[r] = acc[0, s]
                    out_death[r] = acc[1, s]
                    out_surr[r] = acc[2, s]
                    out_exp[r] = acc[3, s]
                    out_mat[r] = acc[4, s]


@_njit(parallel=True, cache=True, nogil=True)
def ids_kernel(
    policy_ids: Array, scenario_ids: Array, out_sid: Array, out_pid: Array, out_res: Array
) -> None:
    """Scenario and policy ids of policy x scenario records, ``reserved`` zeroed."""
    n_scen = scenario_ids.shape[0]
    for i in numba.prange(policy_ids.shape[0]):
        pid = policy_ids[i]
        for s in range(n_scen):
            r = i * n_scen + s
            out_sid[r] = scenario_ids[s]
            out_pid[r] = pid
            out_res[r] = 0
