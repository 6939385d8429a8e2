"""The pipeline: a JSON config run as a DAG of engines.

Holds ``config`` (the pydantic models), ``loading`` (load_config: read, override, validate,
report every problem), ``graph`` (producers, order, cycles), ``runner`` with ``_node`` (chunks
and merge), ``_outputs`` (sinks) and ``_summary``, ``executors`` (local, processes, ray) and
``api`` (``livecalc.run`` and RunResult), and ``selection`` (running some nodes, their
upstream datasets read from files, the datasets a run keeps).

Layer 6: may import every layer below it; only the command line, the operations layer and the
integrations sit above.
"""
