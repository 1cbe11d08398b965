"""Pipelines: finding an earlier successful step to reuse, and reading an execution back.

A step's cache key is a run tag (``clew.step.key``) and ``tags`` is indexed by (key, value),
so the skip decision is one indexed query: the newest FINISHED run carrying that key. A step
that failed, or is still running, is never reused.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from clew.domain import ids, records
from clew.domain.pipelines import (
    PIPELINE_KIND,
    STEP_KEY_TAG,
    STEP_OUTPUTS_TAG,
    STEP_REUSED_TAG,
    CachedStep,
    PipelineView,
    StepView,
)
from clew.domain.records import ArtifactRecord, RunRecord
from clew.errors import NotFoundError
from clew.service.artifacts import ArtifactService
from clew.service.runs import RunService, read_runs
from clew.store import schema
from clew.store.location import Store
from clew.store.metadata import DriverStatement

_CACHED_STEP = DriverStatement(
    "SELECT runs.id, outputs.value FROM tags AS step_key "
    "JOIN runs ON runs.id = step_key.run_id "
    "JOIN tags AS outputs ON outputs.run_id = runs.id AND outputs.key = :outputs "
    "WHERE step_key.key = :key AND step_key.value = :value AND runs.status = :status "
    "ORDER BY runs.start_ms DESC LIMIT 1"
)


class PipelineService:
    """The step cache and pipeline executions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._runs = RunService(store)
        self._artifacts = ArtifactService(store)

    def find_cached_step(self, key: str) -> CachedStep | None:
        """The newest successful step run with cache key ``key`` and its outputs, or None."""
        params = {
            "key": STEP_KEY_TAG,
            "value": key,
            "status": records.FINISHED,
            "outputs": STEP_OUTPUTS_TAG,
        }
        with self.store.db.read() as connection:
            row = _CACHED_STEP.first(connection, params)
        return None if row is None else CachedStep(row[0], json.loads(row[1]))

    def show(self, ref: str) -> PipelineView:
        """The execution ``ref`` names: a pipeline run id, or a pipeline name (its newest)."""
        pipeline = self._pipeline_run(ref)
        runs = schema.runs
        with self.store.db.read() as connection:
            child_ids = (
                connection.execute(
                    select(runs.c.id)
                    .where(runs.c.parent_id == pipeline.id)
                    .order_by(runs.c.start_ms, runs.c.id)
                )
                .scalars()
                .all()
            )
            children = {run.id: run for run in read_runs(connection, list(child_ids))}
        steps = [self._step(children[run_id]) for run_id in child_ids]
        return PipelineView(
            pipeline.id,
            pipeline.name,
            pipeline.status,
            pipeline.user,
            pipeline.start_ms,
            pipeline.end_ms,
            steps,
        )

    def _pipeline_run(self, ref: str) -> RunRecord:
        text = ref.removeprefix("run:")
        if ids.is_id(text):
            return self._runs.get_run(text.upper())
        runs = schema.runs
        with self.store.db.read() as connection:
            newest = connection.execute(
                select(runs.c.id)
                .where(runs.c.kind == PIPELINE_KIND, runs.c.name == ref)
                .order_by(runs.c.start_ms.desc())
                .limit(1)
            ).scalar()
        if newest is None:
            raise NotFoundError(
                f"no pipeline named {ref!r} has run in this store; pass a pipeline name or the "
                "id of its run (see `clew runs list`)."
            )
        return self._runs.get_run(newest)

    def _step(self, run: RunRecord) -> StepView:
        linked = self._artifacts.run_artifacts(run.id)
        return StepView(
            run_id=run.id,
            name=run.name,
            status=run.status,
            start_ms=run.start_ms,
            end_ms=run.end_ms,
            key=run.tags.get(STEP_KEY_TAG),
            reused_from=run.tags.get(STEP_REUSED_TAG),
            params=dict(run.params),
            inputs=[_node(a) for a in linked["inputs"] if a.type not in ("code", "environment")],
            outputs=[_node(a) for a in linked["outputs"]],
        )


def _node(artifact: ArtifactRecord) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "type": artifact.type,
        "name": artifact.name,
        "digest": artifact.digest,
    }
