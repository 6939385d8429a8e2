"""The ESG config: its defaults, and parsing into validated ESGSettings.

``parse_esg_config`` reads the raw config of an ``esg`` engine once, collects every problem
(unknown keys, out-of-range numbers, an unusable curve, a set past the SCENARIO limit) and
raises one ConfigurationError naming each key and its fix. ``livecalc.engines.esg``
re-exports ``ESGSettings`` and ``parse_esg_config``; ``docs/engines/esg.md`` lists the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.assumptions.curves import ZeroCurve
from livecalc.engines._config_keys import unknown_key
from livecalc.errors import ConfigurationError
from livecalc.kernels.esg import MAX_INNER, PathLayout
from livecalc.kernels.esg_rng import seed_key
from livecalc.runtime.buffers import MAX_RECORDS, BufferType

__all__ = ["ESGSettings", "parse_esg_config"]

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
    lam = read.number("market_price_of_risk", lambda v: abs(v) <= 100.0, "a number in [-100, 100]")
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
        # Same layout as livecalc.pipeline.config's messages: a count, then one problem per line.
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
        problems.append("config." + unknown_key(str(key), str(key), sorted(allowed)))
    return problems


def _model_parameters(read: _Reader, model: str) -> dict[str, float]:
    # Sane ranges: rates of -100%..100% a year, volatilities up to 100% a year. Beyond them the
    # paths overflow to infinite or NaN rates within a few years, which is no scenario set.
    def rate(v: float) -> bool:
        return -1.0 < v <= 1.0

    if model == "simple":
        params = {
            "initial_rate": read.number("initial_rate", rate, "a rate in (-1, 1]"),
            "drift": read.number("drift", lambda v: abs(v) <= 1.0, "a number in [-1, 1]"),
            "volatility": read.number(
                "volatility", lambda v: 0.0 <= v <= 1.0, "a volatility in [0, 1]"
            ),
            "floor": read.number("floor", rate, "a rate in (-1, 1]"),
            "cap": read.number("cap", rate, "a rate in (-1, 1]"),
        }
        if params["floor"] > params["cap"]:
            read.problems.append(
                f"config.floor: {params['floor']} is above config.cap {params['cap']}; "
                "give floor <= cap"
            )
        elif not params["floor"] <= params["initial_rate"] <= params["cap"]:
            read.problems.append(
                "config.initial_rate: must lie within floor..cap "
                f"({params['floor']}..{params['cap']}); adjust floor, cap or initial_rate"
            )
        return params
    params = {
        "a": read.number("a", lambda v: 0.0 < v <= 100.0, "a mean-reversion speed in (0, 100]"),
        "sigma": read.number("sigma", lambda v: 0.0 <= v <= 1.0, "a volatility in [0, 1]"),
    }
    if model in ("vasicek", "cir"):
        params["b"] = read.number(
            "b",
            (lambda v: 0.0 < v <= 1.0) if model == "cir" else rate,
            "a level in (0, 1]" if model == "cir" else "a level in (-1, 1]",
        )
        params["r0"] = read.number(
            "r0",
            (lambda v: 0.0 <= v <= 1.0) if model == "cir" else rate,
            "an initial rate in [0, 1]" if model == "cir" else "an initial rate in (-1, 1]",
        )
    if model == "cir":
        if params["sigma"] == 0.0:
            read.problems.append("config.sigma: CIR needs sigma > 0")
        params["substeps"] = float(read.integer("substeps", 1, 365))
    return params


_CURVE_KEYS = ("rate", "file", "kind", "compounding", "maturities", "rates", "discount_factors")
"""The keys of an object ``curve``; any other key is refused, so a misspelling is not ignored."""


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
    unknown = [
        unknown_key(f"curve.{key}", str(key), _CURVE_KEYS)
        for key in value
        if key not in _CURVE_KEYS
    ]
    if unknown:
        raise ConfigurationError("; config.".join(unknown))
    compounding = value.get("compounding", "annual")
    if compounding not in ("annual", "continuous"):
        raise ConfigurationError(f"curve.compounding: {compounding!r}: use annual or continuous")
    sources = [k for k in ("rate", "file", "maturities") if k in value]
    if len(sources) > 1:
        raise ConfigurationError(
            f"curve: {' and '.join(repr(k) for k in sources)} both given; give one of 'rate', "
            "'file' or 'maturities'"
        )
    if "kind" in value and "file" not in value:
        raise ConfigurationError(
            "curve.kind: applies to a curve 'file'; inline nodes say their kind by giving "
            "'rates' or 'discount_factors'"
        )
    if "rate" in value:
        rate = value["rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float | str):
            raise ConfigurationError(f"curve.rate: {rate!r} is not a rate; give a number")
        return ZeroCurve.flat(float(rate), compounding)
    if "file" in value:
        path = Path(str(value["file"]))
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        kind = value.get("kind", "spot")
        return ZeroCurve.from_file(path, kind, compounding)
    if "maturities" in value and "rates" in value and "discount_factors" in value:
        raise ConfigurationError(
            "curve: 'rates' and 'discount_factors' both given; give one of them"
        )
    if "maturities" in value and "rates" in value:
        return ZeroCurve.from_spot_rates(value["maturities"], value["rates"], compounding)
    if "maturities" in value and "discount_factors" in value:
        mats, dfs = value["maturities"], value["discount_factors"]
        return ZeroCurve(tuple(map(float, mats)), tuple(map(float, dfs)))
    raise ConfigurationError(
        f"curve: keys {sorted(value)} name no curve; give 'rate', 'file' (with 'kind' spot or "
        "discount), or 'maturities' with 'rates' or 'discount_factors'"
    )
