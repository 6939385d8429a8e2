"""Numba kernels, each beside its plain-numpy or pure-Python reference.

ESG (``esg``, ``esg_models``, ``esg_rng``, reference ``esg_reference``) and projection
(``projection``, ``projection_pv``, ``projection_single``, ``projection_basis``,
``projection_discount``, ``projection_run``, ``projection_audit``, reference
``projection_numpy``). Kernels raise plain ``ValueError``; the engine calling them wraps it.

Layer 3: may import the foundation modules, ``assumptions`` (tables) and ``runtime`` (record
dtypes).
"""
