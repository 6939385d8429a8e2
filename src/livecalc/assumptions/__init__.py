"""Assumptions: where a run's tables, curves and credentials come from.

Holds ``credentials`` (AMCredentials, CredentialManager), ``client`` (the Assumptions Manager
client that resolves ``am://name@version``), ``tables`` (mortality, lapse and other tables from
CSV, Parquet or ``am://``), ``curves`` (initial zero curves), and the
Assumptions Manager service: ``app`` (the FastAPI app), ``_serving`` (socket, uvicorn, workers,
TLS), ``_limits`` (request limits), ``tokens`` (its JWTs) and ``server`` (their public names);
``_transport`` holds the client's URL and TLS rules, ``_am_http`` its HTTP exchange
(pacing, retries, token refresh) and ``_am_cache`` its cache folder.

Layer 1: may import only the foundation modules (``livecalc.errors``, ``livecalc.masking``,
``livecalc.log``, ``livecalc._version``).
"""
