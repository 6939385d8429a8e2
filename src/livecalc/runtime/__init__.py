"""Runtime: what every engine runs on.

Holds ``engine`` (ICalcEngine, EngineInfo, ExecutionResult), ``buffers`` (record dtypes and
BufferManager, shared memory), ``lifecycle`` (EngineLifecycleManager, its states, and the
inline/process hosts ``_hosts`` and the worker ``_worker``), ``factory`` (EngineFactory and
plug-in discovery) and ``native`` (engines behind the C ABI).

Layer 2: may import the foundation modules and ``livecalc.assumptions`` (credentials).
"""
