"""LiveCalc: orchestration of actuarial calculation engines as a DAG with zero-copy buffers."""

from livecalc.buffers import (
    ALL_SCENARIOS,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferInfo,
    BufferManager,
    BufferType,
)
from livecalc.credentials import AMCredentials
from livecalc.engine import EngineInfo, ExecutionResult, ICalcEngine
from livecalc.errors import (
    CalcEngineError,
    ConfigurationError,
    EngineTimeoutError,
    ExecutionError,
    InitializationError,
)
from livecalc.factory import EngineFactory

__version__ = "0.1.0"

__all__ = [
    "ALL_SCENARIOS",
    "POLICY_DTYPE",
    "POLICY_EXT_DTYPE",
    "RESULT_DETAIL_DTYPE",
    "RESULT_DTYPE",
    "SCENARIO_DTYPE",
    "SCENARIO_TOTAL_DTYPE",
    "AMCredentials",
    "BufferInfo",
    "BufferManager",
    "BufferType",
    "CalcEngineError",
    "ConfigurationError",
    "EngineFactory",
    "EngineInfo",
    "EngineTimeoutError",
    "ExecutionError",
    "ExecutionResult",
    "ICalcEngine",
    "InitializationError",
]
