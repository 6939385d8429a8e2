"""The config's operations sections (checks, sla, alerts) under Hypothesis: one strange value
(huge or non-finite number, NUL, lone surrogate, a URL holding a password and token) is either
refused on one printable line that names its JSON path and shows no secret, or accepted as a
value the run can use (finite numbers, alert timeouts of a day at most, plain text)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.loading import load_config
from livecalc.runtime.factory import EngineFactory
from strategies import HOOK_SECRET, HOOK_URL, mutated_ops_sections, ops_sections_base

PIPELINE = {
    "plugins": ["livecalc.testing:register_testing_engines"],
    "data_sources": {"policies": {"path": "policies.parquet"}},
    "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]}],
    "output": {"path": "out/a_out.parquet"},
}
FACTORY = EngineFactory()
A_DAY = 86_400.0  # the longest alert timeout (livecalc.pipeline.operations.MAX_ALERT_SECONDS)


def _leaves(value: Any) -> list[Any]:
    """Every number, string and dict key below ``value``."""
    if isinstance(value, dict):
        return [*value, *(leaf for v in value.values() for leaf in _leaves(v))]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _usable(config: PipelineConfig) -> list[str]:
    """What an accepted config holds that a run could not use (empty: nothing)."""
    problems = []
    sections = [
        [c.model_dump() for c in config.checks],
        config.sla.model_dump() if config.sla is not None else None,
        [a.model_dump() for a in config.alerts],
    ]
    for leaf in _leaves(sections):
        if isinstance(leaf, float) and not math.isfinite(leaf):
            problems.append(f"the number {leaf} was accepted")
        if isinstance(leaf, str):
            if "\x00" in leaf:
                problems.append(f"{leaf!r} with a NUL was accepted")
            try:
                leaf.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(f"{leaf!r} with a lone surrogate was accepted")
    for alert in config.alerts:
        if not 0 < alert.timeout_seconds <= A_DAY:
            problems.append(f"an alert timeout of {alert.timeout_seconds} was accepted")
    return problems


def _check_refusal(message: str, path: str) -> list[str]:
    """What is wrong with the message refusing a value at ``path`` (empty: nothing)."""
    lines = message.splitlines()
    problems = [] if lines else ["an empty message"]
    if len(lines) > 1:
        # Several problems (a bad key and its bad value): a count, then one line each.
        if lines[0] != f"{len(lines) - 1} problems in the config:":
            problems.append(f"{lines[0]!r} does not count the problems below it")
        lines = [line.removeprefix("  ") for line in lines[1:]]
    problems += [
        f"{line!r} does not start at {path}" for line in lines if not line.startswith(path)
    ]
    if not all(line.isprintable() for line in message.splitlines()):
        problems.append("a character that is not printable")
    if HOOK_SECRET in message:
        problems.append("the webhook URL's secret")
    return problems


class TestOpsSections:
    @settings(max_examples=400, deadline=None)
    @given(mutated_ops_sections())
    @example(({**ops_sections_base(), "alerts": [{"type": "webhok", "url": HOOK_URL}]}, "alerts"))
    @example(
        (
            {**ops_sections_base(), "sla": {"nodes": {"\ud800": -1}}},
            "sla",
        )
    )
    def test_a_strange_value_is_refused_cleanly_or_usable(
        self, case: tuple[dict[str, Any], str]
    ) -> None:
        """One strange value in checks, sla or alerts: a one-line refusal at its path with no
        secret, or a config whose numbers are finite, texts plain and alert timeouts bounded."""
        sections, path = case
        try:
            config = load_config(
                {**PIPELINE, **sections}, factory=FACTORY, base_dir=".", check_files=False
            )
        except ConfigurationError as exc:
            problems = _check_refusal(str(exc), path)
        else:
            problems = _usable(config)

        assert [] == problems, (sections, path)

    @pytest.mark.parametrize(
        "sections",
        [
            {"alerts": [{"type": "webhook", "url": HOOK_URL + "\ud800"}]},
            {"sla": {"nodes": {"a\ud800\x00\n": 1}}},
            {"checks": [{"kind": "finite", "dataset": "a_out", "name": "x\ud800\n"}]},
        ],
        ids=["url", "sla_key", "check_name"],
    )
    def test_the_cli_prints_one_line_and_exits_2(
        self, tmp_path: Path, sections: dict[str, Any]
    ) -> None:
        """`livecalc validate` of such a config: exit 2, one `error:` line, no secret, and
        text a terminal can print (surrogates and control characters escaped)."""
        import json

        config = tmp_path / "config.json"
        config.write_text(json.dumps({**PIPELINE, **sections}))
        (tmp_path / "policies.parquet").write_bytes(b"")

        result = CliRunner().invoke(app, ["validate", str(config), "--no-engines"])

        assert 2 == result.exit_code, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("error: " + next(iter(sections)))
        assert HOOK_SECRET not in line
