"""How the AM client talks to the server: paced, retried, refreshed, and clear when refused.

``AMTransport`` is the HTTP half of ``AssumptionsClient`` (``client.py``):

- every GET first asks the client's ``RateLimiter``; a 429 or 503 answer is retried after the
  delay the limiter gives (exponential backoff, or the server's ``Retry-After`` when longer),
  logged as ``am_backoff``; when the limiter gives up, a 429 raises
  ``AssumptionResolutionError`` naming the status, the attempts and the fix, and a 503 counts
  as unreachable (``Unavailable``: the cached copy may stand in);
- a token about to expire is refreshed first; a 401 ``token_expired`` refreshes it once and
  retries; other 4xx answers become an ``AssumptionResolutionError`` naming the fix;
- a refused TLS certificate is an error, never an outage. No message contains the token.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from livecalc.assumptions.credentials import CredentialManager, auth_header, why_unreachable
from livecalc.errors import ConfigurationError, InitializationError
from livecalc.log import get_logger, scrub_text
from livecalc.ports import RateLimiter

__all__ = ["AMTransport", "AssumptionResolutionError", "Unavailable"]

_log = get_logger()


class AssumptionResolutionError(InitializationError, ConfigurationError):
    """An ``am://`` reference could not be resolved (refused, unknown, unreachable).

    An ``InitializationError`` (the engine cannot start) that is also a
    ``ConfigurationError``: the fix lies in the run's input (the reference, the token, the
    server address), so ``livecalc run`` reports it as such and exits with code 2.
    """


class Unavailable(Exception):
    """The server could not be reached or failed (5xx): the cache may stand in."""


class AMTransport:
    """GETs to one AM server for ``AssumptionsClient``, which sets these attributes."""

    am_url: str
    rate_limiter: RateLimiter
    _manager: CredentialManager
    _http: httpx.Client
    _sleep: Callable[[float], None]

    def _send(self, path: str, headers: dict[str, str], what: str) -> httpx.Response:
        """GET ``path`` with the current token, paced by the rate limiter and retried while
        the server answers 429 or 503 and the limiter allows; ``Unavailable`` when the
        server is not there (or still answers 503)."""
        attempt = 0
        while True:
            response = self._send_once(path, headers, what)
            status = response.status_code
            if status not in (429, 503):
                break
            attempt += 1
            retry_after = _retry_after(response)
            delay = self.rate_limiter.retry_delay(attempt, status, retry_after)
            if delay is None:
                if status == 503:
                    raise Unavailable(
                        f"HTTP 503 to all {attempt} attempts; the server is overloaded or "
                        "shutting down"
                    )
                raise AssumptionResolutionError(
                    f"{what}: the Assumptions Manager at {self.am_url} answered 429 (too many "
                    f"requests) to all {attempt} attempts, backing off between them; lower "
                    "run.am_rate_limit.requests_per_second (fewer requests per second) or "
                    "raise run.am_rate_limit.max_retries, or ask the AM's operator for a "
                    "higher --rate-limit"
                )
            _log.warning(
                "am_backoff",
                status=status,
                attempt=attempt,
                delay_seconds=round(delay, 3),
                retry_after=retry_after,
                am_url=self.am_url,
                path=path,
            )
            self._sleep(delay)
        if status >= 500:
            raise Unavailable(f"HTTP {status}")
        return response

    def _send_once(self, path: str, headers: dict[str, str], what: str) -> httpx.Response:
        """One GET of ``path``, once the rate limiter allows it."""
        self.rate_limiter.acquire()
        token = self._manager.get_credentials().am_token
        try:
            return self._http.get(path, headers={**headers, **auth_header(token)})
        except httpx.HTTPError as exc:
            reason = why_unreachable(exc)
            if reason.startswith("the server's TLS certificate was refused"):
                # Not an outage: the server is not who the URL says, or its CA is not
                # trusted. Fix the URL or the CA; no cached copy stands in.
                raise AssumptionResolutionError(f"{what}: {self.am_url}: {reason}") from None
            raise Unavailable(f"{type(exc).__name__}: {scrub_text(str(exc))}") from None

    def _get(self, path: str, headers: dict[str, str], what: str) -> httpx.Response:
        """GET with a refresh-and-retry when the server says the token expired."""
        try:
            # Refresh ahead of expiry; if the server is down the request below says so.
            self._manager.refresh_if_needed()
        except InitializationError as exc:
            _log.debug("token_refresh_skipped", reason=str(exc))
        response = self._send(path, headers, what)
        if response.status_code == 401 and _error_code(response) == "token_expired":
            try:
                self._manager.refresh_if_needed(force=True)
            except InitializationError as exc:
                raise AssumptionResolutionError(f"{what}: {exc}") from None
            response = self._send(path, headers, what)
        if response.status_code >= 400:
            raise self._http_error(response, what)
        return response

    def _http_error(self, response: httpx.Response, what: str) -> AssumptionResolutionError:
        """A clear error for a 4xx answer about ``what``."""
        code, message = _error_code(response), _error_message(response)
        status = response.status_code
        if status == 401:
            hint = (
                "the token expired and could not be refreshed"
                if code == "token_expired"
                else "the token was not signed by this server (forged, or for another AM)"
                if code == "token_invalid"
                else "no token was accepted"
            )
            fix = "issue a new one (livecalc am token --user NAME) and set LIVECALC_AM_TOKEN"
            return AssumptionResolutionError(
                f"{what}: the Assumptions Manager at {self.am_url} answered 401 ({hint}); {fix}"
            )
        if status == 403:
            return AssumptionResolutionError(
                f"{what}: the Assumptions Manager at {self.am_url} answered 403 ({message}); "
                "ask for a token whose scope includes this assumption"
            )
        if status == 404:
            return AssumptionResolutionError(f"{what}: not found on {self.am_url}: {message}")
        return AssumptionResolutionError(f"{what}: {self.am_url} answered {status}: {message}")


def _retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (a number of seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    # A NaN, infinite or negative answer says nothing usable: the limiter's backoff decides.
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {"message": str(detail)}


def _error_code(response: httpx.Response) -> str | None:
    code = _error_body(response).get("error")
    return str(code) if code else None


def _error_message(response: httpx.Response) -> str:
    return str(_error_body(response).get("message") or response.reason_phrase)
