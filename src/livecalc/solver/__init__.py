"""The maths behind the solver engine: risk measures, optimisation and goal-seek.

Holds ``risk`` (mean, percentiles, VaR, CTE over RESULT records), ``optimize`` (with its config
``_optconfig``, problem ``_optproblem`` and goal-seek ``_goalseek``) and ``expr`` (safe metric
expressions, parsed with ast, never eval). The engine itself is ``livecalc.engines.solver``.

Layer 3: may import the foundation modules, ``livecalc.assumptions`` and ``livecalc.runtime``.
"""
