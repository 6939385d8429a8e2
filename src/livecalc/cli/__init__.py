"""The ``livecalc`` command: typer sub-apps over the public API.

Holds ``app`` (the command, ``run``, ``validate``, ``schema``, ``engines``, ``demo``,
``warmup``), ``generate`` (``livecalc generate policies/scenarios``), ``esg`` (``livecalc esg
check``), ``am`` (``livecalc am serve/token/check``), ``runs`` (the run store) and ``demo``
(the demo's data and config); ``_summary`` (a run's progress bars and summary) and
``_common`` (consoles, options, user errors, signals) serve them. Heavy modules are imported
inside the commands that use them, so ``livecalc --help`` stays fast.

Layer 7 (top): may import every package.
"""

from __future__ import annotations


def main() -> None:
    """The console script's entry point (``livecalc = "livecalc.cli:main"``)."""
    from livecalc.cli.app import main as app_main

    app_main()
