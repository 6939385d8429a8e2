"""The projection engine: every policy under every scenario to a present value and its parts.

Engine type ``projection`` (the seed's ``cpp_projection``). ``initialize`` parses the config
(``_projection_config.py``; every key is described in docs/engines/projection.md) and loads
the assumption tables once;
``run_chunk`` finds its inputs by dtype (POLICY, optional POLICY_EXT, optional SCENARIO),
projects them with the numba kernels of ``livecalc.kernels.projection`` and writes the output
records straight into the output buffer. ``set_parameters`` changes the four stress
multipliers between runs without reloading anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.tables import MAX_AGE
from livecalc.engines._finite import MAX_MULTIPLIER, check_projection_output
from livecalc.engines._input_checks import projection_data_problems
from livecalc.engines._projection_config import (
    MULTIPLIERS,
    ProjectionConfig,
    build_basis,
    parse_config,
)
from livecalc.engines._projection_premiums import (
    EquivalencePremium,
    PremiumTable,
    RateTablePremium,
    equivalence_premiums,
)
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.kernels.projection import PREMIUM
from livecalc.kernels.projection_audit import audit_cashflows
from livecalc.kernels.projection_basis import (
    ChunkInputs,
    OutputMode,
    ProjectionBasis,
    prepare_chunk,
    steps_left,
)
from livecalc.kernels.projection_discount import (
    Discounting,
    load_step_factors,
    load_yield_curve,
    to_effective,
)
from livecalc.kernels.projection_run import cashflow_slots, project, project_cashflows
from livecalc.kernels.projection_single import single_parts, write_single
from livecalc.runtime.buffers import POLICY_DTYPE, POLICY_EXT_DTYPE, SCENARIO_DTYPE
from livecalc.runtime.engine import (
    DataProblem,
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)

__all__ = [
    "MULTIPLIERS",
    "ProjectionConfig",
    "ProjectionEngine",
    "find_inputs",
    "parse_config",
    "scenario_matrix",
]

_UINT32_MAX = 0xFFFFFFFF


def find_inputs(
    input_buffer: InputBuffer | Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(policies, in-force extension or None, scenarios or None), found by dtype."""
    found: dict[Any, list[np.ndarray]] = {}
    arrays = input_buffer.values() if isinstance(input_buffer, Mapping) else [input_buffer]
    for arr in arrays:
        if isinstance(arr, np.ndarray):
            found.setdefault(arr.dtype, []).append(arr)
    for dtype, what in ((POLICY_DTYPE, "POLICY"), (POLICY_EXT_DTYPE, "POLICY_EXT")):
        if len(found.get(dtype, [])) > 1:
            raise ConfigurationError(f"the projection got several {what} inputs; give one")
    if len(found.get(SCENARIO_DTYPE, [])) > 1:
        raise ConfigurationError("the projection got several SCENARIO inputs; give one")
    policies = found.get(POLICY_DTYPE)
    if not policies:
        raise ConfigurationError(
            "the projection needs a POLICY input (records of POLICY_DTYPE); none was given"
        )
    ext = found.get(POLICY_EXT_DTYPE, [None])[0]
    scen = found.get(SCENARIO_DTYPE, [None])[0]
    return policies[0], ext, scen


