"""``definitions_from_config``: LiveCalc pipeline configs as Dagster definitions.

Per config (a "pipeline", named after the file's stem, which is also its asset group):

- each data source is an external asset (``AssetSpec``: Dagster shows it, never computes it);
- each engine node is one ``multi_asset`` whose assets are the datasets it produces; its step
  runs ``livecalc.run`` for that node, reading its upstream datasets from the files their
  latest materializations recorded (metadata ``path``);
- each declared check is an asset check on the asset of the dataset it names, reporting
  LiveCalc's own evaluation (severity ``error`` -> ``ERROR``, blocking downstream steps;
  ``warn`` -> ``WARN``); checks on data sources run as one ``multi_asset_check``;
- a ``LiveCalcResource`` (the config, executor, run store) under ``livecalc_<pipeline>`` and a
  job ``<pipeline>_job`` materializing the whole pipeline.

The run store is shared by all pipelines as the read-only DuckDB resource ``livecalc_store``.
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation as a type.

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetCheckExecutionContext, AssetExecutionContext

from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.integrations.dagster._context import DagsterRunContext
from livecalc.integrations.dagster._events import PATH_KEY, check_results, materializations
from livecalc.integrations.dagster._plan import PipelinePlan, Step, dagster_name
from livecalc.integrations.dagster.resources import (
    STORE_RESOURCE_KEY,
    LiveCalcResource,
    run_store_resource,
)
from livecalc.pipeline.executors import EXECUTORS
from livecalc.pipeline.loading import load_config

__all__ = ["definitions_from_config", "resource_key"]


def resource_key(pipeline: str) -> str:
    """The key of a pipeline's ``LiveCalcResource``."""
    return f"livecalc_{pipeline}"


def definitions_from_config(
    path: str | Path | Sequence[str | Path],
    *,
    store: str | Path | None = None,
    executor: str | None = None,
) -> dg.Definitions:
    """Dagster definitions for one pipeline config, or several (a list of paths).

    Args:
        path: the config file(s); each becomes a pipeline named after the file's stem.
        store: the run store folder or .duckdb file (default: ``$LIVECALC_HOME``).
        executor: ``local``, ``processes`` or ``ray`` (default: each config's
            ``run.executor``).

    Raises:
        ConfigurationError: a config is invalid, two configs have the same stem, a stem is
            ``store`` (its resource key would be the run store's), a name does not fit
            Dagster's naming rules, the executor is unknown, or ``store`` cannot hold a run
            store; the message names the file and the fix.
    """
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths:
        raise ConfigurationError("definitions_from_config: give at least one config path")
    if executor is not None and executor not in EXECUTORS:
        raise ConfigurationError(
            f"definitions_from_config: unknown executor {executor!r}; use one of "
            f"{', '.join(EXECUTORS)}, or None for each config's run.executor"
        )
    plans: dict[str, PipelinePlan] = {}
    for p in paths:
        config_path = Path(p).resolve()
        name = dagster_name(config_path.stem)
        if resource_key(name) == STORE_RESOURCE_KEY:
            raise ConfigurationError(
                f"{config_path}: its pipeline name {name!r} (the file's stem) would give its "
                f"resource the key {STORE_RESOURCE_KEY!r}, which is the run store's; rename "
                "the file"
            )
        if name in plans:
            raise ConfigurationError(
                f"{config_path}: its pipeline name {name!r} (the file's stem) is taken by "
                f"{plans[name].config_path}; rename one of the files"
            )
        plans[name] = PipelinePlan.of(load_config(config_path), config_path, name)
    assets: list[Any] = []
    checks: list[dg.AssetChecksDefinition] = []
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    resources: dict[str, Any] = {STORE_RESOURCE_KEY: run_store_resource(store)}
    for plan in plans.values():
        resources[resource_key(plan.name)] = LiveCalcResource(
            config=str(plan.config_path),
            executor=executor,
            store=None if store is None else str(store),
        )
        assets.extend(_source_specs(plan))
        assets.extend(_step_asset(plan, step) for step in plan.steps)
        selection: dg.AssetSelection = dg.AssetSelection.assets(
            *(dg.AssetKey(list(plan.keys[d])) for s in plan.steps for d in s.outputs)
        )
        if plan.source_checks:
            checks.append(_source_checks(plan))
            selection = selection | dg.AssetSelection.checks(checks[-1])
        jobs.append(
            dg.define_asset_job(
                f"{plan.name}_job",
                selection=selection,
                description=f"Every engine of {plan.config_path.name}, in DAG order",
            )
        )
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, resources=resources)


def _source_specs(plan: PipelinePlan) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            key=dg.AssetKey(list(plan.keys[name])),
            group_name=plan.name,
            description=f"data source {name!r} of {plan.config_path.name}",
            metadata={PATH_KEY: dg.MetadataValue.path(str(plan.config.resolve(src.path)))},
            kinds={"parquet"},
        )
        for name, src in plan.config.data_sources.items()
    ]


