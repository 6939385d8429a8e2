"""The check of the data files against the engines that read them, before anything runs.

An initialised engine that implements ``check_data`` (``SupportsDataCheck``: the projection)
is given the whole data sources it reads; each ``DataProblem`` it returns is reported with the
source's file, the column and the 0-based data row (and the line, for CSV), as docs/data.md
counts rows.
``livecalc validate`` and ``Runner.run`` call ``check_source_data``; bad data then exits 2
before any chunk runs, instead of failing the run half-way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.io.parquet import PolicyData
from livecalc.pipeline._outputs import load_source, policy_ext_name
from livecalc.pipeline.config import PipelineConfig
from livecalc.runtime.engine import DataProblem, SupportsDataCheck
from livecalc.runtime.records import SCENARIO_DTYPE

__all__ = ["check_source_data", "engines_checker", "handles_checker", "load_datasets"]


def load_datasets(config: PipelineConfig) -> dict[str, np.ndarray]:
    """Every data source's records by name (a policy source's extension as ``<name>_ext``)."""
    datasets: dict[str, np.ndarray] = {}
    for name, src in config.data_sources.items():
        loaded = load_source(name, src, config)
        if isinstance(loaded, PolicyData):
            datasets[name] = loaded.records
            if loaded.ext is not None:
                datasets[policy_ext_name(name)] = loaded.ext
        else:
            datasets[name] = loaded
    return datasets


def _file_of(config: PipelineConfig, input_name: str) -> tuple[str, Path]:
    """("policy" or "scenario", the file) of a data source or its extension's dataset."""
    for name, src in config.data_sources.items():
        if input_name in (name, policy_ext_name(name)):
            kind = src.resolved_kind(name)
            return ("scenario" if kind == "scenarios" else "policy"), config.resolve(src.path)
    return "input", Path(input_name)


def _describe(config: PipelineConfig, index: int, problem: DataProblem) -> str:
    what, path = _file_of(config, problem.input)
    line = f" (line {problem.row + 2})" if path.suffix.lower() == ".csv" else ""
    return (
        f"engines[{index}]: {what} file {path}: column {problem.column!r}, row "
        f"{problem.row}{line}: {problem.problem}; {problem.fix}"
    )


Checker = Callable[[str, Mapping[str, np.ndarray | None]], Sequence[DataProblem]]
"""``check(node_id, inputs)``: an initialised engine's ``check_data`` on these inputs."""


def engines_checker(engines: Mapping[str, Any]) -> Checker:
    """A checker over engines initialised in this process (``livecalc validate``)."""

    def check(node_id: str, inputs: Mapping[str, np.ndarray | None]) -> Sequence[DataProblem]:
        engine = engines.get(node_id)
        return engine.check_data(inputs) if isinstance(engine, SupportsDataCheck) else []

    return check


def handles_checker(handles: Mapping[str, Any]) -> Checker:
    """A checker over the runner's initialised engine handles: the engine checks where it
    lives (in a worker, shared-memory inputs go by reference), so nothing is initialised or
    resolved twice."""

    def check(node_id: str, inputs: Mapping[str, np.ndarray | None]) -> Sequence[DataProblem]:
        handle = handles.get(node_id)
        if handle is None or not handle.supports("check_data"):
            return []
        return list(handle.call("check_data", inputs))

    return check


def horizon_stand_in(years: int) -> np.ndarray:
    """SCENARIO records with the length of an ESG's scenarios and no values: what a check of
    policy terms against scenarios needs to know of scenarios not yet generated."""
    stand_in = np.zeros(years, dtype=SCENARIO_DTYPE)
    stand_in["year"] = np.arange(1, years + 1)
    return stand_in


def source_data_problems(
    config: PipelineConfig,
    datasets: Mapping[str, Any],
    check: Checker,
    horizons: Mapping[str, int] | None = None,
) -> list[str]:
    """The problems the engines find in the data sources they read, one line each.

    ``horizons``: the scenario years of datasets an engine (the ESG) will produce, known once
    it is initialised; a policy longer than them is then found before the run too.
    """
    problems: list[str] = []
    for index, node in enumerate(config.engines):
        names = [n for n in node.inputs if n in config.data_sources]
        inputs: dict[str, np.ndarray | None] = {
            key: datasets[key]
            for name in names
            for key in (name, policy_ext_name(name))
            if isinstance(datasets.get(key), np.ndarray)
        }
        if not inputs:
            continue
        # Other engines' outputs are not known before the run: None, so the engine skips
        # the rules that need them.
        horizons = horizons or {}
        inputs.update(
            {
                n: horizon_stand_in(horizons[n]) if n in horizons else None
                for n in node.inputs
                if n not in config.data_sources
            }
        )
        problems += [_describe(config, index, p) for p in check(node.id, inputs)]
    return problems


def check_source_data(
    config: PipelineConfig,
    datasets: Mapping[str, Any],
    check: Checker,
    horizons: Mapping[str, int] | None = None,
) -> None:
    """Raise one ConfigurationError listing every data problem the engines find."""
    problems = source_data_problems(config, datasets, check, horizons)
    if len(problems) == 1:
        raise ConfigurationError(problems[0])
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ConfigurationError(f"{len(problems)} problems in the data:\n{listed}")
