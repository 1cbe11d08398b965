"""``RemotePipelines``: the step cache and pipeline executions on a clew server."""

from __future__ import annotations

from clew.client.transport import Transport
from clew.domain.pipelines import CachedStep, PipelineView


class RemotePipelines:
    """``PipelineService`` over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def find_cached_step(self, key: str) -> CachedStep | None:
        found = self._t.call("GET", "/pipelines/cached-step", params={"key": key})["step"]
        return CachedStep(found["run_id"], found["outputs"]) if found else None

    def show(self, ref: str) -> PipelineView:
        return PipelineView.from_dict(self._t.call("GET", f"/pipelines/{ref}"))
