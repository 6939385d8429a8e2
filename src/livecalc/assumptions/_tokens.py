"""The AM's tokens and secrets: signing, verifying, and reading them from the environment.

Tokens are HS256 JWTs signed with ``LIVECALC_AM_SECRET`` (at least 32 characters), issued by
``livecalc-am``, carrying ``sub`` (who), ``iat``, ``exp``, ``scope`` (glob patterns of the
assumption names it may read) and a unique ``jti``. Client credentials for ``POST /v1/token``
come from ``LIVECALC_AM_CLIENTS``. ``livecalc.assumptions.server`` re-exports the public names here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from livecalc.errors import ConfigurationError

__all__ = [
    "ENV_CLIENTS",
    "ENV_SECRET",
    "ISSUER",
    "MIN_SECRET_LENGTH",
    "TokenError",
    "issue_token",
    "parse_clients",
    "secret_from_env",
    "verify_token",
]

ENV_SECRET = "LIVECALC_AM_SECRET"
ENV_CLIENTS = "LIVECALC_AM_CLIENTS"
ISSUER = "livecalc-am"
MIN_SECRET_LENGTH = 32


class TokenError(Exception):
    """A token the server does not accept; ``reason`` is ``expired`` or ``invalid``."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def secret_from_env(env: Mapping[str, str] | None = None) -> str:
    """The signing secret from ``LIVECALC_AM_SECRET``.

    Raises:
        ConfigurationError: unset or shorter than 32 characters (the message says how to
            make one).
    """
    secret = (os.environ if env is None else env).get(ENV_SECRET, "")
    if len(secret) < MIN_SECRET_LENGTH:
        state = "is not set" if not secret else f"is shorter than {MIN_SECRET_LENGTH} characters"
        raise ConfigurationError(
            f"{ENV_SECRET} {state}: the AM signs its tokens with it; generate one with "
            "python -c 'import secrets; print(secrets.token_hex(32))' and export it"
        )
    return secret


def issue_token(
    secret: str,
    subject: str,
    *,
    ttl_seconds: float = 3600.0,
    scope: Iterable[str] = ("*",),
    now: float | None = None,
) -> str:
    """A signed HS256 JWT for ``subject`` valid for ``ttl_seconds``, reading ``scope``."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "iat": issued,
        "exp": issued + int(ttl_seconds),
        "scope": list(scope),
        # A unique id, so a token refreshed within the same second is still a new token.
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str, *, expired_grace_seconds: float = 0.0) -> dict[str, Any]:
    """The claims of a token signed with ``secret``.

    ``expired_grace_seconds`` accepts a token that expired at most that long ago (refresh).

    Raises:
        TokenError: forged, malformed or expired.
    """
    try:
        return dict(
            jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                leeway=expired_grace_seconds,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("expired", "the token has expired") from None
    except jwt.PyJWTError as exc:
        # PyJWT's messages name the failed check, never the token text.
        raise TokenError("invalid", f"the token is not valid ({exc})") from None


def parse_clients(text: str) -> dict[str, str]:
    """``id:secret,id2:secret2`` from ``LIVECALC_AM_CLIENTS``."""
    clients = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        client_id, sep, client_secret = item.partition(":")
        if not sep or not client_id or not client_secret:
            raise ConfigurationError(f"{ENV_CLIENTS}: expected id:secret[,id:secret...]")
        clients[client_id] = client_secret
    return clients
