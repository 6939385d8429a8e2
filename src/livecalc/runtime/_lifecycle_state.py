"""The lifecycle's vocabulary: engine states, allowed transitions, config and statistics.

``livecalc.runtime.lifecycle`` re-exports the public names; the manager there uses them.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Literal

from livecalc.errors import ConfigurationError

__all__ = ["TRANSITIONS", "EngineState", "LifecycleConfig", "LifecycleStats", "RunCounters"]


class EngineState(enum.Enum):
    """Where an engine is in its life, as in the seed."""

    UNINITIALIZED = "UNINITIALIZED"
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    RUNNING = "RUNNING"
    ERROR = "ERROR"
    DISPOSED = "DISPOSED"


_S = EngineState
TRANSITIONS: dict[EngineState, frozenset[EngineState]] = {
    _S.UNINITIALIZED: frozenset({_S.INITIALIZING, _S.DISPOSED}),
    # A failed initialize goes back to UNINITIALIZED: nothing ran, so there is nothing to recover.
    _S.INITIALIZING: frozenset({_S.READY, _S.UNINITIALIZED}),
    _S.READY: frozenset({_S.RUNNING, _S.DISPOSED}),
    _S.RUNNING: frozenset({_S.READY, _S.ERROR}),
    # From ERROR: run again (recovery), re-initialise, or give up.
    _S.ERROR: frozenset({_S.RUNNING, _S.INITIALIZING, _S.DISPOSED}),
    # The seed's rule 4: after dispose(), initialize() must be called again for reuse.
    _S.DISPOSED: frozenset({_S.INITIALIZING}),
}
"""Every allowed transition; any other raises, naming both states."""


@dataclass(frozen=True)
class LifecycleConfig:
    """How the manager runs its engine.

    Args:
        timeout_seconds: longest a chunk may run (process isolation stops it at the deadline).
        auto_retry_on_error: run a failed chunk once more (not after a timeout: a chunk that
            used the whole budget would most likely use it again, doubling the wait).
        max_consecutive_errors: failed executions in a row (retries included) after which the
            engine is disposed.
        isolation: "inline" (same thread, no overhead, cannot be stopped) or "process".
    """

    timeout_seconds: float = 300.0
    auto_retry_on_error: bool = False
    max_consecutive_errors: int = 3
    isolation: Literal["inline", "process"] = "inline"

    def __post_init__(self) -> None:
        timeout = self.timeout_seconds
        if isinstance(timeout, bool) or not (isinstance(timeout, int | float) and timeout > 0):
            raise ConfigurationError(
                f"LifecycleConfig.timeout_seconds: must be a number > 0, got "
                f"{self.timeout_seconds!r}"
            )
        if not isinstance(self.auto_retry_on_error, bool):
            raise ConfigurationError(
                f"LifecycleConfig.auto_retry_on_error: must be true or false, got "
                f"{self.auto_retry_on_error!r}"
            )
        if (
            isinstance(self.max_consecutive_errors, bool)
            or not isinstance(self.max_consecutive_errors, int)
            or self.max_consecutive_errors < 1
        ):
            raise ConfigurationError(
                f"LifecycleConfig.max_consecutive_errors: must be an integer >= 1, got "
                f"{self.max_consecutive_errors!r}"
            )
        if self.isolation not in ("inline", "process"):
            raise ConfigurationError(
                f"LifecycleConfig.isolation: must be 'inline' or 'process', got {self.isolation!r}"
            )


@dataclass(frozen=True)
class LifecycleStats:
    """Counts and times over every execution of ``run_chunk`` (each retry is one execution).

    ``failed_runs`` includes timeouts; ``timeout_count`` counts those alone. Times are wall
    clock as the caller saw them, over all executions, failed ones included.
    """

    successful_runs: int = 0
    failed_runs: int = 0
    timeout_count: int = 0
    total_execution_time_ms: float = 0.0
    average_execution_time_ms: float = 0.0


@dataclass
class RunCounters:
    """The mutable counts behind ``LifecycleStats``."""

    successful_runs: int = 0
    failed_runs: int = 0
    timeout_count: int = 0
    total_execution_time_ms: float = 0.0

    def snapshot(self) -> LifecycleStats:
        """The counts as a frozen LifecycleStats, average included."""
        runs = self.successful_runs + self.failed_runs
        average = self.total_execution_time_ms / runs if runs else 0.0
        return LifecycleStats(**asdict(self), average_execution_time_ms=average)
