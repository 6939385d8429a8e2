"""ParquetWriter: record chunks streamed into row groups of a file that appears atomically.

Chunks are copied field by field into one contiguous column buffer per field (allocated once,
reused for every row group), which pyarrow then wraps without a copy. A structured record's
fields are strided, so that one copy is the least any columnar writer needs; reusing the same
warm buffers avoids paying for fresh memory on every chunk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.runtime.buffers import (
    CASHFLOW_DTYPE,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DETAIL_EXT_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)
from livecalc.runtime.leftovers import check_replaceable, sweep_temp_files, temp_path

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "RECORD_TYPES",
    "RECORD_TYPE_KEY",
    "ParquetWriter",
    "arrow_schema",
    "record_type_name",
    "write_records",
]

DEFAULT_ROW_GROUP_SIZE = 1 << 20
"""Rows per row group: about 64 MB of RESULT_DETAIL columns, large enough for fast scans,
small enough that a reader can skip by statistics."""

RECORD_TYPE_KEY = "livecalc.record_type"
"""Key-value metadata key naming the record type the file holds (e.g. ``RESULT_DETAIL``)."""

RECORD_TYPES = {
    "POLICY": POLICY_DTYPE,
    "POLICY_EXT": POLICY_EXT_DTYPE,
    "SCENARIO": SCENARIO_DTYPE,
    "RESULT": RESULT_DTYPE,
    "RESULT_DETAIL": RESULT_DETAIL_DTYPE,
    "SCENARIO_TOTAL": SCENARIO_TOTAL_DTYPE,
    "RESULT_DETAIL_EXT": RESULT_DETAIL_EXT_DTYPE,
    "CASHFLOW": CASHFLOW_DTYPE,
}
"""The record layouts by the name files carry in ``livecalc.record_type``."""


def _record_type(dtype: np.dtype[Any]) -> str | None:
    return next((name for name, known in RECORD_TYPES.items() if known == dtype), None)


def record_type_name(dtype: np.dtype[Any]) -> str:
    """The layout's name (``RESULT``, ``SCENARIO``...), or the dtype itself for another one."""
    return _record_type(dtype) or str(dtype)


def arrow_schema(dtype: np.dtype[Any]) -> pa.Schema:
    """The file columns for a record dtype: its fields in order, less ``reserved*`` padding.

    ``policy_id`` is always uint64 (RESULT stores it as uint32; files use one type for ids).
    """
    dtype = np.dtype(dtype)
    if dtype.names is None or dtype.fields is None:
        raise ConfigurationError(
            f"ParquetWriter needs a record (structured) dtype, got {dtype}; pass one of the "
            "livecalc.runtime.buffers dtypes"
        )
    fields = []
    for name in dtype.names:
        if name.startswith("reserved"):
            continue
        field_dtype = dtype.fields[name][0]
        if field_dtype.shape or field_dtype.names is not None:
            raise ConfigurationError(
                f"record field {name!r} has dtype {field_dtype}; only scalar fields can be "
                "written as columns"
            )
        kind = pa.uint64() if name == "policy_id" else pa.from_numpy_dtype(field_dtype)
        fields.append(pa.field(name, kind, nullable=False))
    return pa.schema(fields)


