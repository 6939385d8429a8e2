"""structlog setup: the one place logging is configured."""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["get_logger"]


def get_logger(**initial: Any) -> Any:
    """A structlog logger with ``initial`` key-values bound."""
    return structlog.get_logger("livecalc").bind(**initial)
