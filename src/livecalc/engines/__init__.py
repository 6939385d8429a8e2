"""The built-in engines: ESG, projection and solver, registered like any plug-in.

Holds ``esg`` (with ``_esg_config``) and ``esg_check`` (the martingale and moment checks of a
scenario set), ``projection`` and ``solver``. Each is created by type name through
``EngineFactory`` (entry points ``livecalc.engines``), never imported by ``import livecalc``.

Layer 4: may import the foundation modules, ``assumptions``, ``runtime``, ``kernels`` and
``solver``.
"""