class ParquetWriter:
    """Streams record chunks into ``path`` atomically; a context manager.

    Rows go to a temporary file in the same folder, in row groups of ``row_group_size`` rows
    whatever the chunk sizes; a clean ``close`` renames it over ``path``. An exception inside
    the ``with`` block, or ``abort()``, deletes the temporary file: nothing appears at ``path``
    and a file already there is left untouched. ``metadata`` goes into the file's key-value
    metadata, with ``livecalc.record_type`` added for the known record dtypes. A path ending in
    ``.csv`` is written as CSV (same columns, no metadata: CSV has none). The rename is atomic
    but not fsync'ed: a power cut may lose a just-closed file, never expose a partial one.

    Example:
        >>> with ParquetWriter("out/results.parquet", RESULT_DETAIL_DTYPE) as w:  # doctest: +SKIP
        ...     for chunk in chunks:
        ...         w.write_chunk(chunk)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dtype: np.dtype[Any],
        metadata: Mapping[str, str] | None = None,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        compression: str = "zstd",
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.rows_written = 0
        if row_group_size < 1:
            raise ConfigurationError(f"row_group_size must be >= 1, got {row_group_size}")
        self.row_group_size = row_group_size
        schema = arrow_schema(self.dtype)
        self.schema = schema.with_metadata(self._metadata(metadata))
        self._columns: dict[str, np.ndarray[Any, Any]] = {}
        self._fill = 0
        self._is_csv = self.path.suffix.lower() == ".csv"
        folder = self.path.parent
        if self.path.is_dir():
            raise ConfigurationError(f"cannot write {self.path}: it is a folder; give a file path")
        if not folder.is_dir():
            raise ConfigurationError(
                f"cannot write {self.path}: folder {folder} does not exist; create it first"
            )
        check_replaceable(self.path)
        # Temporary files of runs killed while writing this output (their pid is dead) go.
        sweep_temp_files(self.path)
        self._tmp = temp_path(self.path)
        self._writer: Any = None
        try:
            if self._is_csv:
                self._writer = pa_csv.CSVWriter(str(self._tmp), self.schema)
            else:
                self._writer = pq.ParquetWriter(
                    str(self._tmp),
                    self.schema,
                    compression=compression,
                    # Ids and years repeat, so dictionaries pay for them; float amounts rarely
                    # repeat, and trying a dictionary on them first only costs time.
                    use_dictionary=[f.name for f in schema if not pa.types.is_floating(f.type)],
                )
        except (pa.ArrowException, OSError, ValueError) as exc:
            self._remove_tmp()
            raise ConfigurationError(
                f"cannot write {self.path}: {exc}; check the folder's permissions and the "
                f"compression ({compression!r}: one of zstd, snappy, gzip, lz4, brotli, none)"
            ) from exc
        self._closed = False

    def _metadata(self, metadata: Mapping[str, str] | None) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, value in (metadata or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigurationError(
                    f"metadata {key!r}: keys and values must be strings; encode others as JSON"
                )
            result[key] = value
        record_type = _record_type(self.dtype)
        if record_type is not None:
            result.setdefault(RECORD_TYPE_KEY, record_type)
        return result

    def write_chunk(self, records: np.ndarray[Any, Any]) -> None:
        """Append a chunk of records (the writer's dtype); full row groups are written out."""
        if self._closed:
            raise ConfigurationError(f"ParquetWriter for {self.path} is already closed")
        if records.dtype != self.dtype:
            raise ConfigurationError(
                f"chunk for {self.path} has dtype {records.dtype}, but the writer was opened "
                f"for {self.dtype}; open one writer per record type"
            )
        if not self._columns:
            self._columns = {
                f.name: np.empty(self.row_group_size, dtype=f.type.to_pandas_dtype())
                for f in self.schema
            }
        start = 0
        while start < len(records):
            take = min(len(records) - start, self.row_group_size - self._fill)
            part = records[start : start + take]
            for name, column in self._columns.items():
                column[self._fill : self._fill + take] = part[name]
            self._fill += take
            start += take
            if self._fill == self.row_group_size:
                self._flush()

    def _flush(self) -> None:
        if self._fill == 0:
            return
        arrays = [pa.array(column[: self._fill]) for column in self._columns.values()]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        try:
            if self._is_csv:
                self._writer.write_batch(batch)
            else:
                self._writer.write_batch(batch, row_group_size=self.row_group_size)
        except (pa.ArrowException, OSError) as exc:
            self.abort()
            raise ExecutionError(f"writing {self.path} failed: {exc}") from exc
        self.rows_written += self._fill
        self._fill = 0

    def close(self) -> None:
        """Write the last row group and move the file into place (no-op once closed)."""
        if self._closed:
            return
        try:
            self._flush()
            self._writer.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._columns = {}

    def abort(self) -> None:
        """Discard everything written: the temporary file goes, ``path`` is untouched."""
        self._closed = True
        self._columns = {}
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary file behind.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.abort()


def write_records(
    path: str | os.PathLike[str],
    records: np.ndarray[Any, Any],
    metadata: Mapping[str, str] | None = None,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    compression: str = "zstd",
) -> int:
    """Write a whole record array to ``path`` atomically; returns the rows written."""
    with ParquetWriter(path, records.dtype, metadata, row_group_size, compression) as writer:
        writer.write_chunk(records)
    return writer.rows_written
