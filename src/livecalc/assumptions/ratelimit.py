"""How fast a run may ask the Assumptions Manager, and how it backs off when told to wait.

``AMRateLimit`` is the ``run.am_rate_limit`` object of a pipeline config (and a field of
``AMCredentials``, so it reaches engines in worker processes and Ray actors); ``limiter_for``
turns it into the ``TokenBucket`` that every AM client of this process with the same settings
shares, so the pacing holds across engines and threads of one process.
"""

from __future__ import annotations

import math
import threading

from pydantic import BaseModel, ConfigDict, Field, model_validator

from livecalc.ports.ratelimit import TokenBucket

__all__ = ["AMRateLimit", "limiter_for"]


class AMRateLimit(BaseModel):
    """``run.am_rate_limit``: pacing of requests to the AM, and retries of 429/503 answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1e6,
        description="average requests per second of each process; none: unpaced",
    )
    burst: int = Field(default=10, ge=1, le=10_000, description="requests sent without pacing")
    max_retries: int = Field(
        default=5, ge=0, le=20, description="retries of a request answered 429 or 503"
    )
    base_delay_seconds: float = Field(
        default=0.1, ge=0, le=60, description="first backoff; doubled on each retry"
    )
    max_delay_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="longest backoff, the server's Retry-After included",
    )

    @model_validator(mode="after")
    def _delays_in_order(self) -> AMRateLimit:
        if self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError(
                f"max_delay_seconds ({self.max_delay_seconds}) is below base_delay_seconds "
                f"({self.base_delay_seconds}): raise it or lower base_delay_seconds"
            )
        return self

    def limiter(self) -> TokenBucket:
        """A new token bucket with these settings."""
        rate = self.requests_per_second if self.requests_per_second is not None else math.inf
        return TokenBucket(
            rate,
            self.burst,
            max_retries=self.max_retries,
            base_delay=self.base_delay_seconds,
            max_delay=self.max_delay_seconds,
        )


_LOCK = threading.Lock()
_LIMITERS: dict[AMRateLimit, TokenBucket] = {}


def limiter_for(settings: AMRateLimit | None) -> TokenBucket:
    """The process's shared token bucket for ``settings`` (None: the defaults)."""
    key = settings if settings is not None else AMRateLimit()
    with _LOCK:
        found = _LIMITERS.get(key)
        if found is None:
            found = _LIMITERS[key] = key.limiter()
        return found
