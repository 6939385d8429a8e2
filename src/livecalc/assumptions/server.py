"""The Assumptions Manager service: the public names of its app, serving and tokens, in one place.

``livecalc.assumptions.app`` builds the FastAPI app (endpoints, tables, errors: see its
docstring), ``livecalc.assumptions._serving`` puts it on the network (socket, uvicorn,
workers, TLS), ``livecalc.assumptions._limits`` bounds requests and
``livecalc.assumptions.tokens`` makes and checks the JWTs. ``livecalc am serve`` and tests
use this module: ``serve``, ``BackgroundServer``, ``create_app``, ``issue_token``, ...
"""

from __future__ import annotations

from livecalc.assumptions._limits import (
    BODY_TIMEOUT_SECONDS,
    HEAD_TIMEOUT_SECONDS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    BodyLimit,
    InFlightLimit,
    RateLimit,
    parse_rate,
)
from livecalc.assumptions._serving import (
    MAX_WORKERS,
    BackgroundServer,
    ServeSettings,
    check_tls,
    check_trusted_proxies,
    listening_socket,
    serve,
    worker_app,
)
from livecalc.assumptions.app import ARROW_STREAM_MEDIA_TYPE, AssumptionStore, create_app
from livecalc.assumptions.tokens import (
    ENV_CLIENTS,
    ENV_SECRET,
    MAX_SESSION_SECONDS,
    MAX_TOKEN_TTL_SECONDS,
    MIN_SECRET_LENGTH,
    TokenError,
    VerifiedTokens,
    check_lifetime,
    issue_token,
    secret_from_env,
    verify_token,
)

__all__ = [
    "ARROW_STREAM_MEDIA_TYPE",
    "BODY_TIMEOUT_SECONDS",
    "ENV_CLIENTS",
    "ENV_SECRET",
    "HEAD_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_SESSION_SECONDS",
    "MAX_TOKEN_TTL_SECONDS",
    "MAX_WORKERS",
    "MIN_SECRET_LENGTH",
    "AssumptionStore",
    "BackgroundServer",
    "BodyLimit",
    "InFlightLimit",
    "RateLimit",
    "ServeSettings",
    "TokenError",
    "VerifiedTokens",
    "check_lifetime",
    "check_tls",
    "check_trusted_proxies",
    "create_app",
    "issue_token",
    "listening_socket",
    "parse_rate",
    "secret_from_env",
    "serve",
    "verify_token",
    "worker_app",
]
