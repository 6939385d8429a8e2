"""The AM's tokens and secrets: signing, verifying, and reading them from the environment.

Tokens are HS256 JWTs signed with ``LIVECALC_AM_SECRET`` (at least 32 characters), issued by
``livecalc-am``, carrying ``sub`` (who), ``iat``, ``exp``, ``scope`` (glob patterns of the
assumption names it may read; a JSON list of strings, nothing else), ``auth_time`` (when the
chain of refreshes it belongs to began) and a unique ``jti``; the header's ``kid`` names the
signing key. Client credentials for ``POST /v1/token`` come from ``LIVECALC_AM_CLIENTS``.
``livecalc.assumptions.server`` re-exports the public names here.

Lifetimes are finite and capped: a token lives at most ``MAX_TOKEN_TTL_SECONDS``, and a chain
of refreshes at most ``max_session_seconds`` from its first token (``auth_time``), so a
stolen token cannot be renewed forever. Revocation: rotate the secret; every token signed
with the old one (and every chain of refreshes) stops working at once, with a message naming
the retired key id.
"""

from __future__ import annotations

import hashlib
import math
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
    "MAX_SESSION_SECONDS",
    "MAX_TOKEN_TTL_SECONDS",
    "MIN_SECRET_LENGTH",
    "TokenError",
    "VerifiedTokens",
    "check_lifetime",
    "issue_token",
    "key_id",
    "parse_clients",
    "secret_from_env",
    "verify_token",
]

ENV_SECRET = "LIVECALC_AM_SECRET"
ENV_CLIENTS = "LIVECALC_AM_CLIENTS"
ISSUER = "livecalc-am"
MIN_SECRET_LENGTH = 32
MAX_TOKEN_TTL_SECONDS = 30 * 24 * 3600.0
"""The longest lifetime of one token (30 days)."""
_MAX_VERIFIED_TOKENS = 10_000
MAX_SESSION_SECONDS = 90 * 24 * 3600.0
"""The longest a chain of refreshes may last, from its first token (90 days)."""


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


def check_lifetime(name: str, seconds: float, *, maximum: float, allow_zero: bool = False) -> float:
    """``seconds`` when it is a finite number of seconds in (0, maximum] ([0, ...] with zero).

    Raises:
        ConfigurationError: NaN, infinite, negative (or zero) or above ``maximum``; the
            message names the option and the range.
    """
    low = "0" if allow_zero else "more than 0"
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
        or seconds > maximum
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds from {low} to {maximum:.0f} "
            f"({maximum / 86400:g} days); got {seconds!r}"
        )
    return float(seconds)


def key_id(secret: str) -> str:
    """A short public name of the signing key, so a rotated key is recognisable.

    A hash of a label and the secret: it says which key signed a token, nothing about it.
    """
    return hashlib.sha256(b"livecalc-am-kid\0" + secret.encode()).hexdigest()[:16]


def _checked_scope(scope: object) -> list[str]:
    """``scope`` as a list of strings; a string is refused (it would read as its letters)."""
    if isinstance(scope, str | bytes) or not isinstance(scope, Iterable):
        raise ConfigurationError(
            f"scope must be a list of name patterns such as ['lapse-*'], not {type(scope).__name__}"
        )
    patterns = list(scope)
    if not all(isinstance(p, str) and p for p in patterns):
        raise ConfigurationError("scope must be a list of non-empty strings (name patterns)")
    return patterns


def issue_token(
    secret: str,
    subject: str,
    *,
    ttl_seconds: float = 3600.0,
    scope: Iterable[str] = ("*",),
    now: float | None = None,
    auth_time: int | None = None,
) -> str:
    """A signed HS256 JWT for ``subject`` valid for ``ttl_seconds``, reading ``scope``.

    ``auth_time`` is when the chain of refreshes began (now for a first token).

    A negative ``ttl_seconds`` gives a token that has already expired (for tests).

    Raises:
        ConfigurationError: ``scope`` is a string or holds non-strings, or ``ttl_seconds`` is
            not a finite number or is above ``MAX_TOKEN_TTL_SECONDS``.
    """
    ttl = check_lifetime(
        "ttl_seconds", abs(ttl_seconds), maximum=MAX_TOKEN_TTL_SECONDS, allow_zero=True
    )
    ttl = float(ttl_seconds)
    patterns = _checked_scope(scope)
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "iat": issued,
        "exp": issued + int(ttl),
        "auth_time": issued if auth_time is None else int(auth_time),
        "scope": patterns,
        # A unique id, so a token refreshed within the same second is still a new token.
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_id(secret)})


def verify_token(secret: str, token: str, *, expired_grace_seconds: float = 0.0) -> dict[str, Any]:
    """The claims of a token signed with ``secret``.

    ``expired_grace_seconds`` accepts a token that expired at most that long ago (refresh).

    Raises:
        TokenError: forged, malformed or expired.
    """
    try:
        claims = dict(
            jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                leeway=expired_grace_seconds,
                options={"require": ["exp", "iat", "sub", "iss", "scope"]},
            )
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("expired", "the token has expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("invalid", _signature_message(secret, token)) from None
    except jwt.PyJWTError as exc:
        # PyJWT's messages name the failed check, never the token text.
        raise TokenError("invalid", f"the token is not valid ({exc})") from None
    scope = claims["scope"]
    # A string scope would be read letter by letter, and its '*' would grant everything.
    if not isinstance(scope, list) or not all(isinstance(p, str) for p in scope):
        raise TokenError("invalid", "the token is not valid (its scope is not a list of names)")
    return claims


def _signature_message(secret: str, token: str) -> str:
    """Why a signature failed, naming the key id the token claims when it is not ours."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        kid = None
    if isinstance(kid, str) and kid != key_id(secret):
        return (
            f"the token is not valid (signed with key {kid[:16]!r}, which this server does not "
            "use: the key was rotated, or the token is forged or for another AM; ask for a new "
            "token)"
        )
    return "the token is not valid (Signature verification failed)"


class VerifiedTokens:
    """``verify_token`` with a memory: a token seen before costs a dict lookup.

    Only the claims of valid tokens are kept, each until its ``exp``; the memory is emptied
    when it holds ``_MAX_VERIFIED_TOKENS``, so it stays bounded.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._claims: dict[str, dict[str, Any]] = {}

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims (TokenError when forged, malformed or expired)."""
        found = self._claims.get(token)
        if found is not None and found["exp"] > time.time():
            return found
        found = verify_token(self._secret, token)
        if len(self._claims) >= _MAX_VERIFIED_TOKENS:
            self._claims.clear()
        self._claims[token] = found
        return found


def parse_clients(text: str) -> dict[str, str]:
    """``id:secret,id2:secret2`` from ``LIVECALC_AM_CLIENTS``."""
    clients = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        client_id, sep, client_secret = item.partition(":")
        if not sep or not client_id or not client_secret:
            raise ConfigurationError(f"{ENV_CLIENTS}: expected id:secret[,id:secret...]")
        clients[client_id] = client_secret
    return clients
