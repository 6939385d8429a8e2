"""Test doubles for the ports: in memory, recording what LiveCalc asked of them.

Re-exported by ``livecalc.testing`` (use them from there). Each satisfies its Protocol and
behaves like the real thing, so a test can run ``livecalc.run`` with them and look at what
happened:

- ``MemoryCheckpointStore``: a ``CheckpointStore`` in a dict (counts its writes);
- ``RecordingProgress``: a ``ProgressReporter`` keeping every event;
- ``FakeClock`` and ``RecordingRateLimiter``: a ``TokenBucket`` on a clock that only moves
  when it "sleeps", recording each wait and each backoff it was asked for;
- ``RecordingRunContext``: a ``RunContext`` with a settable attempt, keeping its log lines.
"""

from __future__ import annotations

import math
import threading
from collections.abc import MutableMapping
from typing import Any

from livecalc.ports.context import BaseRunContext, new_run_id
from livecalc.ports.ratelimit import TokenBucket

__all__ = [
    "FakeClock",
    "MemoryCheckpointStore",
    "RecordingProgress",
    "RecordingRateLimiter",
    "RecordingRunContext",
]


class MemoryCheckpointStore:
    """A ``CheckpointStore`` in memory: keys to bytes; ``puts`` counts the writes."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.puts = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryCheckpointStore({len(self.blobs)} keys)"

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self.blobs[key] = bytes(data)
            self.puts += 1

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self.blobs[key]
            except KeyError:
                raise FileNotFoundError(key) from None

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            if prefix in self.blobs:
                return [prefix]
            folder = prefix.rstrip("/") + "/" if prefix else ""
            return sorted(k for k in self.blobs if k.startswith(folder))

    def delete(self, prefix: str) -> None:
        with self._lock:
            folder = prefix.rstrip("/") + "/"
            for key in [k for k in self.blobs if k == prefix or k.startswith(folder)]:
                del self.blobs[key]


class RecordingProgress:
    """A ``ProgressReporter`` that keeps ``(event, node_id, info)`` for every call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, node_id: str, **info: Any) -> None:
        with self._lock:
            self.events.append((event, node_id, dict(info)))

    def of(self, event: str, node_id: str | None = None) -> list[dict[str, Any]]:
        """The info of each ``event`` (of ``node_id``, when given), in order."""
        return [i for e, n, i in self.events if e == event and node_id in (None, n)]


class FakeClock:
    """A monotonic clock that moves only when ``sleep`` is called (or ``advance``)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock on by it."""
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        """Time passing with nobody waiting."""
        with self._lock:
            self.now += seconds


class RecordingRateLimiter(TokenBucket):
    """A ``TokenBucket`` on a ``FakeClock`` (waiting takes no real time) that records
    ``acquired`` (the clock reading at each granted request) and ``backoffs`` (``(attempt,
    status, retry_after, delay)`` for each ``retry_delay``)."""

    def __init__(
        self,
        rate: float = math.inf,
        burst: int = 10,
        *,
        max_retries: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 10.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        super().__init__(
            rate,
            burst,
            max_retries=max_retries,
            base_delay=base_delay,
            max_delay=max_delay,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        self.acquired: list[float] = []
        self.backoffs: list[tuple[int, int, float | None, float | None]] = []

    def acquire(self) -> None:
        super().acquire()
        self.acquired.append(self.clock())

    def retry_delay(self, attempt: int, status: int, retry_after: float | None) -> float | None:
        delay = super().retry_delay(attempt, status, retry_after)
        self.backoffs.append((attempt, status, retry_after, delay))
        return delay


class RecordingRunContext(BaseRunContext):
    """A ``RunContext`` whose attempt and state a test sets, keeping every ``log`` call as
    ``(level, event, fields)`` in ``logs``."""

    def __init__(
        self,
        run_id: str | None = None,
        attempt: int = 1,
        state: MutableMapping[str, Any] | None = None,
    ) -> None:
        super().__init__(new_run_id() if run_id is None else run_id, attempt, state)
        self.logs: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def attempt(self) -> int:
        return self._attempt

    @attempt.setter
    def attempt(self, value: int) -> None:
        """A test moves the context on to its next attempt."""
        if value < 1:
            raise ValueError(f"attempt must be >= 1, not {value}")
        self._attempt = value

    def log(self, level: str, event: str, **fields: Any) -> None:
        self.logs.append((level, event, dict(fields)))

    def events(self) -> list[str]:
        """The events logged, in order."""
        return [event for _, event, _ in self.logs]
