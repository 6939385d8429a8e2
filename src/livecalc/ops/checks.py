"""Declared checks: what a good result looks like, evaluated on a run's outputs.

Each entry of the config's ``checks`` list (``pipeline.operations.CheckConfig``) gives one
``CheckResult``: passed, the value seen, the threshold, a one-line message. A check that
cannot be evaluated (a dataset not kept, a metric missing) fails with the reason: a check
that silently passes on missing data would hide exactly what it is there to catch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import get_logger
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.operations import CheckConfig, split_comparison
from livecalc.runtime.records import POLICY_DTYPE, SCENARIO_DTYPE

__all__ = ["CheckResult", "RunData", "evaluate_checks", "recheck_run"]

_log = get_logger()

_COMPARE = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one declared check."""

    name: str
    kind: str
    severity: str
    passed: bool
    value: Any
    threshold: Any
    message: str
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class _Unavailable(Exception):
    """What a check needs is not there; the message says what."""


@dataclass
class RunData:
    """What checks read: datasets (records in memory, or Parquet files) and node outputs."""

    datasets: Mapping[str, Any]
    statistics: Mapping[str, Mapping[str, Any]]
    config: PipelineConfig

    def column(self, dataset: str, column: str) -> np.ndarray:
        """One column of a dataset, from memory or read from its file."""
        value = self.datasets.get(dataset)
        if isinstance(value, np.ndarray):
            if column not in (value.dtype.names or ()):
                raise _Unavailable(f"{dataset} has no column {column!r}")
            return np.asarray(value[column])
        if isinstance(value, str | Path) and Path(value).is_file():
            import pyarrow.parquet as pq

            names = pq.read_schema(value).names
            if column not in names:
                raise _Unavailable(f"{dataset} has no column {column!r}")
            return np.asarray(pq.read_table(value, columns=[column]).column(0).to_numpy())
        raise _Unavailable(f"dataset {dataset!r} is not available (not kept and not written)")

    def columns(self, dataset: str) -> list[str]:
        """A dataset's value columns (``reserved`` padding left out)."""
        value = self.datasets.get(dataset)
        if isinstance(value, np.ndarray):
            names = list(value.dtype.names or ())
        elif isinstance(value, str | Path) and Path(value).is_file():
            import pyarrow.parquet as pq

            names = list(pq.read_schema(value).names)
        else:
            raise _Unavailable(f"dataset {dataset!r} is not available (not kept and not written)")
        return [n for n in names if not n.startswith("reserved")]

    def rows(self, dataset: str) -> int:
        """A dataset's row count."""
        value = self.datasets.get(dataset)
        if isinstance(value, np.ndarray):
            return len(value)
        if isinstance(value, str | Path) and Path(value).is_file():
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(value).metadata.num_rows)
        raise _Unavailable(f"dataset {dataset!r} is not available (not kept and not written)")

    def metrics(self, node: str | None) -> dict[str, float]:
        """Numbers a metric expression may name: the solver's metrics, solution, statistics."""
        values: dict[str, float] = {}
        for node_id, outputs in self.statistics.items():
            if node is not None and node_id != node:
                continue
            for source in (outputs, outputs.get("metrics"), outputs.get("optimization")):
                if isinstance(source, Mapping):
                    values.update({k: float(v) for k, v in source.items() if _is_number(v)})
            opt = outputs.get("optimization")
            if isinstance(opt, Mapping) and isinstance(opt.get("parameters"), Mapping):
                values.update({k: float(v) for k, v in opt["parameters"].items()})
        return values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def evaluate_checks(checks: list[CheckConfig], data: RunData) -> list[CheckResult]:
    """Every check's result, in the config's order; each is logged."""
    results = []
    for check in checks:
        try:
            passed, value, threshold, message = _EVALUATORS[check.kind](check, data)
        except _Unavailable as exc:
            passed, value, threshold, message = False, None, None, f"cannot check: {exc}"
        except (CalcEngineError, ValueError, ArithmeticError, OSError) as exc:
            passed, value, threshold, message = False, None, None, f"cannot check: {exc}"
        result = CheckResult(
            check.label,
            check.kind,
            check.severity,
            passed,
            value,
            threshold,
            message,
            check.description,
        )
        log = _log.info if passed else (_log.error if check.severity == "error" else _log.warning)
        log(
            "check_finished",
            check=result.name,
            kind=result.kind,
            severity=result.severity,
            passed=passed,
            value=value,
            threshold=threshold,
            message=message,
        )
        results.append(result)
    return results


