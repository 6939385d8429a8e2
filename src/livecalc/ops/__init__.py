"""Operating LiveCalc: the run store, provenance, checkpoints and resume, declared checks,
SLA and alerts, and the HTML run report.

Layer 7: above ``pipeline`` (which it follows through ``pipeline.hooks.RunHooks``), below the
command line. DuckDB, httpx and pyarrow are imported by the modules that use them, so
``import livecalc`` stays light. The store's schema and every behaviour: docs/operations.md.
"""
