"""Data in and out: Parquet and CSV files in the record layouts, and sample data.

Holds ``parquet`` (ParquetReader, ParquetWriter, with ``_parquet_checks`` naming file, column
and row of every bad value and ``_parquet_writer`` writing atomically) and ``generate``
(seeded realistic sample policies and scenarios).

Layer 5: may import every layer below it (foundation, assumptions, runtime, kernels, solver,
engines); ``generate`` runs the ESG engine to make scenarios.
"""
