"""Credentials for the Assumptions Manager (AM): the URL, a JWT and a cache folder.

Tokens are ``pydantic.SecretStr`` and are unwrapped only where they are sent, so no repr,
error message or log line can show one; ``mask_secret`` gives the seed's masked form.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

__all__ = ["AMCredentials", "mask_secret"]


def mask_secret(secret: str | SecretStr | None) -> str:
    """The seed's masked form of a secret: first 4 ... last 4, or ``***`` under 8 characters."""
    if secret is None:
        return ""
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if len(text) < 8:
        return "***"
    return f"{text[:4]}...{text[-4:]}"


class AMCredentials(BaseModel):
    """What an engine needs to reach the Assumptions Manager."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    am_url: str
    am_token: SecretStr
    cache_dir: str | None = None

    def __repr__(self) -> str:
        return (
            f"AMCredentials(am_url={self.am_url!r}, am_token={mask_secret(self.am_token)!r}, "
            f"cache_dir={self.cache_dir!r})"
        )

    __str__ = __repr__

    def as_legacy_dict(self) -> dict[str, Any]:
        """The seed's dict form, for engines written against the original interface."""
        return {
            "am_url": self.am_url,
            "am_token": self.am_token.get_secret_value(),
            "cache_dir": self.cache_dir or "",
        }
