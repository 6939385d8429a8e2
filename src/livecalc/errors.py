"""The exceptions LiveCalc raises.

```
CalcEngineError            catch this to catch anything LiveCalc raises
├── ConfigurationError     bad config or input: JSON path, field or row, and the fix
├── InitializationError    an engine could not start (assumptions, credentials, ...)
└── ExecutionError         run_chunk failed: engine id set, cause chained
    └── EngineTimeoutError the chunk ran past LifecycleConfig.timeout_seconds
```

Foreign exceptions are wrapped where they enter our code (``raise ExecutionError(...) from
exc``). Kernels raise plain ``ValueError``; the engine that calls them wraps it.
"""

from __future__ import annotations

__all__ = [
    "CalcEngineError",
    "ConfigurationError",
    "EngineTimeoutError",
    "ExecutionError",
    "InitializationError",
]


class CalcEngineError(Exception):
    """Base of every error LiveCalc raises."""


class ConfigurationError(CalcEngineError):
    """A config, a data file or an argument is wrong; the message names where and the fix."""


class InitializationError(CalcEngineError):
    """An engine could not be initialised (assumptions, credentials, resources)."""


class ExecutionError(CalcEngineError):
    """An engine's ``run_chunk`` failed.

    Args:
        message: what went wrong.
        engine_id: the DAG node or engine that failed, when known.
    """

    def __init__(self, message: str, engine_id: str | None = None) -> None:
        self.engine_id = engine_id
        super().__init__(f"[{engine_id}] {message}" if engine_id else message)


class EngineTimeoutError(ExecutionError):
    """A chunk ran past its ``timeout_seconds`` and was stopped."""

    def __init__(
        self, message: str, engine_id: str | None = None, timeout_seconds: float | None = None
    ) -> None:
        self.timeout_seconds = timeout_seconds
        super().__init__(message, engine_id)