def recheck_run(record: Mapping[str, Any]) -> list[CheckResult]:
    """The declared checks of a stored run (``livecalc check RUN_ID``), on its own files.

    The files are the run's outputs and data sources, each first compared with the sha256
    the run recorded: checking a file a later run overwrote would judge another run. A check
    whose data is in no file (a dataset the run held in memory only) gets the verdict the run
    itself recorded. A run of some nodes checks what that run checked.

    Raises:
        ConfigurationError: an output or data source file is gone or changed since the run
            (sha256 differs), naming the file.
    """
    from livecalc.ops.kept import checks_in_scope
    from livecalc.ops.provenance import file_sha256

    run_id = record["run_id"]
    prov = record["provenance"]
    base = Path(prov["config_path"]).parent if prov.get("config_path") else Path.cwd()
    config = PipelineConfig.model_validate({**prov["config"], "base_dir": str(base)})
    datasets: dict[str, Any] = {o["name"]: Path(o["path"]) for o in record.get("outputs", [])}
    recorded = {o["path"]: o.get("sha256") for o in record.get("outputs", [])}
    for name, src in config.data_sources.items():
        datasets.setdefault(name, config.resolve(src.path))
    recorded |= {i["path"]: i.get("sha256") for i in prov.get("inputs", [])}
    for name, path in datasets.items():
        want = recorded.get(str(path))
        if want is None:
            continue
        found = file_sha256(path) if path.is_file() else None
        if found != want:
            what = "is gone" if found is None else "changed since the run wrote or read it"
            raise ConfigurationError(
                f"run {run_id!r}: {path} (dataset {name!r}) {what} (sha256 {want[:12]}... "
                "then): its checks cannot be judged on this file; `livecalc runs show "
                f"{run_id}` gives the verdicts the run recorded"
            )
    checks = config.checks
    if record.get("selection"):
        checks, _ = checks_in_scope(config, record["selection"]["nodes"])
    statistics = {n["node_id"]: n["outputs"] for n in record.get("nodes", []) if n["outputs"]}
    own = {c["name"]: c for c in record.get("checks", [])}
    results = []
    for check, result in zip(
        checks, evaluate_checks(checks, RunData(datasets, statistics, config)), strict=True
    ):
        ran = own.get(result.name)
        if result.message.startswith("cannot check") and ran is not None:
            result = CheckResult(
                result.name,
                result.kind,
                result.severity,
                bool(ran["passed"]),
                ran.get("value"),
                ran.get("threshold"),
                f"as the run found (its data is in no file): {ran.get('message', '')}",
                check.description,
            )
        results.append(result)
    return results


Outcome = tuple[bool, Any, Any, str]


def _finite(check: CheckConfig, data: RunData) -> Outcome:
    assert check.dataset is not None
    columns = check.columns or [
        c for c in data.columns(check.dataset) if c not in ("scenario_id", "policy_id", "year")
    ]
    bad = {}
    for name in columns:
        values = data.column(check.dataset, name)
        if values.dtype.kind == "f":
            n = int(np.count_nonzero(~np.isfinite(values)))
            if n:
                bad[name] = n
    total = sum(bad.values())
    where = ", ".join(f"{k}: {v}" for k, v in bad.items())
    message = (
        f"{check.dataset}: every value of {len(columns)} columns is finite"
        if not bad
        else f"{check.dataset}: {total} NaN or infinite values ({where})"
    )
    return not bad, total, 0, message


def _row_count(check: CheckConfig, data: RunData) -> Outcome:
    assert check.dataset is not None
    rows = data.rows(check.dataset)
    if check.equals is not None:
        expected = (
            _policies_x_scenarios(check.dataset, data)
            if check.equals == "policies_x_scenarios"
            else int(check.equals)
        )
        return (
            rows == expected,
            rows,
            expected,
            f"{check.dataset}: {rows:,} rows, expected {expected:,}",
        )
    low = -math.inf if check.min is None else check.min
    high = math.inf if check.max is None else check.max
    passed = low <= rows <= high
    return (
        passed,
        rows,
        [check.min, check.max],
        f"{check.dataset}: {rows:,} rows, bounds [{check.min}, {check.max}]",
    )


def _policies_x_scenarios(dataset: str, data: RunData) -> int:
    producer = next((n for n in data.config.engines if dataset in n.outputs[:1]), None)
    if producer is None:
        raise _Unavailable(f"no engine writes {dataset!r}")
    policies = scenarios = None
    for name in producer.inputs:
        value = data.datasets.get(name)
        if isinstance(value, np.ndarray) and value.dtype == POLICY_DTYPE:
            policies = len(value)
        elif isinstance(value, np.ndarray) and value.dtype == SCENARIO_DTYPE:
            scenarios = len(np.unique(value["scenario_id"]))
        elif name in data.config.data_sources:
            try:
                ids = data.column(name, "scenario_id")
                scenarios = len(np.unique(ids))
            except _Unavailable:
                policies = data.rows(name)
    if policies is None or scenarios is None:
        raise _Unavailable(f"the policies and scenarios {producer.id!r} read are not available")
    return policies * scenarios


