"""The run's files: data sources read into records, record outputs written as Parquet.

Which outputs are written is decided before anything runs (``OutputPlan.of``): the config's
``output.write`` list, or by default the record output of every node that reads policies
(the projection), or failing that of the last node that has outputs. An output that no other
node reads is streamed to its file chunk by chunk; one that another node reads is kept in
memory and written when its node finishes. Every file is written atomically by
``ParquetWriter``: a failed node leaves no file behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.io.parquet import ParquetReader, ParquetWriter, PolicyData
from livecalc.pipeline.config import DataSource, PipelineConfig
from livecalc.pipeline.graph import EngineGraph

__all__ = ["DATASET_KEY", "OutputPlan", "StreamSink", "load_source", "policy_ext_name"]

DATASET_KEY = "livecalc.dataset"
"""Parquet key-value metadata key naming the dataset a file holds (``scenarios``...), so a
file given as another dataset (``datasets=``) is refused."""


def policy_ext_name(source: str) -> str:
    """The dataset name of a policy source's in-force extension records."""
    return f"{source}_ext"


def load_source(name: str, src: DataSource, config: PipelineConfig) -> np.ndarray | PolicyData:
    """The records of one data source (policies come with their extension, if any)."""
    path = config.resolve(src.path)
    reader = ParquetReader()
    kind = src.resolved_kind(name)
    try:
        if kind == "scenarios":
            return reader.read_scenarios(path)
        data = reader.read_policies(path)
    except ConfigurationError as exc:
        other = "policies" if kind == "scenarios" else "scenarios"
        found = str(exc).partition("; found ")[2]
        other_id = "'policy_id'" if other == "policies" else "'scenario_id'"
        if src.kind is not None or other_id not in found:
            raise
        # The kind was guessed from the source's name, and the file holds the other kind:
        # the fix is to state it.
        raise ConfigurationError(
            f"data_sources.{name}: {exc} (read as {kind}, guessed from the name {name!r}; "
            f'if the file holds {other}, add "kind": "{other}" to the source)'
        ) from None
    if len(data.records) == 0:
        # Nothing to value: every downstream engine would fail or value nothing.
        raise ConfigurationError(
            f"data_sources.{name}: policy file {path} has no rows; give a file with at least "
            "one policy"
        )
    return data


class StreamSink:
    """One output file written chunk by chunk; committed on success, removed on failure."""

    def __init__(self, path: Path, metadata: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.records = 0
        self.metadata = dict(metadata or {})
        self._writer: ParquetWriter | None = None

    def write(self, records: np.ndarray) -> None:
        """Append one chunk's records (copied into the file before the buffer is reused).

        Raises:
            ExecutionError: the file cannot be written (disk full, file too large...).
        """
        try:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = ParquetWriter(self.path, records.dtype, self.metadata)
            self._writer.write_chunk(records)
        except (OSError, ExecutionError) as exc:
            raise self._write_error(exc) from exc
        self.records += len(records)

    def commit(self) -> None:
        """Finish the file (an empty output still gets its file, with no rows)."""
        if self._writer is None:
            return
        try:
            self._writer.close()
        except (OSError, ExecutionError) as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: OSError | ExecutionError) -> ExecutionError:
        # The writer's own error says "writing <path> failed: <reason>": keep the reason.
        reason = str(exc).partition(" failed: ")[2] or str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        return ExecutionError(
            f"cannot write {str(self.path)!r} ({reason}); free disk space, raise the file "
            "size limit or choose another output.path"
        )

    def abort(self) -> None:
        """Drop the temporary file: nothing is left at the target path."""
        if self._writer is not None:
            self._writer.abort()


@dataclass
class OutputPlan:
    """Which datasets go to which files, and whether each is streamed or written whole."""

    paths: dict[str, Path]
    streamed: set[str]
    metadata: dict[str, str] = field(default_factory=dict)
    written: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, graph: EngineGraph) -> OutputPlan:
        """The plan for the graph's config (``EngineGraph.output_paths``)."""
        paths = graph.output_paths()
        names = list(paths)
        streamed = {name for name in names if not graph.consumers(name)}
        return cls(paths, streamed)

    def is_streamed(self, dataset: str) -> bool:
        """Whether ``dataset`` went to its file chunk by chunk and is not kept in memory."""
        return dataset in self.streamed and dataset in self.written

    def stream_sink(self, node_id: str, dataset: str | None) -> StreamSink | None:
        """A sink for a streamed dataset, or None when the node's output is kept in memory."""
        if dataset is None or dataset not in self.streamed:
            return None
        return _TrackedSink(self, dataset, self.paths[dataset])

    def write_whole(
        self, dataset: str, records: np.ndarray, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Write an in-memory dataset to its file, if it is one to write."""
        path = self.paths.get(dataset)
        if path is None or dataset in self.written:
            return
        sink = StreamSink(path, {**self.metadata, DATASET_KEY: dataset, **(metadata or {})})
        try:
            sink.write(records)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        self.written[dataset] = path


class _TrackedSink(StreamSink):
    """A StreamSink that records its file in the plan once committed."""

    def __init__(self, plan: OutputPlan, dataset: str, path: Path) -> None:
        super().__init__(path, {**plan.metadata, DATASET_KEY: dataset})
        self._plan = plan
        self._dataset = dataset

    def commit(self) -> None:
        super().commit()
        if self._writer is not None:
            self._plan.written[self._dataset] = self.path
