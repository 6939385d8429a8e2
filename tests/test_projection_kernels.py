"""The numba kernels and the numpy baseline against the pure-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from livecalc.kernels.projection_basis import OutputMode, prepare_chunk
from livecalc.kernels.projection_numpy import project_numpy
from livecalc.kernels.projection_run import project
from livecalc.runtime.buffers import ALL_SCENARIOS, POLICY_DTYPE
from reference_projection import COMPONENTS, project_pair
from strategies import ProjectionCase, fixed_basis, projection_cases

FIELDS = ("npv", *COMPONENTS)
EXT_FIELDS = ("commissions", "premium_annuity")
IMPLEMENTATIONS = {"numba": project, "numpy": project_numpy}


def reference(case: ProjectionCase) -> dict[str, np.ndarray]:
    """Reference results as (policies, scenarios) arrays by field."""
    n, n_scen = len(case.policies), len(case.rates)
    out = {f: np.zeros((n, n_scen)) for f in (*FIELDS, *EXT_FIELDS)}
    for i, pol in enumerate(case.policies):
        months = 0 if case.extension is None else int(case.extension["duration_months"][i])
        count = 1.0 if case.extension is None else float(case.extension["policy_count"][i])
        for s in range(n_scen):
            pv = project_pair(pol, months, count, list(case.rates[s]), case.basis, case.rate0)
            for f in (*FIELDS, *EXT_FIELDS):
                out[f][i, s] = pv[f]
    return out


def assert_close(expected: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> None:
    """Agreement to 1e-12 relative to ``scale`` (components: themselves; npv: gross flows)."""
    tolerance = 1e-12 * np.abs(scale) + 1e-300
    bad = np.abs(expected - actual) > tolerance
    assert not bad.any(), f"expected {expected[bad]} got {actual[bad]}"


def run(
    case: ProjectionCase, mode: OutputMode, separable: bool, impl: str, garbage: bool = False
) -> np.ndarray:
    """One implementation's output records for a case (``garbage``: written into a buffer
    whose every byte is 0xFF, so that a field left unwritten shows)."""
    ids = np.arange(len(case.rates), dtype=np.uint32) + 7
    chunk = prepare_chunk(case.basis, case.policies, case.extension, case.rates, ids, case.rate0)
    out = np.zeros(mode.records(chunk.n_policies, chunk.n_scenarios), dtype=mode.dtype)
    if garbage:
        out.view(np.uint8)[:] = 0xFF
    written = IMPLEMENTATIONS[impl](chunk, case.basis, mode, out, separable)
    assert len(out) == written
    return out


def check_all_modes(case: ProjectionCase, separable: bool, impl: str) -> None:
    """Every output mode of one implementation and path agrees with the reference."""
    ref = reference(case)
    n, n_scen = ref["npv"].shape
    gross = sum(ref[c] for c in COMPONENTS)
    detail = run(case, OutputMode.DETAIL, separable, impl)
    for f in FIELDS:
        assert_close(ref[f], detail[f].reshape(n, n_scen), gross if f == "npv" else ref[f])
    assert np.array_equal(np.tile(np.arange(n_scen) + 7, n), detail["scenario_id"])
    assert np.array_equal(np.repeat(case.policies["policy_id"], n_scen), detail["policy_id"])
    npv = run(case, OutputMode.NPV, separable, impl, garbage=True)
    assert_close(ref["npv"], npv["npv"].reshape(n, n_scen), gross)
    assert np.array_equal(np.tile(np.arange(n_scen) + 7, n), npv["scenario_id"])
    assert np.array_equal(np.repeat(case.policies["policy_id"], n_scen), npv["policy_id"])
    assert not npv["reserved"].any()
    totals = run(case, OutputMode.SCENARIO_TOTALS, separable, impl)
    for f in FIELDS:
        scale = gross.sum(axis=0) if f == "npv" else ref[f].sum(axis=0)
        assert_close(ref[f].sum(axis=0), totals[f], scale)
    counts = 1.0 * n if case.extension is None else case.extension["policy_count"].sum()
    assert np.allclose(counts, totals["policy_count"], rtol=1e-15)
    means = run(case, OutputMode.POLICY_MEANS, separable, impl)
    for f in FIELDS:
        scale = gross.mean(axis=1) if f == "npv" else ref[f].mean(axis=1)
        assert_close(ref[f].mean(axis=1), means[f], scale)
    assert (ALL_SCENARIOS == means["scenario_id"]).all()
    # RESULT_DETAIL_EXT: commissions apart, and the premium annuity (both implementations)
    ext = run(case, OutputMode.DETAIL_EXT, separable, impl)
    for f in (*FIELDS, *EXT_FIELDS):
        want = ref[f] - ref["commissions"] if f == "expenses" else ref[f]
        # expenses without commissions: a difference, so measured against the gross flows
        scale = gross if f in ("npv", "expenses") else want
        assert_close(want, ext[f].reshape(n, n_scen), scale)
    per_payment = case.policies["premium"] / (12.0 if case.basis.premium_monthly else 1.0)
    assert np.array_equal(np.repeat(per_payment, n_scen), ext["premium"])


class TestFullKernel:
    """The full per-scenario kernel (numba), in every mode, against the reference."""

    @settings(max_examples=40, deadline=None)
    @given(projection_cases(monthly=False))
    def test_annual_matches_reference(self, case: ProjectionCase) -> None:
        """Annual steps, any product, timing, rate type, dynamic lapses or not, in-force data."""
        check_all_modes(case, separable=False, impl="numba")

    @settings(max_examples=25, deadline=None)
    @given(projection_cases(monthly=True))
    def test_monthly_matches_reference(self, case: ProjectionCase) -> None:
        """Monthly steps (monthly or annual premiums, part-year durations) match the reference."""
        check_all_modes(case, separable=False, impl="numba")


class TestSeparablePath:
    """The separable path (cash flows once, then discounting), against the reference."""

    @settings(max_examples=40, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_matches_reference(self, case: ProjectionCase) -> None:
        """Without dynamic lapses the separable path matches the reference in every mode."""
        check_all_modes(case, separable=True, impl="numba")

    @settings(max_examples=30, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_equals_full_kernel(self, case: ProjectionCase) -> None:
        """The separable path and the full kernel give the same records."""
        full = run(case, OutputMode.DETAIL, False, "numba")
        sep = run(case, OutputMode.DETAIL, True, "numba")
        gross = sum(full[c] for c in COMPONENTS)
        for f in FIELDS:
            assert_close(full[f], sep[f], gross if f == "npv" else full[f])

    def test_refuses_dynamic_lapses(self) -> None:
        """Asking for the separable path with dynamic lapses is a ValueError."""
        basis = fixed_basis(dynamic_lapse=True)
        rates = np.full((1, 5), 0.03)
        chunk = prepare_chunk(basis, np.zeros(0, POLICY_DTYPE), None, rates, np.zeros(1))
        out = np.zeros(0, OutputMode.NPV.dtype)

        with pytest.raises(ValueError, match="dynamic lapses"):
            project(chunk, basis, OutputMode.NPV, out, True)


class TestNumpyBaseline:
    """The plain-numpy implementation of the same model, against the reference."""

    @settings(max_examples=25, deadline=None)
    @given(projection_cases())
    def test_full_matches_reference(self, case: ProjectionCase) -> None:
        """Its per-scenario loop matches the reference in every mode."""
        check_all_modes(case, separable=False, impl="numpy")

    @settings(max_examples=25, deadline=None)
    @given(projection_cases(dynamic=False))
    def test_separable_matches_reference(self, case: ProjectionCase) -> None:
        """Its matrix-product path matches the reference in every mode."""
        check_all_modes(case, separable=True, impl="numpy")


class TestKernelInvariants:
    """Properties of the model on random portfolios."""

    @settings(max_examples=25, deadline=None)
    @given(projection_cases())
    def test_doubling_sum_assured_doubles_benefits(self, case: ProjectionCase) -> None:
        """Twice the sum assured doubles death, surrender and maturity benefits, not premiums."""
        once = run(case, OutputMode.DETAIL, False, "numba")
        case.policies["sum_assured"] *= 2.0

        twice = run(case, OutputMode.DETAIL, False, "numba")

        for f in ("death_benefits", "surrender_benefits", "maturity_benefits"):
            assert_close(2.0 * once[f], twice[f], 2.0 * once[f])
        assert once["premium_income"].tobytes() == twice["premium_income"].tobytes()
