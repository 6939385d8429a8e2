"""The check of the data files against the engines that read them, before anything runs.

An engine that implements ``check_data`` (``SupportsDataCheck``: the projection) is given the
whole data sources it reads; each ``DataProblem`` it returns is reported with the source's file,
the column and the 0-based data row (and the line, for CSV), as docs/data.md counts rows.
``livecalc validate`` and ``Runner.run`` call ``check_source_data``; bad data then exits 2
before any chunk runs, instead of failing the run half-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.io.parquet import PolicyData
from livecalc.pipeline._outputs import load_source, policy_ext_name
from livecalc.pipeline.config import PipelineConfig
from livecalc.runtime.engine import DataProblem, SupportsDataCheck
from livecalc.runtime.factory import EngineFactory

__all__ = ["check_source_data", "load_datasets"]


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


def source_data_problems(
    config: PipelineConfig,
    factory: EngineFactory,
    datasets: Mapping[str, Any],
    credentials: AMCredentials | None,
) -> list[str]:
    """The problems the engines find in the data sources they read, one line each."""
    problems: list[str] = []
    for index, node in enumerate(config.engines):
        names = [n for n in node.inputs if n in config.data_sources]
        inputs = {
            key: datasets[key]
            for name in names
            for key in (name, policy_ext_name(name))
            if isinstance(datasets.get(key), np.ndarray)
        }
        if not inputs:
            continue
        engine = factory.create_engine(node.type)
        if not isinstance(engine, SupportsDataCheck):
            continue
        try:
            engine.initialize(config.engine_config(node.id, factory), credentials)
        except CalcEngineError:
            continue  # its config problem is reported where the engines are initialised
        try:
            found = engine.check_data(inputs)
        finally:
            engine.dispose()
        problems += [_describe(config, index, p) for p in found]
    return problems


def check_source_data(
    config: PipelineConfig,
    factory: EngineFactory,
    datasets: Mapping[str, Any],
    credentials: AMCredentials | None,
) -> None:
    """Raise one ConfigurationError listing every data problem the engines find."""
    problems = source_data_problems(config, factory, datasets, credentials)
    if len(problems) == 1:
        raise ConfigurationError(problems[0])
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ConfigurationError(f"{len(problems)} problems in the data:\n{listed}")
