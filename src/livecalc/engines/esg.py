"""ESGEngine: the economic scenario generator, engine type ``esg`` (the seed's ``python_esg``).

It writes SCENARIO records (``scenario_id = outer_id * 1000 + inner_id``, years 1..years,
sorted) straight into the output buffer with the numba kernels of ``livecalc.kernels.esg``, and
publishes what the scenarios are (model, parameters, seed, compounding, initial curve) through
``get_outputs()["esg_metadata"]``, which the Parquet writer stores under ``livecalc.esg`` and
``livecalc.esg_check`` reads back. ``docs/engines/esg.md`` describes the models and the config.

Example config (every other key has a default): ``{"model": "hull_white", "outer": 10,
"inner": 100, "years": 50, "seed": 42}``.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.buffers import MAX_RECORDS, SCENARIO_DTYPE, BufferType
from livecalc.credentials import AMCredentials
from livecalc.curves import ZeroCurve
from livecalc.engine import EngineInfo, ExecutionResult, ICalcEngine, InputBuffer, OutputSpec
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.kernels.esg import (
    MAX_INNER,
    ModelParams,
    PathLayout,
    SimpleParams,
    cir_params,
    generate,
    hull_white_params,
    vasicek_params,
)
from livecalc.kernels.esg_models import cir_discount_factors, vasicek_discount_factors
from livecalc.kernels.esg_rng import seed_key

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

_COMMON: dict[str, Any] = {
    "model": "hull_white",
    "outer": 1,
    "inner": 1000,
    "years": 50,
    "seed": 0,
    "antithetic": False,
    "branching_year": 0,
    "market_price_of_risk": 0.0,
}
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "hull_white": {"a": 0.1, "sigma": 0.01, "curve": 0.03},
    "vasicek": {"a": 0.1, "b": 0.03, "sigma": 0.01, "r0": 0.03},
    "cir": {"a": 0.1, "b": 0.03, "sigma": 0.05, "r0": 0.03, "substeps": 4},
    "simple": {"initial_rate": 0.03, "drift": 0.0, "volatility": 0.01, "floor": 0.0, "cap": 0.2},
}
_MAX_OUTER = (2**32 - 1 - (MAX_INNER - 1)) // 1000  # scenario_id must fit uint32


@dataclass(frozen=True)
class ESGSettings:
    """A validated ESG config: layout, the model's parameters and, when it has one, its curve."""

    model: str
    outer: int
    seed: int
    layout: PathLayout
    market_price_of_risk: float
    parameters: dict[str, float]
    curve: ZeroCurve | None

    @property
    def records(self) -> int:
        """SCENARIO records of the whole set: outer x inner x years."""
        return self.outer * self.layout.inner * self.layout.years


