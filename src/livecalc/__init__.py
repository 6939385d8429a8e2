"""LiveCalc: orchestration of actuarial calculation engines as a DAG with zero-copy buffers.

The public names, loaded when first used: ``import livecalc`` imports none of numpy's heavy
neighbours (numba, pyarrow, httpx, fastapi, ray), so the command line and scripts start fast.
``from livecalc import run`` or ``livecalc.run`` imports the module that defines the name. The
built-in engines (``livecalc.engines.esg``, ``.projection``, ``.solver``) are created by type
name through ``EngineFactory``. The package's layout and import rules: docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from livecalc._version import __version__ as __version__

if TYPE_CHECKING:
    from livecalc import runs as runs
    from livecalc.assumptions.client import (
        AssumptionResolutionError,
        AssumptionsClient,
        ResolvedAssumption,
        resolve_reference,
    )
    from livecalc.assumptions.credentials import (
        AMCredentials,
        CredentialManager,
        CredentialSource,
        TokenInfo,
    )
    from livecalc.errors import (
        CalcEngineError,
        ConfigurationError,
        EngineTimeoutError,
        ExecutionError,
        InitializationError,
    )
    from livecalc.io.parquet import ParquetReader, ParquetWriter, PolicyData
    from livecalc.log import LoggerConfig, configure_logging
    from livecalc.ops.session import run
    from livecalc.pipeline.api import RunResult, check_engines
    from livecalc.pipeline.config import PipelineConfig
    from livecalc.pipeline.loading import load_config
    from livecalc.runtime.buffers import BufferInfo, BufferManager, SharedArrayRef
    from livecalc.runtime.engine import EngineInfo, ExecutionResult, ICalcEngine, OutputSpec
    from livecalc.runtime.factory import EngineFactory
    from livecalc.runtime.lifecycle import (
        EngineLifecycleManager,
        EngineState,
        LifecycleConfig,
        LifecycleStats,
    )
    from livecalc.runtime.native import NativeEngine
    from livecalc.runtime.records import (
        ALL_SCENARIOS,
        CASHFLOW_DTYPE,
        POLICY_DTYPE,
        POLICY_EXT_DTYPE,
        RESULT_DETAIL_DTYPE,
        RESULT_DETAIL_EXT_DTYPE,
        RESULT_DTYPE,
        SCENARIO_DTYPE,
        SCENARIO_TOTAL_DTYPE,
        BufferType,
    )

# Each public name and the module that defines it.
_PUBLIC: dict[str, str] = {
    "ALL_SCENARIOS": "livecalc.runtime.records",
    "CASHFLOW_DTYPE": "livecalc.runtime.records",
    "POLICY_DTYPE": "livecalc.runtime.records",
    "POLICY_EXT_DTYPE": "livecalc.runtime.records",
    "RESULT_DETAIL_DTYPE": "livecalc.runtime.records",
    "RESULT_DETAIL_EXT_DTYPE": "livecalc.runtime.records",
    "RESULT_DTYPE": "livecalc.runtime.records",
    "SCENARIO_DTYPE": "livecalc.runtime.records",
    "SCENARIO_TOTAL_DTYPE": "livecalc.runtime.records",
    "AMCredentials": "livecalc.assumptions.credentials",
    "AssumptionResolutionError": "livecalc.assumptions.client",
    "AssumptionsClient": "livecalc.assumptions.client",
    "BufferInfo": "livecalc.runtime.buffers",
    "BufferManager": "livecalc.runtime.buffers",
    "BufferType": "livecalc.runtime.records",
    "CalcEngineError": "livecalc.errors",
    "ConfigurationError": "livecalc.errors",
    "CredentialManager": "livecalc.assumptions.credentials",
    "CredentialSource": "livecalc.assumptions.credentials",
    "EngineFactory": "livecalc.runtime.factory",
    "EngineInfo": "livecalc.runtime.engine",
    "EngineLifecycleManager": "livecalc.runtime.lifecycle",
    "EngineState": "livecalc.runtime.lifecycle",
    "EngineTimeoutError": "livecalc.errors",
    "ExecutionError": "livecalc.errors",
    "ExecutionResult": "livecalc.runtime.engine",
    "ICalcEngine": "livecalc.runtime.engine",
    "InitializationError": "livecalc.errors",
    "LifecycleConfig": "livecalc.runtime.lifecycle",
    "LifecycleStats": "livecalc.runtime.lifecycle",
    "LoggerConfig": "livecalc.log",
    "NativeEngine": "livecalc.runtime.native",
    "OutputSpec": "livecalc.runtime.engine",
    "ParquetReader": "livecalc.io.parquet",
    "ParquetWriter": "livecalc.io.parquet",
    "PipelineConfig": "livecalc.pipeline.config",
    "PolicyData": "livecalc.io.parquet",
    "ResolvedAssumption": "livecalc.assumptions.client",
    "RunResult": "livecalc.pipeline.api",
    "SharedArrayRef": "livecalc.runtime.buffers",
    "TokenInfo": "livecalc.assumptions.credentials",
    "check_engines": "livecalc.pipeline.api",
    "configure_logging": "livecalc.log",
    "load_config": "livecalc.pipeline.loading",
    "resolve_reference": "livecalc.assumptions.client",
    "run": "livecalc.ops.session",
}

__all__ = [
    "ALL_SCENARIOS",
    "CASHFLOW_DTYPE",
    "POLICY_DTYPE",
    "POLICY_EXT_DTYPE",
    "RESULT_DETAIL_DTYPE",
    "RESULT_DETAIL_EXT_DTYPE",
    "RESULT_DTYPE",
    "SCENARIO_DTYPE",
    "SCENARIO_TOTAL_DTYPE",
    "AMCredentials",
    "AssumptionResolutionError",
    "AssumptionsClient",
    "BufferInfo",
    "BufferManager",
    "BufferType",
    "CalcEngineError",
    "ConfigurationError",
    "CredentialManager",
    "CredentialSource",
    "EngineFactory",
    "EngineInfo",
    "EngineLifecycleManager",
    "EngineState",
    "EngineTimeoutError",
    "ExecutionError",
    "ExecutionResult",
    "ICalcEngine",
    "InitializationError",
    "LifecycleConfig",
    "LifecycleStats",
    "LoggerConfig",
    "NativeEngine",
    "OutputSpec",
    "ParquetReader",
    "ParquetWriter",
    "PipelineConfig",
    "PolicyData",
    "ResolvedAssumption",
    "RunResult",
    "SharedArrayRef",
    "TokenInfo",
    "check_engines",
    "configure_logging",
    "load_config",
    "resolve_reference",
    "run",
]


def __getattr__(name: str) -> Any:
    """Import the module of a public name on first use and cache the name here."""
    if name == "runs":
        # The run store's Python face, a module: loaded (with duckdb) only when used.
        return importlib.import_module("livecalc.runs")
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'livecalc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
