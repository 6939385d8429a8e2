"""Config keys that change nothing in this config: said, not silently ignored.

A projection that reads scenarios discounts with their rates: its ``discount_rate`` and
``yield_curve`` (the deterministic scenario) then price nothing, unless its premiums are
solved by ``equivalence``, which prices them on that deterministic curve. ``--set
projection.discount_rate=0.035`` on such a pipeline used to run as if it had not been given.
``livecalc validate`` prints each such key as a warning and ``livecalc run`` logs it
(``warning`` event, ``reason=no_effect``).
"""

from __future__ import annotations

from livecalc.pipeline.config import PipelineConfig
from livecalc.runtime.factory import EngineFactory

__all__ = ["DETERMINISTIC_KEYS", "no_effect_warnings"]

DETERMINISTIC_KEYS = ("discount_rate", "yield_curve")
"""The projection's keys that only describe its deterministic scenario."""


def no_effect_warnings(config: PipelineConfig, factory: EngineFactory) -> list[str]:
    """One line for each key of the config that has no effect in it (JSON path, why, fix)."""
    producers = {out: node for node in config.engines for out in node.outputs[:1]}
    warnings = []
    for i, node in enumerate(config.engines):
        if factory.canonical_type(node.type) != "projection":
            continue
        scenarios = [
            name
            for name in node.inputs
            if (name in config.data_sources
                and config.data_sources[name].resolved_kind(name) == "scenarios")
            or (name in producers and factory.canonical_type(producers[name].type) == "esg")
        ]  # fmt: skip
        premium = node.config.get("premium")
        priced = isinstance(premium, dict) and premium.get("method") == "equivalence"
        if not scenarios or priced:
            continue
        for key in DETERMINISTIC_KEYS:
            if key in node.config:
                warnings.append(
                    f"engines[{i}].config.{key} has no effect: node {node.id!r} reads "
                    f"scenarios ({scenarios[0]!r}), whose rates discount its cash flows "
                    f"({key} gives the deterministic scenario only, used without scenarios "
                    "or to solve equivalence premiums); remove it, or stress the scenarios"
                )
    return warnings
