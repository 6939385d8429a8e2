"""``TokenBucket``: the default ``RateLimiter`` (pacing, and exponential backoff on 429/503)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most ``rate`` requests per second on average, bursts of up to ``burst``; a refused
    request (429, 503) is retried up to ``max_retries`` times after ``base_delay * 2**(n-1)``
    seconds (capped at ``max_delay``, with up to 10% jitter), or after the server's
    Retry-After when that is longer (still capped).

    ``rate=math.inf`` (the default) paces nothing and only backs off. Thread-safe.
    """

    def __init__(
        self,
        rate: float = math.inf,
        burst: int = 10,
        *,
        max_retries: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst!r}")
        if max_retries < 0 or not base_delay >= 0 or not max_delay >= base_delay:
            raise ValueError("need max_retries >= 0 and 0 <= base_delay <= max_delay")
        self.rate = rate
        self.burst = burst
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst}, max_retries={self.max_retries})"

    def acquire(self) -> None:
        if math.isinf(self.rate):
            return
        # The token is taken now, the bucket going into debt when it is empty, and the caller
        # sleeps the debt off: one sleep per request (a loop of "sleep, look again" could
        # spin on rounding), and callers waiting together are served in arrival order.
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)

    def retry_delay(self, attempt: int, status: int, retry_after: float | None) -> float | None:
        if attempt > self.max_retries or status not in (429, 503):
            return None
        delay = self.base_delay * 2.0 ** (attempt - 1)
        delay *= 1.0 + 0.1 * random.random()
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return min(delay, self.max_delay)
