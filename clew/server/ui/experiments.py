"""Experiments: the runs table (SDK filter language, chosen columns), run and artifact pages,
and the multi-run comparison with metric-series charts."""

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from clew.domain.records import RunRecord
from clew.errors import FilterSyntaxError, InvalidRefError
from clew.server import fair_use
from clew.server.ui import rendering
from clew.server.ui.pages import Offset, Page
from clew.service.runs import RunService, search_runs

PAGE_SIZES = (50, 100, 500, 1000)
DEFAULT_METRIC_COLUMNS = 6
DEFAULT_PARAM_COLUMNS = 4
MAX_COMPARED = 20
MAX_POINTS = 2000


def add_routes(router: APIRouter, page: Any, action: Any) -> None:
    @router.get("/experiments", name="ui.experiments", dependencies=[Depends(fair_use.search_slot)])
    def experiments(
        current: Annotated[Page, Depends(page)],
        filter: str = "",
        order_by: str = "",
        experiment: str = "",
        columns: Annotated[list[str] | None, Query()] = None,
        limit: Offset = 100,
    ) -> Response:
        limit = limit if limit in PAGE_SIZES else PAGE_SIZES[1]
        error, runs = None, []
        try:
            runs = search_runs(
                current.store,
                filter or None,
                [order_by] if order_by else None,
                limit,
                [experiment] if experiment else None,
            )
        except (FilterSyntaxError, InvalidRefError) as problem:
            error = str(problem)
        metric_keys = sorted({key for run in runs for key in run.metrics})
        param_keys = sorted({key for run in runs for key in run.params})
        chosen = columns or [
            *(f"metrics.{key}" for key in metric_keys[:DEFAULT_METRIC_COLUMNS]),
            *(f"params.{key}" for key in param_keys[:DEFAULT_PARAM_COLUMNS]),
        ]
        return current.render(
            "experiments.html",
            runs=runs,
            rows=[_row(run, chosen) for run in runs],
            columns=chosen,
            metric_keys=metric_keys,
            param_keys=param_keys,
            filter=filter,
            order_by=order_by,
            experiment=experiment,
            limit=limit,
            page_sizes=PAGE_SIZES,
            error=error,
        )

    @router.get("/compare", name="ui.compare", dependencies=[Depends(fair_use.search_slot)])
    def compare(
        current: Annotated[Page, Depends(page)], run: Annotated[list[str] | None, Query()] = None
    ) -> Response:
        service = current.services.runs
        runs = [service.get_run(run_id) for run_id in dict.fromkeys(run or [])][:MAX_COMPARED]
        metric_keys = sorted({key for found in runs for key in found.metrics})
        param_keys = sorted({key for found in runs for key in found.params})
        series = _series(service, runs, metric_keys)
        return current.render(
            "compare.html",
            runs=runs,
            metric_keys=metric_keys,
            param_keys=param_keys,
            differs={key: len({found.params.get(key) for found in runs}) > 1 for key in param_keys},
            series_json=rendering.to_json(series),
        )

    @router.get("/runs/{run_id}", name="ui.run")
    def run_page(run_id: str, current: Annotated[Page, Depends(page)]) -> Response:
        service = current.services.runs
        found = service.get_run(run_id.upper())
        artifacts = current.services.artifacts
        linked = artifacts.run_artifacts(found.id)
        code = artifacts.get(found.code_artifact_id) if found.code_artifact_id else None
        environment = (
            artifacts.get(found.environment_artifact_id) if found.environment_artifact_id else None
        )
        series = _series(service, [found], sorted(found.metrics))
        return current.render(
            "run.html",
            run=found,
            inputs=[a for a in linked["inputs"] if a.type not in ("code", "environment")],
            outputs=linked["outputs"],
            code=code,
            environment=environment,
            series_json=rendering.to_json(series),
        )

    @router.get("/artifacts/{artifact_id}", name="ui.artifact")
    def artifact_page(artifact_id: str, current: Annotated[Page, Depends(page)]) -> Response:
        found = current.services.artifacts.get(artifact_id.upper())
        return current.render("artifact.html", artifact=found)


def _row(run: RunRecord, columns: list[str]) -> list[Any]:
    values = []
    for column in columns:
        entity, _, key = column.partition(".")
        by_entity: dict[str, Mapping[str, Any]] = {
            "metrics": run.metrics,
            "params": run.params,
            "tags": run.tags,
        }
        source = by_entity.get(entity, {})
        values.append(source.get(key))
    return values


def _series(service: RunService, runs: list[RunRecord], keys: list[str]) -> dict[str, Any]:
    """Chart data: for each metric key, one line of points per run that logged it."""
    return {key: [_line(service, run, key) for run in runs if key in run.metrics] for key in keys}


def _line(service: RunService, run: RunRecord, key: str) -> dict[str, Any]:
    """One run's points for one metric, thinned to at most MAX_POINTS (the last one kept)."""
    points = service.metric_history(run.id, key)
    stride = max(1, len(points) // MAX_POINTS)
    kept = points[::stride]
    if points and kept[-1] is not points[-1]:
        kept.append(points[-1])
    return {"run": run.id, "label": run.name, "points": [[p.step, p.value] for p in kept]}
