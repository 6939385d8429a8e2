"""Policy and scenario files in, result files out: Parquet (or CSV) to and from record buffers.

``ParquetReader`` reads a policy or scenario file batch by batch straight into a record buffer
(its own, or one the caller allocated with ``BufferManager``), checking every value first:
required columns, whole numbers where the record holds integers, ranges, no nulls or NaN,
unique policy ids, scenarios sorted with years 1..Y. A bad file raises ``ConfigurationError``
naming the file, column, first bad row and the fix. Files ending in ``.csv`` are read as CSV
with the same checks. The column layouts are in docs/data.md.

``ParquetWriter`` streams record chunks into fixed-size row groups (zstd by default) of a
temporary file beside the target and renames it over the target only on a clean close, so a
failed run never leaves a half-written file. Its columns are the record dtype's fields, less
the ``reserved*`` padding, with ``policy_id`` always uint64 (the seed's result schema).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from livecalc.errors import ConfigurationError
from livecalc.io._parquet_checks import (
    EXT_RULES,
    POLICY_RULES,
    SCENARIO_RULES,
    ColumnRule,
    FileContext,
    check_scenario_order,
    check_unique_ids,
    column_values,
    require_columns,
)
from livecalc.io._parquet_writer import (
    DEFAULT_ROW_GROUP_SIZE,
    RECORD_TYPE_KEY,
    RECORD_TYPES,
    ParquetWriter,
    arrow_schema,
    record_type_name,
    write_records,
)
from livecalc.runtime.buffers import ALIGNMENT, POLICY_DTYPE, POLICY_EXT_DTYPE, SCENARIO_DTYPE

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "RECORD_TYPE_KEY",
    "ParquetReader",
    "ParquetWriter",
    "PolicyData",
    "aligned_records",
    "arrow_schema",
    "record_type_name",
    "write_records",
]

_BATCH_ROWS = 1 << 17
"""Rows checked and copied per step: small enough to stay in cache-friendly sizes, large
enough that the per-batch numpy calls cost nothing next to the data."""


def aligned_records(dtype: np.dtype[Any], count: int) -> np.ndarray[Any, Any]:
    """An uninitialised record array of ``count`` records starting on a 16-byte boundary."""
    dtype = np.dtype(dtype)
    # numpy does not promise the alignment: over-allocate and start at the first aligned byte.
    raw = np.empty(count * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start : start + count * dtype.itemsize].view(dtype)


@dataclass
class PolicyData:
    """Policies as records, with their in-force extension when the file has one.

    ``records`` is a POLICY_DTYPE array; ``ext`` is None or a POLICY_EXT_DTYPE array of the
    same length (index i describes ``records[i]``), filled when the file has the optional
    ``duration_months`` and/or ``policy_count`` columns (missing ones default to 0 and 1.0).
    """

    records: np.ndarray[Any, Any]
    ext: np.ndarray[Any, Any] | None = None

    def __len__(self) -> int:
        return len(self.records)


class _Source:
    """One open policy or scenario file: its columns, row count, and batches of columns."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.ctx = FileContext(Path(path), what)
        p = self.ctx.path
        if not p.exists():
            raise ConfigurationError(
                f"{what} file not found: {p}; check the path (relative paths in a config "
                "resolve against the config file's folder)"
            )
        if p.is_dir():
            raise ConfigurationError(f"{what} file {p} is a folder; give the path of one file")
        self._table: pa.Table | None = None
        self._file: pq.ParquetFile | None = None
        self.metadata: dict[bytes, bytes] = {}  # CSV has no key-value metadata
        try:
            if self.ctx.is_csv:
                self._table = pa_csv.read_csv(p)
                self.columns: list[str] = list(self._table.column_names)
                self.num_rows: int = self._table.num_rows
            else:
                self._file = pq.ParquetFile(p)
                self.columns = list(self._file.schema_arrow.names)
                self.num_rows = self._file.metadata.num_rows
                self.metadata = dict(self._file.schema_arrow.metadata or {})
        except (pa.ArrowException, OSError) as exc:
            kind = "CSV" if self.ctx.is_csv else "Parquet"
            raise ConfigurationError(
                f"{what} file {p}: not a readable {kind} file ({exc}); check that it is "
                f"{kind} and was fully written (name CSV files *.csv)"
            ) from exc

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The named columns in consecutive batches of rows."""
        try:
            if self._table is not None:
                yield from self._table.select(columns).to_batches(max_chunksize=_BATCH_ROWS)
            elif self._file is not None:
                yield from self._file.iter_batches(batch_size=_BATCH_ROWS, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigurationError(
                f"{self.ctx.what} file {self.ctx.path}: reading failed ({exc}); the file is "
                "damaged or was not fully written: write it again"
            ) from exc

    def close(self) -> None:
        """Release the file handle."""
        if self._file is not None:
            self._file.close()
        self._table = None

    def __enter__(self) -> _Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_out(
    ctx: FileContext, out: np.ndarray[Any, Any], dtype: np.dtype[Any], rows: int, arg: str
) -> None:
    if out.dtype != dtype:
        raise ConfigurationError(
            f"{arg} has dtype {out.dtype}, but {ctx.what} records need {dtype}; allocate it "
            "with BufferManager for the right BufferType"
        )
    if out.ndim != 1 or len(out) < rows:
        raise ConfigurationError(
            f"{arg} holds {len(out)} records, but {ctx.path} has {rows} rows; allocate at "
            "least ParquetReader().get_row_count(path) records"
        )


class ParquetReader:
    """Reads policy and scenario files (Parquet, or CSV by suffix) into record buffers.

    Example:
        >>> data = ParquetReader().read_policies("policies.parquet")  # doctest: +SKIP
        >>> data.records["age"].max() <= 120  # doctest: +SKIP
        True
    """

    def get_row_count(self, path: str | os.PathLike[str]) -> int:
        """Rows in the file: from the Parquet footer alone (CSV files are scanned)."""
        p = Path(path)
        if p.suffix.lower() != ".csv":
            with _Source(p, "data") as src:
                return src.num_rows
        if not p.exists():
            raise ConfigurationError(f"data file not found: {p}; check the path")
        try:
            # Count rows of the first column only, streaming: no table of the whole file.
            header = pa_csv.open_csv(p)
            first = header.schema.names[:1]
            header.close()
            reader = pa_csv.open_csv(
                p, convert_options=pa_csv.ConvertOptions(include_columns=first)
            )
            return sum(len(batch) for batch in reader)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigurationError(
                f"data file {p}: not a readable CSV file ({exc}); check its format"
            ) from exc

    def read_metadata(self, path: str | os.PathLike[str]) -> dict[str, str]:
        """The file's key-value metadata as text, from the Parquet footer alone (CSV: none)."""
        if Path(path).suffix.lower() == ".csv":
            return {}
        with _Source(path, "data") as src:
            raw = src.metadata
        # pyarrow's pandas schema entry is an implementation detail, not the caller's metadata.
        return {k.decode(): v.decode(errors="replace") for k, v in raw.items() if k != b"pandas"}

    def read_policies(self, path: str | os.PathLike[str]) -> PolicyData:
        """All policies of the file, with the in-force extension when it has those columns."""
        with _Source(path, "policy") as src:
            records = aligned_records(POLICY_DTYPE, src.num_rows)
            has_ext = any(rule.name in src.columns for rule in EXT_RULES)
            ext = aligned_records(POLICY_EXT_DTYPE, src.num_rows) if has_ext else None
            self._read_policies(src, records, ext)
        return PolicyData(records, ext)

    def read_policies_into(
        self,
        path: str | os.PathLike[str],
        records_out: np.ndarray[Any, Any],
        ext_out: np.ndarray[Any, Any] | None = None,
    ) -> int:
        """Read the file's policies into ``records_out[:n]`` and return n, the rows read.

        With ``ext_out`` (a POLICY_EXT_DTYPE buffer) the in-force extension is filled too, with
        defaults (0 months, 1.0 policies) for columns the file lacks.
        """
        with _Source(path, "policy") as src:
            return self._read_policies(src, records_out, ext_out)

    def read_scenarios(self, path: str | os.PathLike[str]) -> np.ndarray[Any, Any]:
        """All scenarios of the file as a SCENARIO_DTYPE array."""
        with _Source(path, "scenario") as src:
            out = aligned_records(SCENARIO_DTYPE, src.num_rows)
            self._read_scenarios(src, out)
        return out

    def read_scenarios_into(self, path: str | os.PathLike[str], out: np.ndarray[Any, Any]) -> int:
        """Read the file's scenarios into ``out[:n]`` and return n, the rows read."""
        with _Source(path, "scenario") as src:
            return self._read_scenarios(src, out)

    def read_records(
        self, path: str | os.PathLike[str], dtype: np.dtype[Any] | None = None
    ) -> np.ndarray[Any, Any]:
        """All records of a file of one LiveCalc record layout (a result file, a kept dataset).

        The layout is ``dtype`` when given, else the one the file names in its metadata
        (``livecalc.record_type``), else the one whose columns the file has exactly. Every
        value is checked as for policies and scenarios (no nulls, whole numbers within the
        field's type, finite reals); ``reserved*`` padding is zero.

        Raises:
            ConfigurationError: no such file, not Parquet, another layout, or a bad value.
        """
        with _Source(path, "record") as src:
            found = _layout_of(src)
            if dtype is not None and found is not None and np.dtype(dtype) != found:
                raise ConfigurationError(
                    f"record file {src.ctx.path}: holds {record_type_name(found)} records "
                    f"(columns {src.columns}), but {record_type_name(np.dtype(dtype))} records "
                    "are needed; give a file of that layout (docs/data.md)"
                )
            layout = np.dtype(dtype) if dtype is not None else found
            if layout is None:
                known = ", ".join(RECORD_TYPES)
                raise ConfigurationError(
                    f"record file {src.ctx.path}: columns {src.columns} match no LiveCalc record "
                    f"layout ({known}); give a file LiveCalc wrote (docs/data.md)"
                )
            rules = _record_rules(layout)
            require_columns(src.ctx, src.columns, rules)
            out = aligned_records(layout, src.num_rows)
            out.view(np.uint8)[:] = 0  # padding and reserved fields, which files leave out
            _fill(src, [(rule, out) for rule in rules], src.num_rows)
            if layout == SCENARIO_DTYPE:
                check_scenario_order(src.ctx, out["scenario_id"], out["year"])
        return out

    def _read_policies(
        self,
        src: _Source,
        records: np.ndarray[Any, Any],
        ext: np.ndarray[Any, Any] | None,
    ) -> int:
        n = src.num_rows
        require_columns(src.ctx, src.columns, POLICY_RULES)
        _check_out(src.ctx, records, POLICY_DTYPE, n, "records_out")
        targets = [(rule, records) for rule in POLICY_RULES]
        if ext is not None:
            _check_out(src.ctx, ext, POLICY_EXT_DTYPE, n, "ext_out")
            targets += [(rule, ext) for rule in EXT_RULES if rule.name in src.columns]
            ext[:n]["duration_months"] = 0
            ext[:n]["reserved"] = 0
            ext[:n]["policy_count"] = 1.0
        _fill(src, targets, n)
        check_unique_ids(src.ctx, records["policy_id"][:n])
        if ext is not None:
            ext[:n]["policy_id"] = records["policy_id"][:n]
        return n

    def _read_scenarios(self, src: _Source, out: np.ndarray[Any, Any]) -> int:
        n = src.num_rows
        require_columns(src.ctx, src.columns, SCENARIO_RULES)
        _check_out(src.ctx, out, SCENARIO_DTYPE, n, "out")
        _fill(src, [(rule, out) for rule in SCENARIO_RULES], n)
        check_scenario_order(src.ctx, out["scenario_id"][:n], out["year"][:n])
        return n


