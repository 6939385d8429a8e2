"""LiveCalc: orchestration of actuarial calculation engines as a DAG with zero-copy buffers.

The public names of DESIGN.md section 3. The built-in engines (``livecalc.engines.esg``,
``.projection``, ``.solver``) are created by type name through ``EngineFactory`` and are not
imported here, so ``import livecalc`` does not load numba kernels.
"""

from livecalc.api import RunResult, check_engines, run
from livecalc.assumptions import (
    AssumptionResolutionError,
    AssumptionsClient,
    ResolvedAssumption,
    resolve_reference,
)
from livecalc.buffers import (
    ALL_SCENARIOS,
    CASHFLOW_DTYPE,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DETAIL_EXT_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferInfo,
    BufferManager,
    BufferType,
    SharedArrayRef,
)
from livecalc.config import PipelineConfig, load_config
from livecalc.credentials import AMCredentials, CredentialManager, CredentialSource, TokenInfo
from livecalc.engine import EngineInfo, ExecutionResult, ICalcEngine, OutputSpec
from livecalc.errors import (
    CalcEngineError,
    ConfigurationError,
    EngineTimeoutError,
    ExecutionError,
    InitializationError,
)
from livecalc.factory import EngineFactory
from livecalc.lifecycle import EngineLifecycleManager, EngineState, LifecycleConfig, LifecycleStats
from livecalc.log import LoggerConfig, configure_logging
from livecalc.native import NativeEngine
from livecalc.parquet import ParquetReader, ParquetWriter, PolicyData

__version__ = "0.1.0"

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
