"""ESGEngine: the economic scenario generator, engine type ``esg`` (the seed's ``python_esg``).

It writes SCENARIO records (``scenario_id = outer_id * 1000 + inner_id``, years 1..years,
sorted) straight into the output buffer with the numba kernels of ``livecalc.kernels.esg``, and
publishes what the scenarios are (model, parameters, seed, compounding, initial curve) through
``get_outputs()["esg_metadata"]``, which the Parquet writer stores under ``livecalc.esg`` and
``livecalc.engines.esg_check`` reads back. ``docs/engines/esg.md`` describes the models and
the config;
``livecalc.engines._esg_config`` parses the config (``parse_esg_config`` is re-exported here).

Example config (every other key has a default): ``{"model": "hull_white", "outer": 10,
"inner": 100, "years": 50, "seed": 42}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.engines._esg_config import ESGSettings, parse_esg_config
from livecalc.engines._finite import check_finite
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.kernels.esg import (
    ModelParams,
    SimpleParams,
    cir_params,
    generate,
    hull_white_params,
    vasicek_params,
)
from livecalc.kernels.esg_models import cir_discount_factors, vasicek_discount_factors
from livecalc.runtime.buffers import MAX_RECORDS, SCENARIO_DTYPE, BufferType
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)

__all__ = [
    "COMPOUNDING",
    "METADATA_KEY",
    "ESGEngine",
    "ESGSettings",
    "initial_discount_factors",
    "model_params",
    "parse_esg_config",
]

METADATA_KEY = "livecalc.esg"
"""Key of the ESG metadata (JSON) in a scenario Parquet file's key-value metadata."""

COMPOUNDING = "annual"
RATE_DEFINITION = (
    "rate_y = exp(integral of the short rate over (y-1, y]) - 1, the realised one-year "
    "money-market return; discount factor DF(T) = prod_{y<=T} 1/(1 + rate_y)"
)


def model_params(
    model: str,
    parameters: Mapping[str, float],
    years: int,
    branching_year: int,
    market_price_of_risk: float,
    discount_factors: np.ndarray | None = None,
) -> ModelParams:
    """The kernel parameters of a model (``discount_factors``: ``P(0, t)``, t = 0..years)."""
    p, lam = parameters, market_price_of_risk
    if model == "hull_white":
        if discount_factors is None:
            raise ValueError("hull_white needs the curve's discount factors")
        return hull_white_params(p["a"], p["sigma"], discount_factors, branching_year, lam)
    if model == "vasicek":
        return vasicek_params(p["a"], p["b"], p["sigma"], p["r0"], years, branching_year, lam)
    if model == "cir":
        substeps = int(p["substeps"])
        return cir_params(p["a"], p["b"], p["sigma"], p["r0"], years, substeps, branching_year, lam)
    return SimpleParams(p["initial_rate"], p["drift"], p["volatility"], p["floor"], p["cap"])


def initial_discount_factors(settings: ESGSettings) -> np.ndarray | None:
    """``P(0, t)`` for t = 0..years that the scenarios reproduce on average; None for simple."""
    years, p = settings.layout.years, settings.parameters
    times = np.arange(years + 1, dtype=np.float64)
    if settings.curve is not None:
        return settings.curve.yearly_discount_factors(years)
    if settings.model == "vasicek":
        return vasicek_discount_factors(p["a"], p["b"], p["sigma"], p["r0"], times)
    if settings.model == "cir":
        return cir_discount_factors(p["a"], p["b"], p["sigma"], p["r0"], times)
    return None