def _step_asset(plan: PipelinePlan, step: Step) -> dg.AssetsDefinition:
    key = resource_key(plan.name)
    specs = []
    for dataset in step.outputs:
        node = plan.config.node(plan.producers[dataset])
        specs.append(
            dg.AssetSpec(
                key=dg.AssetKey(list(plan.keys[dataset])),
                deps=[dg.AssetKey(list(plan.keys[i])) for i in node.inputs],
                group_name=plan.name,
                description=f"{dataset!r}, output of engine {node.id!r} ({node.type})",
                metadata={"node": node.id, "engine_type": node.type},
                kinds={"livecalc"},
            )
        )
    check_specs = [
        dg.AssetCheckSpec(
            t.name,
            asset=dg.AssetKey(list(plan.keys[t.dataset])),
            description=t.description,
            blocking=t.severity == "error",
        )
        for t in step.checks
    ]

    @dg.multi_asset(
        name=step.name,
        specs=specs,
        check_specs=check_specs,
        required_resource_keys={key},
        description=f"LiveCalc engine {step.node!r} of {plan.config_path.name}",
    )
    def _materialize(context: AssetExecutionContext) -> Iterator[Any]:
        yield from _run_step(context, getattr(context.resources, key), plan, step)

    return _materialize


def _run_step(
    context: dg.AssetExecutionContext, livecalc: LiveCalcResource, plan: PipelinePlan, step: Step
) -> Iterator[Any]:
    run_context = DagsterRunContext(context, step.name)
    datasets = _upstream_paths(context, plan, step)
    try:
        result = livecalc.run(
            run_context,
            progress=_progress(context),
            nodes=[step.node],
            datasets=datasets,
            keep_datasets=True,
        )
    except CalcEngineError as exc:
        # A ConfigurationError (bad config, input or dataset file): nothing ran.
        what = "did not start" if isinstance(exc, ConfigurationError) else "failed"
        raise dg.Failure(
            description=f"LiveCalc run {run_context.run_id} {what}: {exc}",
            metadata={"livecalc/run_id": run_context.run_id},
        ) from None
    yield from materializations(plan, step, result, run_context.state)
    node = result.nodes[step.node]
    if node.status != "succeeded":
        raise dg.Failure(
            description=f"engine {node.node_id!r} {node.status}: {node.error}",
            metadata={"livecalc/run_id": result.run_id, "error_type": str(node.error_type)},
        )
    extras = result.summary.extras
    yield from check_results(
        plan, step.checks, extras.get("checks", []), result.run_id, extras.get("checks_not_run", [])
    )


def _upstream_paths(
    context: AssetExecutionContext, plan: PipelinePlan, step: Step
) -> dict[str, str]:
    """The file of each upstream dataset, from the ``path`` metadata of its asset's latest
    materialization. A direct input without one fails the step (materialize it first); an
    indirect one is left to LiveCalc, which says whether the run needs it."""
    paths = {}
    for dataset in step.upstream:
        key = dg.AssetKey(list(plan.keys[dataset]))
        event = context.instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event is not None else None
        value = materialization.metadata.get(PATH_KEY) if materialization is not None else None
        path = value.path if isinstance(value, dg.PathMetadataValue) else None
        if path is not None and Path(path).is_file():
            paths[dataset] = str(path)
        elif dataset in step.inputs:
            what = (
                "has no materialization with a file; materialize it first"
                if path is None
                else f"file {path} is gone (livecalc runs gc?); materialize it again"
            )
            raise dg.Failure(
                description=f"{key.to_user_string()} {what} (or run the job {plan.name}_job)"
            )
    return paths


def _progress(context: dg.AssetExecutionContext) -> Any:
    def report(event: str, node_id: str, **info: Any) -> None:
        text = f"{event} {node_id} " + " ".join(f"{k}={v}" for k, v in info.items())
        if event == "chunk_finished":
            context.log.debug(text)
        else:
            context.log.info(text)

    return report


def _source_checks(plan: PipelinePlan) -> dg.AssetChecksDefinition:
    """The declared checks on data sources, evaluated by LiveCalc on the source files."""
    key = resource_key(plan.name)
    specs = [
        dg.AssetCheckSpec(
            t.name, asset=dg.AssetKey(list(plan.keys[t.dataset])), description=t.description
        )
        for t in plan.source_checks
    ]

    @dg.multi_asset_check(
        name=dagster_name(f"{plan.name}__source_checks"),
        specs=specs,
        required_resource_keys={key},
    )
    def _check_sources(context: AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        from livecalc.ops.checks import RunData, evaluate_checks

        config = getattr(context.resources, key).load()
        files = {name: config.resolve(src.path) for name, src in config.data_sources.items()}
        wanted = [config.checks[t.index] for t in plan.source_checks]
        evaluated = [c.to_dict() for c in evaluate_checks(wanted, RunData(files, {}, config))]
        yield from check_results(plan, plan.source_checks, evaluated, context.run.run_id)

    return _check_sources
