"""Where LiveCalc keeps its state: ``$LIVECALC_HOME`` (default ``~/.livecalc``).

At the bottom layer, so that every layer (the Assumptions Manager's cache among them) finds
the same folder; the run store's files in it are named by ``livecalc.ops.home``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_HOME", "livecalc_home"]

ENV_HOME = "LIVECALC_HOME"


def livecalc_home() -> Path:
    """``$LIVECALC_HOME``, or ``~/.livecalc`` when it is not set."""
    value = os.environ.get(ENV_HOME)
    return Path(value).expanduser() if value else Path.home() / ".livecalc"
