"""The Dagster resources: ``LiveCalcResource`` (one pipeline) and the run store as DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from livecalc.errors import ConfigurationError
from livecalc.ops.home import store_file
from livecalc.ops.store import RunStore
from livecalc.pipeline.api import RunResult
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.runner import ProgressCallback
from livecalc.ports import RunContext

__all__ = ["STORE_RESOURCE_KEY", "LiveCalcResource", "RunStoreResource", "run_store_resource"]

STORE_RESOURCE_KEY = "livecalc_store"
"""The resource key of the run store (a read-only ``DuckDBResource``)."""


class LiveCalcResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """One LiveCalc pipeline config, with the executor it runs on and the run store it is
    recorded in. Every field can be changed at launch (Dagster's launchpad)."""

    config: str = Field(description="the pipeline config file (JSON)")
    executor: str | None = Field(
        default=None,
        description="local, processes or ray (default: the config's run.executor)",
    )
    store: str | None = Field(
        default=None,
        description="the run store: a folder or .duckdb file (default: $LIVECALC_HOME)",
    )

    def load(self) -> PipelineConfig:
        """The validated config (ConfigurationError naming every problem otherwise)."""
        return load_config(self.config)

    def run(
        self,
        context: RunContext,
        *,
        progress: ProgressCallback | None = None,
        **selection: Any,
    ) -> RunResult:
        """``livecalc.run`` of this config under ``context``, recorded with source ``dagster``.

        ``selection``: the node-selection options of ``livecalc.run`` (``nodes``,
        ``datasets``, ``keep_datasets``).
        """
        from livecalc.ops.session import run

        return run(
            self.config,
            executor=self.executor,
            store=self.store,
            context=context,
            progress=progress,
            source="dagster",
            **selection,
        )


class RunStoreResource(DuckDBResource):
    """The run store as a read-only DuckDB resource that folds the store's journal in
    before each connection: records a process wrote last go to the journal first
    (docs/operations.md), so a plain DuckDB connection could miss a step that just ran."""

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        RunStore(self.database).fold()
        with super().get_connection() as con:
            yield con


def run_store_resource(store: str | Path | None = None) -> RunStoreResource:
    """The run store (``runs.duckdb`` in ``store``, default ``$LIVECALC_HOME``) as a
    read-only ``dagster_duckdb.DuckDBResource``; the store is created when missing, so the
    resource opens before the first run (its tables: docs/operations.md).

    Raises:
        ConfigurationError: ``store`` is no folder or ``.duckdb`` file that can hold the store
            (a file of another kind, a folder inside a file, a folder that cannot be made).
    """
    file = store_file(store)
    try:
        RunStore(store).schema_version()
    except OSError as exc:
        where = f"store {str(store)!r}" if store is not None else f"$LIVECALC_HOME store {file}"
        raise ConfigurationError(
            f"{where}: cannot hold the run store {file} ({exc.strerror or exc}); give a folder "
            "(or a .duckdb file) LiveCalc can write"
        ) from None
    return RunStoreResource(database=str(file), connection_config={"access_mode": "READ_ONLY"})