class ESGEngine(ICalcEngine):
    """Economic scenario generator: Hull-White, Vasicek, CIR or the original simple model."""

    config_file_keys = ("curve.file",)

    BLOCK_RECORDS = 1 << 22
    """Outer paths are generated in blocks of about this many records (one kernel call each)."""

    def __init__(self) -> None:
        self._settings: ESGSettings | None = None
        self._params: ModelParams | None = None
        self._metadata: dict[str, Any] = {}

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Validate ``config`` and prepare the model; raises ConfigurationError naming keys."""
        settings = parse_esg_config(config)
        try:
            dfs = initial_discount_factors(settings)
        except OverflowError:
            dfs = None
        if settings.model != "simple" and (dfs is None or not np.isfinite(np.log(dfs)).all()):
            p = settings.parameters
            raise ConfigurationError(
                f"config.sigma: the {settings.model} model's bond prices overflow within "
                f"{settings.layout.years} years at a = {p['a']!r}, sigma = {p['sigma']!r}; "
                "lower sigma or years, or raise a"
            )
        layout = settings.layout
        self._params = model_params(
            settings.model,
            settings.parameters,
            layout.years,
            layout.branching_year,
            settings.market_price_of_risk,
            dfs,
        )
        self._settings = settings
        self._metadata = _metadata(settings, dfs)

    def get_info(self) -> EngineInfo:
        """The engine's metadata."""
        return EngineInfo(
            name="LiveCalc ESG",
            version="1.0.0",
            engine_type="esg",
            supports_assumptions_manager=False,
            max_buffer_size=MAX_RECORDS[BufferType.SCENARIO] * SCENARIO_DTYPE.itemsize,
        )

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """SCENARIO records for the whole set: outer x inner x years."""
        return OutputSpec(SCENARIO_DTYPE, self._require().records)

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Write every scenario into ``output_buffer`` (the ESG reads no input)."""
        start = time.perf_counter()
        settings = self._require()
        if output_buffer is None or output_buffer.dtype != SCENARIO_DTYPE:
            raise ExecutionError(
                "the ESG writes SCENARIO records: pass an output buffer of SCENARIO_DTYPE"
            )
        if len(output_buffer) < settings.records:
            raise ExecutionError(
                f"output buffer holds {len(output_buffer):,} records; the ESG writes "
                f"{settings.records:,} (outer x inner x years): allocate output_spec().records"
            )
        per_outer = settings.layout.inner * settings.layout.years
        block = max(1, self.BLOCK_RECORDS // per_outer)
        for first in range(0, settings.outer, block):
            last = min(first + block, settings.outer)
            self.generate(output_buffer[first * per_outer : last * per_outer], first, last)
        return ExecutionResult(
            success=True,
            execution_time_ms=(time.perf_counter() - start) * 1e3,
            rows_processed=settings.records,
            bytes_written=settings.records * SCENARIO_DTYPE.itemsize,
        )

    def generate(self, out: np.ndarray, outer_start: int, outer_stop: int) -> int:
        """Write outer paths ``outer_start .. outer_stop - 1`` into ``out``; return the rows.

        Each outer path draws from its own random streams, so any split into calls gives the
        same records as one call: a set too large for memory can be streamed this way.
        """
        settings = self._require()
        if not 0 <= outer_start <= outer_stop <= settings.outer:
            raise ConfigurationError(
                f"outer range {outer_start}..{outer_stop} lies outside 0..{settings.outer}"
            )
        assert self._params is not None
        try:
            rows = generate(out, settings.layout, self._params, outer_start, outer_stop)
        except ValueError as exc:
            raise ExecutionError(f"scenario generation failed: {exc}") from exc
        in_play = {"model": settings.model, **settings.parameters}
        in_play["market_price_of_risk"] = settings.market_price_of_risk
        check_finite(
            out[:rows],
            "esg",
            in_play,
            "The model's paths overflowed: lower sigma or years (or raise a).",
        )
        return rows

    def get_outputs(self) -> Mapping[str, Any]:
        """``{"esg_metadata": {...}}``: model, parameters, seed, curve (JSON-able).

        The metadata depends on the config only, so it is there from ``initialize`` on: a
        runner may ask for it before the run, to put it in a streamed file's header.
        """
        return {"esg_metadata": self._metadata} if self._settings is not None else {}

    @property
    def metadata(self) -> dict[str, Any]:
        """The ESG metadata of the initialised config (what ``get_outputs`` reports)."""
        self._require()
        return self._metadata

    def dispose(self) -> None:
        """Forget the config; ``initialize`` is needed again."""
        self._settings = None
        self._params = None
        self._metadata = {}

    @property
    def is_initialized(self) -> bool:
        """Whether ``initialize`` succeeded and ``dispose`` has not been called since."""
        return self._settings is not None

    def _require(self) -> ESGSettings:
        if self._settings is None:
            raise ExecutionError("the ESG engine is not initialised: call initialize(config)")
        return self._settings


def _metadata(settings: ESGSettings, dfs: np.ndarray | None) -> dict[str, Any]:
    """What the scenarios are, as plain JSON values (stored as ``livecalc.esg`` in Parquet)."""
    layout = settings.layout
    curve = None
    if dfs is not None:
        curve = {
            "maturities": [float(t) for t in range(1, layout.years + 1)],
            "discount_factors": [float(p) for p in dfs[1:]],
            "source": "config.curve" if settings.curve is not None else "model closed form",
        }
    return {
        "format": 1,
        "model": settings.model,
        "parameters": dict(settings.parameters),
        "market_price_of_risk": settings.market_price_of_risk,
        "seed": settings.seed,
        "outer": settings.outer,
        "inner": layout.inner,
        "years": layout.years,
        "branching_year": layout.branching_year,
        "antithetic": layout.antithetic,
        "compounding": COMPOUNDING,
        "rate_definition": RATE_DEFINITION,
        "scenario_id": "outer_id * 1000 + inner_id",
        "random_numbers": "Philox4x32-10 by counter (year, slot, outer_id, draw); key from "
        "numpy SeedSequence(seed)",
        "curve": curve,
    }
