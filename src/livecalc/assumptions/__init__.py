"""Assumptions: where a run's tables, curves and credentials come from.

Holds ``credentials`` (AMCredentials, CredentialManager), ``client`` (the Assumptions Manager
client that resolves ``am://name@version``), ``tables`` (mortality, lapse and other tables from
CSV, Parquet or ``am://``), ``curves`` (initial zero curves), ``server`` and ``_tokens`` (the
Assumptions Manager service and its JWTs).

Layer 1: may import only the foundation modules (``livecalc.errors``, ``livecalc.masking``,
``livecalc.log``, ``livecalc._version``).
"""
