"""The nested engine's config: the valuation date, its ESG, and the LSMC proxy.

``parse_nested_config`` reads a ``nested`` node's raw config once and raises one
ConfigurationError naming every bad key by its path (``config.lsmc.degree: ...``,
``config.esg.sigma: ...``). The ``esg`` object takes the ESG engine's keys
(docs/engines/esg.md) and is checked by the ESG's own parser; its ``branching_year`` is the
valuation year. docs/engines/nested.md lists every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livecalc.engines._config_keys import unknown_key_in_model
from livecalc.engines._esg_config import ESGSettings, parse_esg_config
from livecalc.errors import ConfigurationError
from livecalc.kernels.esg import MAX_INNER

__all__ = ["LSMCConfig", "NestedConfig", "NestedSettings", "parse_nested_config"]

MAX_OUTER_IDS = (2**32 - 1 - (MAX_INNER - 1)) // 1000
"""Outer ids the three sets use together (nested, fitting, proxy) must stay below this:
``scenario_id = outer_id * 1000 + inner_id`` is 32-bit."""


class LSMCConfig(BaseModel):
    """The ``lsmc`` block: the proxy's basis, its fitting set and the set it values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    basis: Literal["polynomial", "laguerre"] = "polynomial"
    degree: int = Field(default=3, ge=1, le=10)
    ridge: float = Field(default=0.0, ge=0.0, le=1e6, allow_inf_nan=False)
    fit_outer: int = Field(default=1000, ge=10, le=10_000_000)
    fit_inner: int = Field(default=10, ge=1, le=MAX_INNER)
    proxy_outer: int = Field(default=100_000, ge=2, le=10_000_000)


class NestedConfig(BaseModel):
    """A ``nested`` node's ``config`` object (``esg`` is checked by the ESG's parser)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    valuation_year: int = Field(default=1, ge=1, le=100)
    esg: dict[str, Any] = {}
    claim_timing: Literal["start", "middle", "end"] = "end"
    bootstrap: int = Field(default=200, ge=2, le=100_000)
    outer_paths_limit: int = Field(default=20_000, ge=0, le=1_000_000)
    lsmc: LSMCConfig | None = None


@dataclass(frozen=True)
class NestedSettings:
    """A validated config: the model keys, and the ESG settings with their branching year."""

    config: NestedConfig
    esg: ESGSettings
    years_given: int | None  # esg.years when the config gives it; else the cash flows decide


def _path(loc: tuple[int | str, ...]) -> str:
    return "config" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _model_problems(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            lines.append(unknown_key_in_model(NestedConfig, err["loc"], _path(err["loc"])))
            continue
        msg = "required: add it" if err["type"] == "missing" else str(err["msg"])
        lines.append(f"{_path(err['loc'])}: {msg.removeprefix('Value error, ')}")
    return lines


def parse_nested_config(config: Mapping[str, Any], base_dir: Path | None = None) -> NestedSettings:
    """Validate a nested config; raise one ConfigurationError listing every problem."""
    problems = []
    try:
        cfg = NestedConfig.model_validate(dict(config))
    except ValidationError as exc:
        problems = _model_problems(exc)
        # Report the ESG's problems too, all at once, with the defaults for what failed.
        esg = config.get("esg")
        year = config.get("valuation_year")
        cfg = NestedConfig(
            valuation_year=year if isinstance(year, int) and 1 <= year <= 100 else 1,
            esg=dict(esg) if isinstance(esg, Mapping) else {},
        )
    t = cfg.valuation_year
    raw = dict(cfg.esg)
    if "branching_year" in raw and raw["branching_year"] != t:
        problems.append(
            f"config.esg.branching_year: {raw['branching_year']!r} differs from "
            f"config.valuation_year {t}; remove it (the valuation year is the branching year)"
        )
    raw["branching_year"] = t
    years_given = raw.get("years")
    # Until the cash flows are known, the paths need only reach the valuation year.
    raw.setdefault("years", t + 1)
    try:
        esg = parse_esg_config(raw, base_dir)
    except ConfigurationError as exc:
        # The ESG's messages name "config.KEY"; inside this engine that key is config.esg.KEY.
        lines = str(exc).replace("config.", "config.esg.").splitlines()
        problems += [line.strip() for line in (lines[1:] if len(lines) > 1 else lines)]
        esg = None
    if esg is not None and esg.model == "simple":
        problems.append(
            "config.esg.model: the simple model has no risk-neutral dynamics to value with; "
            "use hull_white, vasicek or cir"
        )
    if esg is not None and esg.layout.inner < 2:
        problems.append("config.esg.inner: a standard error needs at least 2 inner paths")
    if esg is not None and esg.layout.antithetic and cfg.lsmc and cfg.lsmc.fit_inner % 2:
        problems.append(
            f"config.lsmc.fit_inner: {cfg.lsmc.fit_inner} is odd; antithetic pairs need an "
            "even count"
        )
    if esg is not None and cfg.lsmc is not None and esg.parameters.get("sigma", 1.0) == 0.0:
        problems.append(
            "config.esg.sigma: 0 leaves the state at t the same on every outer path, so the "
            "proxy has nothing to regress on; give sigma > 0 or remove config.lsmc"
        )
    if esg is not None and cfg.lsmc is not None:
        used = esg.outer + cfg.lsmc.fit_outer + cfg.lsmc.proxy_outer
        if used > MAX_OUTER_IDS:
            problems.append(
                f"config.lsmc.proxy_outer: esg.outer + fit_outer + proxy_outer = {used:,} "
                f"outer paths, above {MAX_OUTER_IDS:,}; lower proxy_outer"
            )
    if len(problems) == 1:
        raise ConfigurationError(problems[0])
    if problems:
        # The ESG's layout: a count, then one problem per line.
        listed = "\n".join(f"  {p}" for p in problems)
        raise ConfigurationError(f"{len(problems)} problems in the nested config:\n{listed}")
    assert esg is not None
    years = None
    if years_given is not None:
        years = esg.layout.years
    return NestedSettings(cfg, esg, years)
