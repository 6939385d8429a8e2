"""Integrations: LiveCalc driven by a scheduler (``livecalc.integrations.airflow``, Dagster).

Each integration is an optional extra (``pip install 'livecalc[airflow]'``): nothing here is
imported by ``import livecalc``. An integration adapts the scheduler to the ports of
``livecalc.ports`` (its ``RunContext``) and calls ``livecalc.run``; it holds no run logic.
"""