def _layout_of(src: _Source) -> np.dtype[Any] | None:
    """The record layout the file names in its metadata, else the one its columns match."""
    named = src.metadata.get(RECORD_TYPE_KEY.encode(), b"").decode(errors="replace")
    if named in RECORD_TYPES:
        return RECORD_TYPES[named]
    columns = set(src.columns)
    for dtype in RECORD_TYPES.values():
        if columns == {n for n in dtype.names or () if not n.startswith("reserved")}:
            return dtype
    return None


def _record_rules(dtype: np.dtype[Any]) -> tuple[ColumnRule, ...]:
    """Column rules for every field of a record layout but its ``reserved*`` padding: whole
    numbers within the field's integer type, or finite reals."""
    rules = []
    for name in dtype.names or ():
        if name.startswith("reserved"):
            continue
        field: np.dtype[Any] = dtype.fields[name][0] if dtype.fields else np.dtype("f8")
        if field.kind in "iu":
            info = np.iinfo(field)
            meaning = f"a whole number ({field.name})"
            rules.append(ColumnRule(name, "int", info.min, info.max, meaning))
        else:
            rules.append(ColumnRule(name, "float", -math.inf, math.inf, "a finite number"))
    return tuple(rules)


def _fill(src: _Source, targets: list[tuple[ColumnRule, np.ndarray[Any, Any]]], n: int) -> None:
    """Check each batch of the rules' columns and copy it into its record buffer's field."""
    row = 0
    for batch in src.batches([rule.name for rule, _ in targets]):
        m = batch.num_rows
        if row + m > n:
            raise ConfigurationError(
                f"{src.ctx.what} file {src.ctx.path}: holds more rows than its metadata says "
                f"({n}); the file is damaged: write it again"
            )
        for i, (rule, out) in enumerate(targets):
            values = column_values(src.ctx, batch.column(i), rule, row)
            # The values passed their range checks, so this cast is exact.
            out[rule.name][row : row + m] = values
        row += m