class _Reader:
    """Reads typed values from a raw config, collecting every problem instead of stopping."""

    def __init__(self, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self.config = config
        self.defaults = defaults
        self.problems: list[str] = []

    def _raw(self, key: str) -> Any:
        return self.config.get(key, self.defaults[key])

    def number(self, key: str, check: Callable[[float], bool], rule: str) -> float:
        value = self._raw(key)
        try:
            if isinstance(value, bool):
                raise TypeError
            result = float(value)
        except (TypeError, ValueError):
            self.problems.append(f"config.{key}: {value!r} is not a number; give {rule}")
            return float(self.defaults[key])
        if not (np.isfinite(result) and check(result)):
            self.problems.append(f"config.{key}: {value!r} is out of range; give {rule}")
            return float(self.defaults[key])
        return result

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._raw(key)
        rule = f"a whole number from {low} to {high}"
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            result = int(value)
        except (TypeError, ValueError):
            self.problems.append(f"config.{key}: {value!r} is not a whole number; give {rule}")
            return int(self.defaults[key])
        if not low <= result <= high:
            self.problems.append(f"config.{key}: {result} is out of range; give {rule}")
            return int(self.defaults[key])
        return result

    def flag(self, key: str) -> bool:
        value = self._raw(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"  # the seed passed every config value as a string
        self.problems.append(f"config.{key}: {value!r} is not true or false")
        return bool(self.defaults[key])


def parse_esg_config(config: Mapping[str, Any], base_dir: Path | None = None) -> ESGSettings:
    """Validate an ESG config; raise one ConfigurationError listing every problem.

    Args:
        base_dir: folder that a relative ``curve.file`` is resolved against (default: the
            working directory).
    """
    model = str(config.get("model", _COMMON["model"]))
    if model not in _MODEL_DEFAULTS:
        raise ConfigurationError(
            f"config.model: {model!r} is not a model; use one of {sorted(_MODEL_DEFAULTS)}"
        )
    defaults = {**_COMMON, **_MODEL_DEFAULTS[model]}
    problems = _unknown_keys(config, model, defaults)
    read = _Reader(config, defaults)
    outer = read.integer("outer", 1, _MAX_OUTER)
    inner = read.integer("inner", 1, MAX_INNER)
    if read.problems and "config.inner" in read.problems[-1]:
        read.problems[-1] += (
            f" (scenario_id = outer_id * 1000 + inner_id leaves room for {MAX_INNER} inner "
            "paths; raise outer instead)"
        )
    years = read.integer("years", 1, 1000)
    seed = read.integer("seed", 0, 2**63 - 1)
    antithetic = read.flag("antithetic")
    branching = read.integer("branching_year", 0, years)
    lam = read.number("market_price_of_risk", lambda v: True, "a number")
    params = _model_parameters(read, model)
    if antithetic and inner % 2:
        read.problems.append(f"config.inner: {inner} is odd; antithetic pairs need an even count")
    if antithetic and model == "cir":
        read.problems.append(
            "config.antithetic: CIR's non-central chi-square draws have no mirror image; "
            "set antithetic to false"
        )
    if model == "simple" and lam != 0.0:
        read.problems.append(
            "config.market_price_of_risk: the simple model has no risk-neutral dynamics; "
            "remove it or set it to 0"
        )
    if model == "cir" and params["a"] - lam * params["sigma"] <= 0.0:
        read.problems.append(
            "config.market_price_of_risk: a - market_price_of_risk * sigma must stay > 0 for "
            "a mean-reverting real-world CIR; lower it"
        )
    total = outer * inner * years
    limit = MAX_RECORDS[BufferType.SCENARIO]
    if total > limit:
        read.problems.append(
            f"config.outer: outer x inner x years = {total:,} records exceeds the SCENARIO "
            f"limit of {limit:,}; lower outer, inner or years"
        )
    curve = None
    if model == "hull_white":
        try:
            curve = _curve(config.get("curve", defaults["curve"]), base_dir)
        except ConfigurationError as exc:
            read.problems.append(f"config.{exc}")
        except (TypeError, ValueError) as exc:
            read.problems.append(f"config.curve: {exc}; give numbers")
    problems += read.problems
    if problems:
        if len(problems) == 1:
            raise ConfigurationError(problems[0])
        # Same layout as livecalc.config's messages: a count, then one problem per line.
        listed = "\n".join(f"  {p}" for p in problems)
        raise ConfigurationError(f"{len(problems)} problems in the ESG config:\n{listed}")
    layout = PathLayout(inner, years, branching, antithetic, seed_key(seed))
    return ESGSettings(model, outer, seed, layout, lam, params, curve)


def _unknown_keys(config: Mapping[str, Any], model: str, allowed: Mapping[str, Any]) -> list[str]:
    problems = []
    every_key = set(_COMMON).union(*(set(d) for d in _MODEL_DEFAULTS.values()))
    for key in config:
        if key in allowed:
            continue
        if key in every_key:
            problems.append(f"config.{key}: not a parameter of model {model!r}; remove it")
            continue
        near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        problems.append(f"config.{key}: unknown key{hint}")
    return problems


def _model_parameters(read: _Reader, model: str) -> dict[str, float]:
    positive, any_number = (lambda v: v > 0.0), (lambda v: True)
    if model == "simple":
        params = {
            "initial_rate": read.number("initial_rate", lambda v: v > -1.0, "a rate > -1"),
            "drift": read.number("drift", any_number, "a number"),
            "volatility": read.number("volatility", lambda v: v >= 0.0, "a number >= 0"),
            "floor": read.number("floor", lambda v: v > -1.0, "a rate > -1"),
            "cap": read.number("cap", lambda v: v > -1.0, "a rate > -1"),
        }
        if not params["floor"] <= params["initial_rate"] <= params["cap"]:
            read.problems.append(
                "config.initial_rate: must lie within floor..cap "
                f"({params['floor']}..{params['cap']}); adjust floor, cap or initial_rate"
            )
        return params
    params = {
        "a": read.number("a", positive, "a mean-reversion speed > 0"),
        "sigma": read.number("sigma", lambda v: v >= 0.0, "a volatility >= 0"),
    }
    if model in ("vasicek", "cir"):
        params["b"] = read.number("b", positive if model == "cir" else any_number, "a level")
        params["r0"] = read.number(
            "r0", (lambda v: v >= 0.0) if model == "cir" else any_number, "an initial rate"
        )
    if model == "cir":
        if params["sigma"] == 0.0:
            read.problems.append("config.sigma: CIR needs sigma > 0")
        params["substeps"] = float(read.integer("substeps", 1, 365))
    return params


def _curve(value: Any, base_dir: Path | None) -> ZeroCurve:
    """The initial curve from ``curve``: a flat rate, inline nodes, or a file."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return ZeroCurve.flat(float(value))
        except ValueError:
            raise ConfigurationError(f"curve: {value!r} is not a rate") from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"curve: {value!r} is not a curve; give a flat rate (0.03), "
            '{"file": "curve.csv", "kind": "spot"} or {"maturities": [...], "rates": [...]}'
        )
    compounding = value.get("compounding", "annual")
    if compounding not in ("annual", "continuous"):
        raise ConfigurationError(f"curve.compounding: {compounding!r}: use annual or continuous")
    if "rate" in value:
        return ZeroCurve.flat(float(value["rate"]))
    if "file" in value:
        path = Path(str(value["file"]))
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        kind = value.get("kind", "spot")
        return ZeroCurve.from_file(path, kind, compounding)
    if "maturities" in value and "rates" in value:
        return ZeroCurve.from_spot_rates(value["maturities"], value["rates"], compounding)
    if "maturities" in value and "discount_factors" in value:
        mats, dfs = value["maturities"], value["discount_factors"]
        return ZeroCurve(tuple(map(float, mats)), tuple(map(float, dfs)))
    raise ConfigurationError(
        f"curve: keys {sorted(value)} name no curve; give 'rate', 'file' (with 'kind' spot or "
        "discount), or 'maturities' with 'rates' or 'discount_factors'"
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
        dfs = initial_discount_factors(settings)
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
            return generate(out, settings.layout, self._params, outer_start, outer_stop)
        except ValueError as exc:
            raise ExecutionError(f"scenario generation failed: {exc}") from exc

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
