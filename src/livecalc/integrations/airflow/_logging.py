"""Airflow's structlog configuration kept intact around LiveCalc code.

Airflow 3 logs through structlog, configured once per process; LiveCalc installs its own
structlog chain (masking, its JSON lines) when ``livecalc.log`` is imported. Without care the
first LiveCalc import in a DAG file or a task would take over Airflow's own task log. Every
entry point of this integration runs LiveCalc code inside ``livecalc_logging()``: LiveCalc's
chain while LiveCalc runs, Airflow's again afterwards (the processor list is restored in place,
since loggers bound earlier hold that very list).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import structlog

__all__ = ["livecalc_logging"]

_KEPT = ("wrapper_class", "context_class", "logger_factory", "cache_logger_on_first_use")


@contextlib.contextmanager
def livecalc_logging() -> Iterator[None]:
    """LiveCalc's log chain inside the block; the host's structlog configuration after it."""
    config = structlog.get_config()
    processors = list(config["processors"])
    kept = {key: config[key] for key in _KEPT}
    try:
        from livecalc.log import configure_logging, current_config

        configure_logging(current_config())
        yield
    finally:
        current = structlog.get_config()["processors"]
        current[:] = processors
        structlog.configure(processors=current, **kept)
