"""``RemoteRuns``: runs, params, tags and metrics over HTTP, shaped like ``RunService``."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from clew.client.remote_capture import ARROW_STREAM, ipc_stream
from clew.client.transport import Transport, encode_json, plain_json
from clew.domain.records import MetricPoint, RunPage, RunRecord, from_fields
from clew.domain.run_fields import (
    NEXT_PAGE_HEADER,
    WARNINGS_HEADER,
    check_key,
    param_text,
    warn_unknown_keys,
)

METRIC_BATCH = 100_000


def run_from_wire(data: dict[str, Any]) -> RunRecord:
    """Latest metrics may arrive as ints or as "NaN"/"Infinity"; the record holds floats."""
    metrics = {key: float(value) for key, value in data["metrics"].items()}
    return from_fields(RunRecord, data, metrics=metrics)


class RemoteRuns:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create_run(
        self,
        *,
        experiment: str,
        name: str,
        kind: str,
        actor: str,
        parent_id: str | None = None,
        command: str | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        code_artifact_id: str | None = None,
        environment_artifact_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        body = {
            "experiment": experiment,
            "name": name,
            "kind": kind,
            "parent_id": parent_id,
            "command": command,
            "seed": seed,
            "params": _params(params or {}),
            "tags": _tags(tags or {}),
            "code_artifact_id": code_artifact_id,
            "environment_artifact_id": environment_artifact_id,
            "properties": plain_json(dict(properties or {})),
        }
        return run_from_wire(self._t.call("POST", "/runs", json_body=body))

    def log_params(self, run_id: str, params: Mapping[str, Any], actor: str) -> None:
        if params:
            self._t.call("POST", f"/runs/{run_id}/params", json_body={"params": _params(params)})

    def set_tags(self, run_id: str, tags: Mapping[str, Any], actor: str) -> None:
        if tags:
            self._t.call("POST", f"/runs/{run_id}/tags", json_body={"tags": _tags(tags)})

    def log_metrics(
        self,
        run_id: str,
        points: Sequence[tuple[str, float, int, int]],
        actor: str,
        batch_key: str | None = None,
    ) -> None:
        """Post the points in requests of ``METRIC_BATCH``; with ``batch_key`` each request's
        idempotency key derives from it, so re-sending the same batch later never inserts a
        request's points twice, even after every retry of the first attempt failed."""
        for start in range(0, len(points), METRIC_BATCH):
            body = functools.partial(_metrics_body, points[start : start + METRIC_BATCH])
            headers = {
                "Content-Type": ARROW_STREAM,
                "Idempotency-Key": f"{batch_key}-{start}" if batch_key else uuid.uuid4().hex,
            }
            self._t.decode(self._t.send("POST", f"/runs/{run_id}/metrics", body, headers=headers))

    def end_run(
        self,
        run_id: str,
        status: str,
        actor: str,
        points: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """End the run; its last params, tags and points go in the same request (the points
        when they fit in one batch).

        The idempotency keys derive from the request itself, not from a fresh draw: when every
        answer to an end the server committed was lost, the caller's next ``end()`` sends the
        same request under the same key and gets the stored answer replayed, exactly as the
        embedded store would have answered the first time, instead of "already ended". A
        different status or other points make another request, which the server refuses.
        """
        points = list(points)
        if len(points) > METRIC_BATCH:
            self.log_metrics(
                run_id, points, actor, batch_key=_request_key("points", run_id, points)
            )
            points = []
        body: dict[str, Any] = {"status": status, "points": [list(point) for point in points]}
        if params:
            body["params"] = _params(params)
        if tags:
            body["tags"] = _tags(tags)
        key = _request_key("end", run_id, body)
        self._t.call(
            "POST", f"/runs/{run_id}/end", json_body=body, headers={"Idempotency-Key": key}
        )

    def get_run(self, run_id: str) -> RunRecord:
        return run_from_wire(self._t.call("GET", f"/runs/{run_id}"))

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        rows = self._t.call("GET", f"/runs/{run_id}/metric-history", params={"key": key})
        return [MetricPoint(key, float(value), step, stamp) for value, step, stamp in rows]

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        return self.search_run_page(filter_text, order_by, max_results, experiments).runs

    def search_run_page(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        body = {
            "filter": filter_text,
            "order_by": list(order_by) if order_by else None,
            "max_results": max_results,
            "experiments": None if experiments is None else list(experiments),
            "page_token": page_token,
        }
        headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
        content = encode_json(body)
        response = self._t.send("POST", "/runs/search", lambda: content, None, headers)
        rows = self._t.decode(response)
        warn_unknown_keys(json.loads(response.headers.get(WARNINGS_HEADER, "[]")))
        runs = [run_from_wire(row) for row in rows]
        return RunPage(runs, response.headers.get(NEXT_PAGE_HEADER))


def _request_key(kind: str, run_id: str, content: Any) -> str:
    """An idempotency key that is the same for the same request about the same run."""
    return f"{kind}:{run_id}:{hashlib.sha256(encode_json(content)).hexdigest()[:32]}"


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """Checked here as the embedded service checks them: JSON would turn a key 3 into "3"."""
    return {check_key(k, "param"): param_text(k, v) for k, v in params.items()}


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {check_key(k, "tag"): str(v) for k, v in tags.items()}


def _metrics_body(points: Sequence[tuple[str, float, int, int]]) -> bytes:
    """Points as an Arrow IPC stream of four typed columns, which the server reads without
    parsing a JSON value per point (JSON stays the API's documented form)."""
    keys, values, steps, stamps = zip(*points, strict=True)
    table = pa.table(
        [
            pa.array(keys, pa.string()),
            pa.array(values, pa.float64()),
            pa.array(steps, pa.int64()),
            pa.array(stamps, pa.int64()),
        ],
        names=["key", "value", "step", "timestamp_ms"],
    )
    return ipc_stream(table)
