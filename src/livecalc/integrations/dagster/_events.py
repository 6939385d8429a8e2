"""What a step reports to Dagster after its LiveCalc run: materializations and check results."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from livecalc.integrations.dagster._plan import CheckTarget, PipelinePlan, Step
from livecalc.pipeline.api import RunResult

__all__ = ["check_results", "dataset_path", "materializations"]

PATH_KEY = "path"
"""Materialization metadata: the dataset's Parquet file, which downstream steps read."""

_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def dataset_path(result: RunResult, state: Mapping[str, Any], dataset: str) -> Path | None:
    """The file that holds ``dataset`` after the run, when there is one."""
    kept = state.get("datasets") or result.summary.extras.get("datasets") or {}
    path = kept.get(dataset) or result.written.get(dataset)
    return Path(path) if path is not None and Path(path).is_file() else None


def _rows(result: RunResult, path: Path | None, dataset: str) -> int | None:
    value = result.summary.datasets.get(dataset)
    if isinstance(value, np.ndarray):
        return len(value)
    if path is not None and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def key_metrics(outputs: Mapping[str, Any]) -> dict[str, float]:
    """A node's numbers worth a glance: its top-level numbers, ``metrics``, ``solution`` and
    the optimised parameters (the same ones the run store keeps in ``run_metrics``)."""
    flat: dict[str, float] = {}
    sections: list[tuple[str, Any]] = [
        ("", outputs),
        ("metrics.", outputs.get("metrics")),
        ("solution.", outputs.get("solution")),
    ]
    opt = outputs.get("optimization")
    if isinstance(opt, Mapping):
        sections.append(("optimization.parameters.", opt.get("parameters")))
        sections.append(("optimization.", {"objective_value": opt.get("objective_value")}))
    for prefix, values in sections:
        if isinstance(values, Mapping):
            for k, v in values.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    flat[f"{prefix}{k}"] = float(v)
    return flat


def materializations(
    plan: PipelinePlan, step: Step, result: RunResult, state: Mapping[str, Any]
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    """One ``MaterializeResult`` per dataset of the step whose node succeeded."""
    prov = result.summary.extras.get("provenance") or {}
    sha = {o["name"]: o["sha256"] for o in result.summary.extras.get("outputs", [])}
    for dataset in step.outputs:
        node_id = plan.producers[dataset]
        node = result.nodes.get(node_id)
        if node is None or node.status != "succeeded":
            continue
        path = dataset_path(result, state, dataset)
        metadata: dict[str, Any] = {
            "livecalc/run_id": result.run_id,
            "livecalc/status": str(state.get("status", "")),
            "livecalc/resumed": bool(state.get("resumed", False)),
            "node": node_id,
            "seconds": round(node.seconds, 6),
            "provenance": dg.MetadataValue.json(
                {k: prov.get(k) for k in ("config_path", "config_hash", "versions", "inputs")}
            ),
        }
        rows = _rows(result, path, dataset)
        if rows is not None:
            metadata["rows"] = rows
        if path is not None:
            metadata[PATH_KEY] = dg.MetadataValue.path(str(path))
            if dataset in sha:
                metadata["sha256"] = sha[dataset]
        for name, value in key_metrics(node.outputs).items():
            metadata[f"metrics/{name}"] = value
        if result.summary.extras.get("store"):
            metadata["run_store"] = dg.MetadataValue.path(str(result.summary.extras["store"]))
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(list(plan.keys[dataset])), metadata=metadata
        )


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return dg.MetadataValue.json(value if isinstance(value, dict) else {"value": value})


def check_results(
    plan: PipelinePlan,
    targets: tuple[CheckTarget, ...],
    evaluated: Sequence[Mapping[str, Any]],
    run_id: str,
    not_run: Sequence[Mapping[str, str]] = (),
) -> Iterator[dg.AssetCheckResult]:
    """Dagster's result of each check in ``targets``, from LiveCalc's own evaluation.

    ``evaluated`` is ``summary.extras["checks"]``: every check of the config in order, or, when
    the run evaluated some only (a run of some nodes), matched by name. A check the run did
    not evaluate fails with LiveCalc's reason (``not_run``, ``summary.extras
    ["checks_not_run"]``): a silent pass would hide what it is there to catch.
    """
    reasons = {c["name"]: c["reason"] for c in not_run}
    by_index = len(evaluated) == len(plan.config.checks)
    unused = list(evaluated)
    for target in targets:
        found: Mapping[str, Any] | None = None
        if by_index:
            found = evaluated[target.index]
        else:
            found = next((c for c in unused if c.get("name") == target.label), None)
            if found is not None:
                unused.remove(found)
        key = dg.AssetKey(list(plan.keys[target.dataset]))
        severity = _SEVERITY[target.severity]
        if found is None:
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=target.name,
                passed=False,
                severity=severity,
                description=f"LiveCalc run {run_id} did not evaluate check {target.label!r}: "
                + reasons.get(target.label, "not in its results"),
                metadata={"livecalc/run_id": run_id},
            )
            continue
        metadata: dict[str, Any] = {"livecalc/run_id": run_id, "kind": str(found.get("kind"))}
        for field in ("value", "threshold"):
            if found.get(field) is not None:
                metadata[field] = _json_value(found[field])
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=target.name,
            passed=bool(found["passed"]),
            severity=severity,
            description=str(found.get("message", "")),
            metadata=metadata,
        )