def scenario_matrix(scenarios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``rate`` field as a (scenarios, years) view with no copy, and the scenario ids.

    Raises:
        ConfigurationError: the records are not sorted by scenario then year 1..Y, with the
            same years for every scenario, or a rate is not a finite number above -1.
    """
    n = len(scenarios)
    if n == 0:
        raise ConfigurationError("the SCENARIO input is empty")
    ids = scenarios["scenario_id"]
    changes = np.flatnonzero(ids != ids[0])
    n_years = int(changes[0]) if len(changes) else n
    if n % n_years:
        raise ConfigurationError(
            f"SCENARIO: scenario {int(ids[0])} has {n_years} years but there are {n} records, "
            "not a multiple: every scenario needs the same years 1..Y, sorted"
        )
    n_scen = n // n_years
    id_matrix = ids.reshape(n_scen, n_years)
    year_ok = scenarios["year"].reshape(n_scen, n_years) == np.arange(1, n_years + 1)
    id_ok = id_matrix == id_matrix[:, :1]
    bad = ~(year_ok & id_ok)
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ConfigurationError(
            f"SCENARIO row {row + 1} (scenario {int(ids[row])}, year "
            f"{int(scenarios['year'][row])}): records must be sorted by scenario then year "
            f"1..{n_years}, the same years for every scenario"
        )
    first = id_matrix[:, 0].astype(np.int64)
    if n_scen > 1 and (np.diff(first) <= 0).any():
        at = int(np.flatnonzero(np.diff(first) <= 0)[0]) + 1
        raise ConfigurationError(
            f"SCENARIO: scenario {int(first[at])} follows scenario {int(first[at - 1])}; "
            "scenario ids must be unique and ascending"
        )
    rates = scenarios["rate"].reshape(n_scen, n_years)
    bad_rate = ~(np.isfinite(rates) & (rates > -1.0))
    if bad_rate.any():
        s, y = (int(v[0]) for v in np.nonzero(bad_rate))
        raise ConfigurationError(
            f"SCENARIO scenario {int(first[s])} year {y + 1}: rate {float(rates[s, y])!r} must "
            "be a finite number above -1"
        )
    return rates, first.astype(np.uint32)


class ProjectionEngine(ICalcEngine):
    """Projects POLICY records under SCENARIO records (or a deterministic curve)."""

    config_file_keys = (
        "mortality_table",
        "lapse_table",
        "commissions",
        "surrender_values",
        "yield_curve",
        "discounting.file",
        "premium.table",
    )

    def __init__(self) -> None:
        self._cfg: ProjectionConfig | None = None
        self._basis: ProjectionBasis | None = None
        self._curve: np.ndarray | None = None
        self._rate0: float | None = None
        self._premium_table: PremiumTable | None = None
        self._outputs: dict[str, Any] = {}

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Parse the config and load the assumption tables (see the reference page)."""
        cfg = parse_config(config)
        basis = build_basis(cfg, credentials)
        disc = cfg.discounting
        rate0: float | None = None
        if disc.convention == "curve_per_step":
            assert disc.file is not None
            basis.step_factors = load_step_factors(
                disc.file, credentials, "config.discounting.file", disc.compounding,
                basis.steps_per_year,
            )  # fmt: skip
            # Yearly rates for checks and dynamic lapses: one-year forwards of the factors.
            whole = basis.step_factors[:: basis.steps_per_year]
            curve = whole[:-1] / whole[1:] - 1.0 if len(whole) > 1 else np.zeros(1)
        elif cfg.yield_curve is not None:
            curve, rate0 = load_yield_curve(
                cfg.yield_curve, credentials, "config.yield_curve", disc.compounding
            )
            if rate0 is not None and disc.convention != "step_spot":
                raise ConfigurationError(
                    f"config.yield_curve: a year-0 rate is used by step_spot discounting only "
                    f"(the convention is {disc.convention}); drop the year-0 row or set "
                    'config.discounting.convention to "step_spot"'
                )
        else:
            # A flat curve long enough for any projection (to age 120 from age 0).
            flat = float(to_effective(cfg.discount_rate, disc.compounding))
            curve = np.full(MAX_AGE + 1, flat)
            rate0 = flat if disc.convention == "step_spot" else None
        table = None
        if isinstance(cfg.premium, RateTablePremium):
            table = PremiumTable(cfg.premium, credentials, "config.premium.table")
        self._cfg, self._basis = cfg, basis
        self._curve = np.ascontiguousarray(curve, dtype=np.float64).reshape(1, -1)
        self._rate0, self._premium_table = rate0, table
        self._outputs = {}

    def get_info(self) -> EngineInfo:
        """The engine's metadata."""
        return EngineInfo(
            name="LiveCalc Projection Engine",
            version="1.0.0",
            engine_type="projection",
            supports_assumptions_manager=True,
            max_buffer_size=100_000_000 * 64,
        )

    @property
    def is_initialized(self) -> bool:
        """Whether ``initialize`` succeeded and ``dispose`` has not been called since."""
        return self._basis is not None

    def dispose(self) -> None:
        """Forget the config and tables."""
        self._cfg = self._basis = self._curve = None
        self._rate0 = self._premium_table = None
        self._outputs = {}

    def _ready(self) -> tuple[ProjectionConfig, ProjectionBasis]:
        if self._cfg is None or self._basis is None:
            raise ExecutionError("the projection engine is not initialised: call initialize")
        return self._cfg, self._basis

    @property
    def output_mode(self) -> OutputMode:
        """The configured output mode."""
        return OutputMode(self._ready()[0].output)

    def set_parameters(self, params: Mapping[str, float]) -> None:
        """Override stress multipliers (``premium_multiplier`` ...) for the next runs."""
        _, basis = self._ready()
        for name, value in params.items():
            if name not in MULTIPLIERS:
                raise ConfigurationError(
                    f"set_parameters: unknown parameter {name!r}; known: {', '.join(MULTIPLIERS)}"
                )
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and 0 <= value <= MAX_MULTIPLIER):
                raise ConfigurationError(
                    f"set_parameters: {name} = {value!r} must be a number in "
                    f"[0, {MAX_MULTIPLIER:g}]"
                )
        basis.multipliers.update({k: float(v) for k, v in params.items()})

    def get_parameters(self) -> dict[str, float]:
        """The stress multipliers in force (what ``set_parameters`` changes)."""
        return dict(self._ready()[1].multipliers)

    def _scenarios(self, scen: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if scen is None:
            assert self._curve is not None
            return self._curve, np.zeros(1, dtype=np.uint32)
        return scenario_matrix(scen)

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec:
        """The output records for these inputs: one per policy and scenario, per scenario
        (totals) or per policy (means)."""
        policies, ext, scen = find_inputs(inputs)
        n_scen = 1 if scen is None else len(self._scenarios(scen)[1])
        mode = self.output_mode
        if mode is OutputMode.CASHFLOWS:
            slots = 1 if scen is None else 1 + len(self._ready()[0].cashflow_scenarios)
            steps = steps_left(self._ready()[1], policies, ext)
            return OutputSpec(mode.dtype, slots * (int(steps.max()) if len(steps) else 0))
        return OutputSpec(mode.dtype, mode.records(len(policies), n_scen))

    def check_data(self, inputs: Mapping[str, np.ndarray | None]) -> list[DataProblem]:
        """What ``run_chunk`` would refuse mid-run in whole inputs, by input, column and 0-based
        row (``livecalc validate`` and the start of ``run`` call it)."""
        cfg, basis = self._ready()
        assert self._curve is not None
        low = basis.mortality_age_min
        return projection_data_problems(
            inputs,
            output=cfg.output,
            class_factors=len(basis.class_factors),
            steps_per_year=basis.steps_per_year,
            mortality_ages=(low, low + basis.mortality.shape[1] - 1),
            deterministic_years=self._curve.shape[1],
        )

    def get_outputs(self) -> Mapping[str, Any]:
        """``{"cashflows": {policy_id: {column: [values by period]}}, ...}`` when auditing."""
        return dict(self._outputs)

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Project the chunk's policies and write the output records from index 0."""
        start = time.perf_counter()
        cfg, basis = self._ready()
        policies, ext, scen = find_inputs(input_buffer)
        rates, scenario_ids = self._scenarios(scen)
        mode = self.output_mode
        if mode is OutputMode.NPV and len(policies):
            too_big = policies["policy_id"] > _UINT32_MAX
            if too_big.any():
                i = int(np.flatnonzero(too_big)[0])
                raise ConfigurationError(
                    f"policy {int(policies['policy_id'][i])} (row {i + 1}): RESULT records hold "
                    '32-bit policy ids; renumber the policies or use "output": "detail"'
                )
        deterministic = scen is None
        if not deterministic and basis.discounting is Discounting.CURVE_PER_STEP:
            raise ConfigurationError(
                "config.discounting.convention: curve_per_step discounts the deterministic run "
                "only; scenarios keep their money-market discounting (drop the SCENARIO input "
                'or use "flat_forward")'
            )
        rate0 = self._rate0 if deterministic else None
        chunk = prepare_chunk(basis, policies, ext, rates, scenario_ids, rate0)
        # One scenario without dynamic lapses: one pass per policy, premiums included.
        single = (
            cfg.method == "auto"
            and chunk.n_scenarios == 1
            and not basis.dynamic_lapse
            and mode is not OutputMode.CASHFLOWS
            and cfg.audit is None
        )
        parts = single_parts(chunk, basis) if single and chunk.n_policies else None
        self._set_premiums(cfg, basis, chunk, policies, ext, deterministic, parts)
        if mode is OutputMode.CASHFLOWS:
            return self._run_cashflows(cfg, basis, chunk, deterministic, output_buffer, start)
        rows = mode.records(chunk.n_policies, chunk.n_scenarios)
        if rows == 0:
            return ExecutionResult(execution_time_ms=(time.perf_counter() - start) * 1e3)
        if output_buffer is None or output_buffer.dtype != mode.dtype or len(output_buffer) < rows:
            got = "none" if output_buffer is None else f"{len(output_buffer)} records"
            raise ConfigurationError(
                f"the projection ({cfg.output!r} output) needs an output buffer of {rows} "
                f"records of its record dtype (see output_spec); got {got}"
            )
        # auto: separable unless dynamic lapses, or one scenario (then no grid arrays at all)
        separable = cfg.method == "separable" or (
            cfg.method == "auto" and not basis.dynamic_lapse and chunk.n_scenarios > 1
        )
        try:
            if parts is not None:
                # Overflow to inf is found by the finite check below, which names the record.
                with np.errstate(over="ignore", invalid="ignore"):
                    written = write_single(chunk, basis, mode, output_buffer, parts)
            else:
                written = project(chunk, basis, mode, output_buffer, separable)
        except ValueError as exc:
            raise ExecutionError(f"projection kernel failed: {exc}") from exc
        check_projection_output(output_buffer[:written], cfg, basis.multipliers)
        self._outputs["method"] = (
            "single" if parts is not None else "separable" if separable else "full"
        )
        if cfg.audit is not None:
            self._audit(cfg, basis, chunk)
        warnings = []
        if chunk.part_year_durations:
            warnings.append(
                f"policies in force for part of a policy year: {chunk.part_year_durations}; "
                'annual steps count completed years (use "time_step": "monthly" for exact '
                "durations)"
            )
        seconds = time.perf_counter() - start
        return ExecutionResult(
            success=True,
            execution_time_ms=seconds * 1e3,
            rows_processed=written,
            bytes_written=written * mode.dtype.itemsize,
            warnings=warnings,
        )

    def _set_premiums(
        self,
        cfg: ProjectionConfig,
        basis: ProjectionBasis,
        chunk: ChunkInputs,
        policies: np.ndarray,
        ext: np.ndarray | None,
        deterministic: bool,
        parts: np.ndarray | None = None,
    ) -> None:
        """Replace the chunk's premiums per payment when the config derives them."""
        if isinstance(cfg.premium, EquivalencePremium):
            det = chunk
            if not deterministic:
                parts = None
                # Priced on the run's deterministic curve, whatever the scenarios.
                assert self._curve is not None
                det = prepare_chunk(
                    basis, policies, ext, self._curve, np.zeros(1, np.uint32), self._rate0
                )
            chunk.pol_float[:, PREMIUM] = equivalence_premiums(cfg.premium, basis, det, parts)
        elif self._premium_table is not None:
            per_year = 12 if basis.premium_monthly else 1
            chunk.pol_float[:, PREMIUM] = self._premium_table.premiums(policies, per_year)

    def _run_cashflows(
        self,
        cfg: ProjectionConfig,
        basis: ProjectionBasis,
        chunk: ChunkInputs,
        deterministic: bool,
        output_buffer: np.ndarray | None,
        start: float,
    ) -> ExecutionResult:
        """The portfolio's cash flows by period (CASHFLOW records) for this chunk."""
        try:
            slot_ids, weights = cashflow_slots(
                chunk.scenario_ids, cfg.cashflow_scenarios, deterministic
            )
        except ValueError as exc:
            raise ConfigurationError(f"config.cashflow_scenarios: {exc}") from None
        rows = len(slot_ids) * chunk.n_steps_max
        if rows and (
            output_buffer is None
            or output_buffer.dtype != OutputMode.CASHFLOWS.dtype
            or len(output_buffer) < rows
        ):
            got = "none" if output_buffer is None else f"{len(output_buffer)} records"
            raise ConfigurationError(
                f"the projection ('cashflows' output) needs an output buffer of {rows} CASHFLOW "
                f"records (see output_spec); got {got}"
            )
        written = 0
        try:
            if output_buffer is not None:
                written = project_cashflows(chunk, basis, output_buffer, slot_ids, weights)
        except ValueError as exc:
            raise ExecutionError(f"projection kernel failed: {exc}") from exc
        if output_buffer is not None:
            check_projection_output(output_buffer[:written], cfg, basis.multipliers)
        self._outputs["method"] = "full"
        seconds = time.perf_counter() - start
        return ExecutionResult(
            success=True,
            execution_time_ms=seconds * 1e3,
            rows_processed=written,
            bytes_written=written * OutputMode.CASHFLOWS.dtype.itemsize,
        )

    def _audit(self, cfg: ProjectionConfig, basis: ProjectionBasis, chunk: ChunkInputs) -> None:
        """Add the audited policies found in this chunk to ``get_outputs()["cashflows"]``."""
        assert cfg.audit is not None
        where = np.flatnonzero(chunk.scenario_ids == cfg.audit.scenario_id)
        if not len(where):
            raise ConfigurationError(
                f"config.audit.scenario_id: scenario {cfg.audit.scenario_id} is not in the "
                f"scenarios (ids {int(chunk.scenario_ids[0])}..{int(chunk.scenario_ids[-1])})"
            )
        flows = self._outputs.setdefault("cashflows", {})
        self._outputs["audit_scenario_id"] = cfg.audit.scenario_id
        index = {int(pid): i for i, pid in enumerate(chunk.policy_ids)}
        for pid in cfg.audit.policy_ids:
            if pid in index:
                flows[pid] = audit_cashflows(chunk, basis, index[pid], int(where[0]))