def _range(check: CheckConfig, data: RunData) -> Outcome:
    low = -math.inf if check.min is None else check.min
    high = math.inf if check.max is None else check.max
    bounds = [check.min, check.max]
    if check.statistic is not None:
        value = _statistic(check.statistic, data)
        ok = low <= value <= high
        return (
            ok,
            value,
            bounds,
            f"{check.statistic} = {value:.6g}, bounds [{check.min}, {check.max}]",
        )
    assert check.dataset is not None and check.column is not None
    values = data.column(check.dataset, check.column)
    if len(values) == 0:
        return True, None, bounds, f"{check.dataset}.{check.column}: no rows"
    lo, hi = float(np.min(values)), float(np.max(values))
    outside = int(np.count_nonzero((values < low) | (values > high)))
    return (
        outside == 0,
        [lo, hi],
        bounds,
        f"{check.dataset}.{check.column}: min {lo:.6g}, max {hi:.6g}, {outside:,} values "
        f"outside [{check.min}, {check.max}]",
    )


def _statistic(path: str, data: RunData) -> float:
    node, _, rest = path.partition(".")
    value: Any = data.statistics.get(node)
    for part in rest.split(".") if rest else ():
        value = value.get(part) if isinstance(value, Mapping) else None
    if not _is_number(value):
        raise _Unavailable(f"statistic {path!r} is not a number in the run's outputs")
    return float(value)


def _metric(check: CheckConfig, data: RunData) -> Outcome:
    from livecalc.solver.expr import parse_expression

    assert check.expr is not None
    values = data.metrics(check.node)
    left_text, op, right_text = split_comparison(check.expr)
    left = parse_expression(left_text, values).evaluate(values)
    right = parse_expression(right_text, values).evaluate(values)
    passed = bool(_COMPARE[op](left, right))
    return (
        passed,
        left,
        f"{op} {right:.6g}",
        f"{check.expr}: {left:.6g} {op} {right:.6g} is {passed}",
    )


def _martingale(check: CheckConfig, data: RunData) -> Outcome:
    from livecalc.engines.esg_check import check_scenarios

    assert check.dataset is not None
    value = data.datasets.get(check.dataset)
    metadata = None
    for outputs in data.statistics.values():
        if isinstance(outputs.get("esg_metadata"), Mapping):
            metadata = outputs["esg_metadata"]
    if isinstance(value, np.ndarray):
        report = check_scenarios(value, metadata=metadata, z_threshold=check.z_threshold)
    elif isinstance(value, str | Path) and Path(value).is_file():
        report = check_scenarios(Path(value), z_threshold=check.z_threshold)
    else:
        raise _Unavailable(f"dataset {check.dataset!r} is not available (not kept and not written)")
    worst = max((abs(r.z) for r in report.rows), default=0.0)
    failures = report.failures
    where = ", ".join(f"{r.check} year {r.maturity} z={r.z:.2f}" for r in failures[:3])
    message = (
        f"{check.dataset}: {len(report.rows)} martingale and moment rows within |z| <= "
        f"{check.z_threshold}"
        if not failures
        else f"{check.dataset}: {len(failures)} of {len(report.rows)} rows fail ({where})"
    )
    return report.passed, worst, check.z_threshold, message


def _reconcile(check: CheckConfig, data: RunData) -> Outcome:
    assert check.dataset and check.column and check.against
    other_column = check.against_column or check.column
    total = float(np.sum(data.column(check.dataset, check.column), dtype=np.float64))
    other = float(np.sum(data.column(check.against, other_column), dtype=np.float64))
    diff = abs(total - other)
    allowed = check.tolerance * max(abs(total), abs(other), 1.0)
    return (
        diff <= allowed,
        diff,
        allowed,
        f"sum {check.dataset}.{check.column} = {total:.10g}, sum {check.against}."
        f"{other_column} = {other:.10g}, difference {diff:.3g} (allowed {allowed:.3g})",
    )


_EVALUATORS = {
    "finite": _finite,
    "row_count": _row_count,
    "range": _range,
    "metric": _metric,
    "martingale": _martingale,
    "reconcile": _reconcile,
}
