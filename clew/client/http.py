"""``RemoteBackend``: the same services as ``EmbeddedBackend``, spoken over HTTP to ``clew server``.

Every method has the embedded service's signature and returns the same records, so ``Client``
does not know which backend it holds. The ``actor`` arguments are accepted and ignored: a
server attributes every write to the owner of the token, never to a name the client claims.

Retries: connection failures, 502/503/504 and "request in progress" are retried with backoff.
Every POST carries an ``Idempotency-Key`` that stays the same across the retries of one call,
so a retried request never creates a second run, metric batch or version. Blob uploads are
idempotent by construction (``PUT /blobs/<digest>``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
import pyarrow as pa

from clew import errors
from clew.client.audit import RemoteAudit
from clew.client.capture_spool import SpoolSettings, open_spool
from clew.client.remote_capture import (
    ARROW_STREAM,
    RemoteCaptureWriter,
    ipc_stream,
    remote_prediction,
)
from clew.client.remote_sessions import RemoteSessions
from clew.domain import digests, refs
from clew.domain.records import (
    ArtifactRecord,
    MetricPoint,
    ModelRecord,
    R,
    RegistryEvent,
    RunRecord,
    VersionRecord,
    from_fields,
)
from clew.errors import AuthenticationError, ClewError, FileChangedError, InvalidInputError
from clew.service import policy, signing
from clew.service.artifacts import artifact_ref, export_artifact
from clew.service.capture import CapturedPrediction, CaptureTarget
from clew.service.graph import Node, WalkedEdge
from clew.service.lineage import NODE_COLUMNS, LineageResult
from clew.service.lineage_ingest import IngestResult
from clew.service.policy import StoredPolicy
from clew.service.runs import WARNINGS_HEADER, check_key, param_text, warn_unknown_keys
from clew.service.trace import Trace
from clew.service.user_keys import SignedStatement, UserKey
from clew.store.blobs import (
    CHUNK,
    Progress,
    StoredBlob,
    StoredDirectory,
    export_directory,
    parse_manifest,
    put_directory,
)

API = "/api/v1"
SIGNING_HEADER = "X-Clew-Signing-Token"
RETRY_STATUSES = {502, 503, 504}
ATTEMPTS = 6
METRIC_BATCH = 100_000
LABEL_BATCH = 10_000
# Large blobs are downloaded as ranges of this size, a few at a time (boto3 does the same).
DOWNLOAD_RANGE = 8 * 1024 * 1024
# Files this large go up with sendfile on a connection of their own, this much per call.
SENDFILE_FROM = SENDFILE_STEP = 8 * 1024 * 1024
DOWNLOAD_CONCURRENCY = 4
WRITE_SLICE = 256 * 1024
REDIRECTS = {301, 302, 303, 307, 308}
DIRECT_CONNECT_SECONDS = 5.0
logger = logging.getLogger(__name__)


def _error_classes() -> dict[str, type[ClewError]]:
    found: dict[str, type[ClewError]] = {}
    pending: list[type[ClewError]] = [ClewError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    found[AuthenticationError.code] = AuthenticationError
    return found


class Transport:
    """One HTTP connection pool to a server, with auth, retries and error mapping."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 60.0) -> None:
        headers = {"User-Agent": "clew-python"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        # For presigned object-store URLs the server redirects blob downloads to: no token,
        # and a short connect timeout, since the server's relay is there if they can't be had.
        self.direct = httpx.Client(
            headers={"User-Agent": "clew-python"},
            timeout=httpx.Timeout(timeout, connect=DIRECT_CONNECT_SECONDS),
        )
        self.relay_only = False
        self._errors = _error_classes()

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request (retrying safely) and return the decoded JSON (None for 204)."""
        extra = dict(headers or {})
        if method == "POST":
            extra.setdefault("Idempotency-Key", uuid.uuid4().hex)
        content = None if json_body is None else _encode(json_body)
        if content is not None:
            extra["Content-Type"] = "application/json"
        return self.decode(self.send(method, path, lambda: content, params, extra))

    def send(
        self,
        method: str,
        path: str,
        body: Callable[[], Any] = lambda: None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The raw response to ``method API+path`` after safe retries; ``body`` makes the
        content afresh for each attempt (a file's chunks can be read only once)."""
        return self._with_retries(
            lambda: self.http.request(
                method, API + path, content=body(), params=params, headers=headers
            )
        )

    def record(self, cls: type[R], method: str, path: str, **options: Any) -> R:
        """One request answered by a record in its wire form (``call``'s options)."""
        return from_fields(cls, self.call(method, path, **options))

    def records(self, cls: type[R], method: str, path: str, **options: Any) -> list[R]:
        return [from_fields(cls, row) for row in self.call(method, path, **options)]

    def _with_retries(self, send: Any) -> httpx.Response:
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                response = send()
            except httpx.TransportError as error:
                if last:
                    raise errors.ServerUnavailableError(
                        f"the clew server at {self.base_url} did not answer ({error}); check that "
                        "it is running and reachable at that address, then retry."
                    ) from error
            else:
                if not _retryable(response) or last:
                    return response
            _pause_before_retry(attempt)
        raise AssertionError("unreachable")

    def decode(self, response: httpx.Response) -> Any:
        if response.status_code < 400:
            if response.status_code == 204 or not response.content:
                return None
            return json.loads(response.content)
        raise self.error(response)

    def error(self, response: httpx.Response) -> ClewError:
        try:
            body = json.loads(response.content)
            code, message = body["code"], body["message"]
        except (ValueError, KeyError, TypeError):
            code = "http_error"
            message = f"the server answered HTTP {response.status_code}: {response.text[:200]}"
        cls = self._errors.get(code)
        error = cls(message) if cls else ClewError(message)
        error.code = code
        error.http_status = response.status_code
        if response.headers.get("retry-after", "").isdigit():
            error.retry_after_s = int(response.headers["retry-after"])  # type: ignore[attr-defined]
        return error

    def stop_direct(self, url: str, error: Exception) -> None:
        """Download through the server from now on: the object store its redirects point at
        is out of reach from here (a firewall, a private endpoint, an expired URL)."""
        if not self.relay_only:
            logger.warning(
                "clew: could not download from the object store at %s (%s); downloading "
                "through the clew server instead from now on.",
                httpx.URL(url).host,
                error,
            )
        self.relay_only = True

    def blob_path(self, digest: str) -> str:
        """A blob's download path, asking the server to relay it once redirects failed."""
        return f"/blobs/{digest}" + ("?relay=true" if self.relay_only else "")

    def close(self) -> None:
        self.http.close()
        self.direct.close()


def _pause_before_retry(attempt: int) -> None:
    """Exponential backoff shared by every retried request: 0.1 s doubling, at most 3 s."""
    time.sleep(min(0.1 * 2**attempt, 3.0))


def _retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    return response.status_code == 409 and b'"request_in_progress"' in response.content[:200]


def _encode(value: Any) -> bytes:
    return json.dumps(value, default=str, allow_nan=True, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    """What the embedded store would have stored: JSON-able, unknown objects as strings."""
    return json.loads(_encode(value))


def run_from_wire(data: dict[str, Any]) -> RunRecord:
    """Latest metrics may arrive as ints or as "NaN"/"Infinity"; the record holds floats."""
    metrics = {key: float(value) for key, value in data["metrics"].items()}
    return from_fields(RunRecord, data, metrics=metrics)


class RemoteRuns:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create_run(self, *, actor: str, **fields: Any) -> RunRecord:
        del actor
        fields["params"] = _params(fields.get("params") or {})
        fields["tags"] = _tags(fields.get("tags") or {})
        fields["properties"] = _plain(dict(fields.get("properties") or {}))
        return run_from_wire(self._t.call("POST", "/runs", json_body=fields))

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
    ) -> None:
        """End the run; its last points go in the same request when they fit in one batch.

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
        body = {"status": status, "points": [list(point) for point in points]}
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
        body = {
            "filter": filter_text,
            "order_by": list(order_by) if order_by else None,
            "max_results": max_results,
            "experiments": None if experiments is None else list(experiments),
        }
        headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
        content = _encode(body)
        response = self._t.send("POST", "/runs/search", lambda: content, None, headers)
        rows = self._t.decode(response)
        warn_unknown_keys(json.loads(response.headers.get(WARNINGS_HEADER, "[]")))
        return [run_from_wire(row) for row in rows]


def _request_key(kind: str, run_id: str, content: Any) -> str:
    """An idempotency key that is the same for the same request about the same run."""
    return f"{kind}:{run_id}:{hashlib.sha256(_encode(content)).hexdigest()[:32]}"


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """Checked here as the embedded service checks them: JSON would turn a key 3 into "3"."""
    return {check_key(k, "param"): param_text(k, v) for k, v in params.items()}


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {check_key(k, "tag"): str(v) for k, v in tags.items()}


class RemoteArtifacts:
    def __init__(self, transport: Transport, blobs: RemoteBlobStore) -> None:
        self._t = transport
        self._blobs = blobs

    def log(
        self,
        *,
        run_id: str | None,
        direction: str,
        type_: str,
        name: str,
        digest: str,
        actor: str,
        size: int | None = None,
        uri: str | None = None,
        properties: Mapping[str, Any] | None = None,
        blobs: Mapping[str, tuple[int, str]] | None = None,
        derived_from: list[str] | None = None,
    ) -> ArtifactRecord:
        body = {
            "run_id": run_id,
            "direction": direction,
            "type": type_,
            "name": name,
            "digest": digest,
            "size": size,
            "uri": uri,
            "properties": _plain(dict(properties or {})),
            "blobs": {d: [s, kind] for d, (s, kind) in (blobs or {}).items()},
            "derived_from": list(derived_from or []),
        }
        return self._t.record(ArtifactRecord, "POST", "/artifacts", json_body=body)

    def get(self, artifact_id: str) -> ArtifactRecord:
        return self._t.record(ArtifactRecord, "GET", f"/artifacts/{artifact_id}")

    def find(self, ref: refs.ArtifactRef) -> ArtifactRecord:
        text = refs.format_ref(ref)
        return self._t.record(ArtifactRecord, "GET", "/artifacts", params={"ref": text})

    def resolve(self, ref: str) -> ArtifactRecord:
        return self.find(artifact_ref(ref))

    def export(self, artifact: ArtifactRecord, destination: Path) -> Path:
        return export_artifact(self._blobs, artifact, destination)

    def run_artifacts(self, run_id: str) -> dict[str, list[ArtifactRecord]]:
        found = self._t.call("GET", f"/runs/{run_id}/artifacts")
        return {
            side: [from_fields(ArtifactRecord, a) for a in items] for side, items in found.items()
        }


def _segment(text: str) -> str:
    return quote(text, safe="")


class RemoteRegistry:
    """``RegistryService`` over HTTP (``actor`` is ignored: the server uses the token's user)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create_model(
        self,
        name: str,
        actor: str,
        *,
        owner: str | None = None,
        description: str = "",
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        body = {
            "name": name,
            "owner": owner,
            "description": description,
            "risk_tier": risk_tier,
            "tags": _plain(dict(tags or {})),
        }
        return self._t.record(ModelRecord, "POST", "/models", json_body=body)

    def get_model(self, name: str) -> ModelRecord:
        return self._t.record(ModelRecord, "GET", f"/models/{_segment(name)}")

    def list_models(self) -> list[ModelRecord]:
        return self._t.records(ModelRecord, "GET", "/models")

    def register(
        self,
        name: str,
        source: str,
        actor: str,
        *,
        description: str = "",
        signature: Mapping[str, Any] | None = None,
        owner: str | None = None,
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        if signature is not None and not isinstance(signature, Mapping):
            raise InvalidInputError("signature must be a mapping such as {'inputs': [...]}.")
        body = {
            "source": source,
            "description": description,
            "signature": None if signature is None else _plain(dict(signature)),
            "owner": owner,
            "risk_tier": risk_tier,
            "tags": _plain(dict(tags or {})),
        }
        refs.validate_name(name, "model name")  # a "/" in it would change the route
        path = f"/models/{_segment(name)}/versions"
        return self._t.record(VersionRecord, "POST", path, json_body=body)

    def versions(self, name: str) -> list[VersionRecord]:
        return self._t.records(VersionRecord, "GET", f"/models/{_segment(name)}/versions")

    def resolve(self, ref: str) -> VersionRecord:
        return self._t.record(VersionRecord, "GET", "/resolve", params={"ref": ref})


class RemoteApprovals:
    """``ApprovalService`` over HTTP. Approve, reject and revoke are electronic signatures: they
    carry the user's signing token, and the server checks it belongs to the token's user."""

    def __init__(self, transport: Transport, registry: RemoteRegistry, signing: str | None) -> None:
        self._t = transport
        self._registry = registry
        self._signing = signing

    def loadable(self, ref: str) -> VersionRecord:
        return self._t.record(VersionRecord, "GET", "/loadable", params={"ref": ref})

    def approve(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str = "approved",
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        body = {"comment": comment, "evidence": list(evidence), "meaning": meaning}
        return self._signed(ref, "approve", {**body, "signed": signed_wire(signed)})

    def reject(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        body = {"comment": comment, "evidence": list(evidence), "signed": signed_wire(signed)}
        return self._signed(ref, "reject", body)

    def revoke(
        self, ref: str, actor: str, comment: str, *, signed: SignedStatement | None = None
    ) -> RegistryEvent:
        return self._signed(ref, "revoke", {"comment": comment, "signed": signed_wire(signed)})

    def statement(
        self,
        ref: str,
        decision: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """The statement the server prepares, with its own time, for this user to sign."""
        body = {
            "decision": decision,
            "comment": comment,
            "evidence": list(evidence),
            "meaning": meaning,
            "alias": alias,
        }
        return self._t.call("POST", f"{self._path(ref)}/statement", json_body=body)

    def archive(self, ref: str, actor: str, comment: str) -> RegistryEvent:
        path = f"{self._path(ref)}/archive"
        return self._t.record(RegistryEvent, "POST", path, json_body={"comment": comment})

    def _signed(self, ref: str, action: str, body: dict[str, Any]) -> RegistryEvent:
        if not self._signing:
            raise AuthenticationError(
                f"to {action} on a clew server you sign with your signing token; pass "
                "clew.connect(uri, token=..., signing_token=...) or set CLEW_SIGNING_TOKEN."
            )
        path = f"{self._path(ref)}/{action}"
        headers = {SIGNING_HEADER: self._signing}
        return self._t.record(RegistryEvent, "POST", path, json_body=body, headers=headers)

    def _path(self, ref: str) -> str:
        """``/models/churn/versions/3``; any other model ref is resolved by the server first."""
        parsed = refs.parse(ref)
        if not isinstance(parsed, refs.ModelVersionRef):
            version = self._registry.resolve(ref)
            parsed = refs.ModelVersionRef(version.name, version.version)
        return f"/models/{_segment(parsed.name)}/versions/{parsed.version}"


class RemotePromotion:
    """``PromotionService`` over HTTP."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def promote(
        self,
        ref: str,
        alias: str,
        actor: str,
        comment: str = "",
        new_alias: bool = False,
        *,
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        version = self._registry.resolve(ref)
        path = f"/models/{_segment(version.name)}/aliases/{_segment(alias)}"
        body = {
            "version": version.version,
            "comment": comment,
            "new_alias": new_alias,
            "signed": signed_wire(signed),
        }
        return self._t.record(RegistryEvent, "POST", path, json_body=body)

    def rollback(self, name: str, alias: str, actor: str, comment: str = "") -> RegistryEvent:
        path = f"/models/{_segment(name)}/aliases/{_segment(alias)}/rollback"
        return self._t.record(RegistryEvent, "POST", path, json_body={"comment": comment})

    def alias_history(self, name: str, alias: str | None = None) -> list[RegistryEvent]:
        params: dict[str, Any] = {"aliases_only": "true"}
        if alias is not None:
            params["alias"] = alias
        path = f"/models/{_segment(name)}/history"
        return self._t.records(RegistryEvent, "GET", path, params=params)

    def model_history(self, name: str) -> list[RegistryEvent]:
        return self._t.records(RegistryEvent, "GET", f"/models/{_segment(name)}/history")

    def alias_at(self, name: str, alias: str, when_ms: int) -> VersionRecord | None:
        path = f"/models/{_segment(name)}/aliases/{_segment(alias)}/at"
        found = self._t.call("GET", path, params={"when_ms": max(when_ms, 0)})
        return None if found is None else from_fields(VersionRecord, found)

    def model_overview(self) -> list[dict[str, Any]]:
        return self._t.call("GET", "/models-overview")

    def version_overview(self, name: str) -> list[dict[str, Any]]:
        return self._t.call("GET", f"/models/{_segment(name)}/versions-overview")

    def version_status(self, ref: str) -> dict[str, Any]:
        return self._t.call("GET", "/version-status", params={"ref": ref})


def signed_wire(signed: SignedStatement | None) -> dict[str, Any] | None:
    return None if signed is None else dataclasses.asdict(signed)


class RemoteUserKeys:
    """``UserKeyService`` over HTTP: registering and revoking others' keys is for admins."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def register(self, user: str, public_key: str, actor: str) -> UserKey:
        body = {"user": user, "public_key": public_key}
        return UserKey(**self._t.call("POST", "/user-keys", json_body=body))

    def list_keys(self, user: str | None = None) -> list[UserKey]:
        params = {} if user is None else {"user": user}
        return [UserKey(**key) for key in self._t.call("GET", "/user-keys", params=params)]

    def revoke(self, key_id: str, actor: str) -> UserKey:
        return UserKey(**self._t.call("POST", f"/user-keys/{_segment(key_id)}/revoke"))


class RemotePolicies:
    """``PolicyService`` over HTTP; the policy comes back as the same ``StoredPolicy``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def set_policy(self, document: str, actor: str) -> int:
        if not isinstance(document, str):
            raise errors.PolicySyntaxError(
                f"the policy must be YAML text, not {type(document).__name__}."
            )
        return self._t.call("POST", "/policy", json_body={"document": document})["version"]

    def get_policy(self) -> StoredPolicy:
        data = self._t.call("GET", "/policy")
        return StoredPolicy(
            data["version"],
            data["digest"],
            data["document"],
            data["created_ms"],
            data["set_by"],
            policy.parse(data["document"]),
        )


class RemotePredictions:
    """Capture, lookup, trace and labels of predictions on the server's store, over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def trace(self, prediction_id: str) -> Trace:
        data = self._t.call("GET", f"/predictions/{_segment(prediction_id)}/trace")
        return Trace.from_dict(data)

    def log_labels(self, prediction_ids: Sequence[str], labels: Sequence[Any], actor: str) -> int:
        """Sent in requests of at most ``LABEL_BATCH`` pairs (uneven lists go whole, so the
        server refuses them with the service's own message)."""
        ids, values = list(prediction_ids), _plain(list(labels))
        step = LABEL_BATCH if len(ids) == len(values) else max(len(ids), len(values), 1)
        count = 0
        for start in range(0, max(len(ids), len(values), 1), step):
            body = {
                "prediction_ids": ids[start : start + step],
                "labels": values[start : start + step],
            }
            count += self._t.call("POST", "/labels", json_body=body)["count"]
        return count

    def labels_for(self, prediction_ids: Sequence[str]) -> dict[str, Any]:
        body = {"prediction_ids": list(prediction_ids)}
        return self._t.call("POST", "/labels/search", json_body=body)

    def public_key(self) -> str:
        return self._t.call("GET", "/public-key")["pem"]

    def signing_keys(self) -> list[signing.SigningKey]:
        return [signing.SigningKey(**key) for key in self._t.call("GET", "/signing-keys")]

    def rotate_signing_key(
        self, request: signing.RotationRequest, actor: str
    ) -> signing.SigningKey:
        """Only the new public key and its proof go to the server, never the private key; the
        rotation is attributed to the token's user (an admin), not to ``actor``."""
        body = dataclasses.asdict(request)
        return signing.SigningKey(**self._t.call("POST", "/signing-keys", json_body=body))

    def get_prediction(self, prediction_id: str) -> CapturedPrediction:
        """The server's stored row and proof, re-verified here with the public key its batch
        names, from the store's key history."""
        data = self._t.call("GET", f"/predictions/{_segment(prediction_id)}")
        keys = {key.key_id: key.public_key.encode() for key in self.signing_keys()}
        return remote_prediction(data, keys)

    def capture_writer(self, actor: str, spool: SpoolSettings | None = None) -> RemoteCaptureWriter:
        """Batches go to the server, which signs them and attributes them to the token's user
        (``actor`` is the server's business, not the client's claim); those it does not take
        wait in this server's capture spool."""
        return RemoteCaptureWriter(self._post_capture, open_spool(self._t.base_url, spool))

    def _post_capture(self, target: CaptureTarget, batch_id: str, body: bytes, dropped: int) -> Any:
        path = f"{API}/models/{_segment(target.name)}/versions/{target.version}/captures"
        params = {"batch": batch_id, "method": target.method, "dropped": dropped}
        headers = {"Content-Type": ARROW_STREAM}
        response = self._t._with_retries(
            lambda: self._t.http.post(path, content=body, params=params, headers=headers)
        )
        return self._t.decode(response)


class RemoteLineage:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def upstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._walk("upstream", ref, max_depth, types)

    def downstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._walk("downstream", ref, max_depth, types)

    def _walk(
        self, direction: str, ref: str, max_depth: int, types: Sequence[str] | None
    ) -> LineageResult:
        params: dict[str, Any] = {"ref": ref, "max_depth": max_depth}
        if types:
            params["types"] = list(types)
        data = self._t.call("GET", f"/lineage/{direction}", params=params)
        nodes = {node["id"]: Node(**node) for node in data["nodes"]}
        edges = [WalkedEdge(*edge) for edge in data["edges"]]
        return LineageResult(
            Node(**data["start"]), data["direction"], edges, nodes, data["truncated"]
        )

    def ingest(
        self,
        artifacts: Sequence[Mapping[str, Any]],
        runs: Sequence[Mapping[str, Any]],
        actor: str,
    ) -> IngestResult:
        """One request, one transaction on the server; ``actor`` is the token's user there."""
        body = {"artifacts": list(artifacts), "runs": list(runs)}
        data = self._t.call("POST", "/lineage/ingest", json_body=body)
        return IngestResult(data["artifacts"], data["runs"], data["edges"])

    def _question(self, question: str, ref: str, max_depth: int) -> pd.DataFrame:
        params = {"ref": ref, "max_depth": max_depth}
        rows = self._t.call("GET", f"/lineage/questions/{question}", params=params)
        return pd.DataFrame(rows, columns=NODE_COLUMNS)

    def feature_groups_from_data_source(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._question("feature_groups_from_data_source", ref, max_depth)

    def data_sources_from_feature_group(self, ref: str, max_depth: int = 3) -> pd.DataFrame:
        return self._question("data_sources_from_feature_group", ref, max_depth)

    def models_from_feature_group(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._question("models_from_feature_group", ref, max_depth)

    def feature_groups_from_model(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._question("feature_groups_from_model", ref, max_depth)


class RemoteBlobStore:
    """The blob-store methods the client uses, over ``/api/v1/blobs/<digest>``.

    Uploads skip bytes the server already has (content addressing makes that safe); downloads
    are re-hashed here, so damaged or substituted bytes are refused before anything loads them.
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def exists(self, digest: str) -> bool:
        response = self._t.send("GET", f"/blobs/{digest}/size")
        if response.status_code == 404:
            return False
        self._t.decode(response)
        return True

    def size_of(self, digest: str) -> int:
        return self._t.call("GET", f"/blobs/{digest}/size")["size"]

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = digests.digest_bytes(data)
        if not self.exists(digest):
            self._put(digest, lambda: data)
        return StoredBlob(digest, len(data))

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob:
        source = Path(source)
        before = _stat(source)
        digest = _hash_file(source)
        if not self.exists(digest):
            if before.st_size >= SENDFILE_FROM:
                self._put_large(digest, source, before.st_size, progress)
            else:
                self._put(digest, lambda: _chunks(source, progress))
        if _fingerprint(_stat(source)) != _fingerprint(before):
            raise FileChangedError(
                f"{source} changed while clew was uploading it; retry once it is no longer "
                "being written."
            )
        return StoredBlob(digest, before.st_size)

    def put_directory(self, source: Path, progress: Progress | None = None) -> StoredDirectory:
        """Every file (those the server has are skipped), then the manifest naming them."""
        return put_directory(self, source, progress)

    def _put(self, digest: str, body: Callable[[], Any]) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        self._check_put(self._t.send("PUT", f"/blobs/{digest}", body, headers=headers))

    def _put_large(self, digest: str, source: Path, size: int, progress: Progress | None) -> None:
        """A large file goes to the socket with ``sendfile`` on a connection of its own: the
        kernel moves its pages, where httpx streamed 64 KiB chunks through Python (about a
        third of the client's CPU on a 128 MiB upload). Retried like every other request."""
        sender = _FileSender(self._t, self._t.base_url + API + f"/blobs/{digest}")
        self._check_put(self._t._with_retries(lambda: sender.put(source, size, progress)))

    def _check_put(self, response: httpx.Response) -> None:
        if response.status_code == 400 and b"digest_mismatch" in response.content[:200]:
            raise FileChangedError(self._t.error(response).args[0])
        self._t.decode(response)

    def read_bytes(self, digest: str) -> bytes:
        response = self._t.send("GET", self._t.blob_path(digest))
        if response.status_code in REDIRECTS:
            location = response.headers["location"]
            try:
                response = self._t.direct.get(location)
                if response.status_code >= 400:
                    raise self._t.error(response)
            except (httpx.TransportError, ClewError) as error:
                self._t.stop_direct(location, error)
                response = self._t.send("GET", self._t.blob_path(digest))
        if response.status_code >= 400:
            raise self._t.error(response)
        if digests.digest_bytes(response.content) != digest:
            raise _corrupt(digest)
        return response.content

    def read_manifest(self, digest: str) -> dict[str, str]:
        return parse_manifest(self.read_bytes(digest), digest)

    def export_file(self, digest: str, destination: Path) -> Path:
        """Download into a temp sibling at range offsets; it is renamed to ``destination`` only
        once the whole blob hashes to ``digest``, so a bad download leaves nothing there."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        temp = destination.with_name(f".{destination.name}.clew-tmp")
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                actual = self._fetch(digest, functools.partial(_write_at, descriptor))
            finally:
                os.close(descriptor)
            if actual != digest:
                raise _corrupt(digest)
            temp.replace(destination)
        finally:
            temp.unlink(missing_ok=True)
        return destination

    def verify(self, digest: str) -> bool:
        """True when the server has ``digest`` and its bytes, downloaded here, hash to it."""
        try:
            return self._fetch(digest, lambda _offset, _data: None) == digest
        except ClewError:
            return False

    def export_directory(self, digest: str, destination: Path) -> Path:
        """All files verified before any appears at ``destination`` (the local stores' rule)."""
        return export_directory(self, digest, destination)

    def _fetch(self, digest: str, write_at: Callable[[int, memoryview], Any]) -> str:
        """Download the blob into ``write_at(offset, bytes)`` and return the digest of what came.

        A one-byte probe tells the size (and whether the server redirects to a presigned
        object-store URL, which then serves every range without our token); then every range
        is read straight into one of a few reused buffers by a pool of threads while this
        thread hashes the buffers in order, so hashing overlaps the transfer, no byte is copied
        in Python and memory stays at a few ranges. If the object store fails part way, the
        whole blob is read again through the server (ranges land at their offsets, so the
        second pass overwrites the first).
        """
        source, total = self._locate(digest)
        if source.http is not self._t.direct:
            return self._read_ranges(source, total, write_at)
        try:
            return self._read_ranges(source, total, write_at)
        except ClewError as error:
            self._t.stop_direct(source.url, error)
        source, total = self._locate(digest)
        return self._read_ranges(source, total, write_at)

    def _read_ranges(
        self, source: _Source, total: int, write_at: Callable[[int, memoryview], Any]
    ) -> str:
        hasher = hashlib.sha256()
        offsets = iter(range(0, total, DOWNLOAD_RANGE))
        reader = _RangeReader(self._t, source, total, write_at)
        pool = ThreadPoolExecutor(DOWNLOAD_CONCURRENCY, thread_name_prefix="clew-range")
        window: deque[Future[memoryview]] = deque()
        try:
            for offset in itertools.islice(offsets, DOWNLOAD_CONCURRENCY + 1):
                window.append(pool.submit(reader.read, offset, bytearray(DOWNLOAD_RANGE)))
            while window:
                received = window.popleft().result()
                hasher.update(received)
                if (offset := next(offsets, None)) is not None:
                    window.append(pool.submit(reader.read, offset, received.obj))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            reader.close()
        return digests.PREFIX + hasher.hexdigest()

    def _locate(self, digest: str) -> tuple[_Source, int]:
        """Where the blob's ranges come from and its size: the presigned URL the server
        redirects to, or the server itself if there is none or it could not be reached."""
        relayed = self._relayed(digest)
        response = self._t._with_retries(lambda: _first_byte(relayed))
        if response.status_code in REDIRECTS and not self._t.relay_only:
            direct = _Source(self._t.direct, response.headers["location"])
            try:
                return direct, self._size(_first_byte(direct), digest)
            except (httpx.TransportError, ClewError) as error:
                self._t.stop_direct(direct.url, error)
            relayed = self._relayed(digest)
            response = self._t._with_retries(lambda: _first_byte(relayed))
        return relayed, self._size(response, digest)

    def _relayed(self, digest: str) -> _Source:
        return _Source(self._t.http, self._t.base_url + API + self._t.blob_path(digest))

    def _size(self, response: httpx.Response, digest: str) -> int:
        """The blob's size from the answer to a one-byte range request."""
        if response.status_code == 200:
            raise errors.StoreUnavailableError(
                f"{response.url.host} ignored the Range header of a blob download; clew "
                "downloads blobs in byte ranges, so check proxies between here and the server."
            )
        if response.status_code == 416 and _total(response, digest) == 0:
            return 0
        if response.status_code != 206:
            raise self._t.error(response)
        return _total(response, digest)


@dataclass(frozen=True)
class _Source:
    """Where a blob's ranges come from: our server (with the token) or a presigned URL."""

    http: httpx.Client
    url: str


class _RangeReader:
    """Reads byte ranges of one blob into caller-given buffers, one connection per thread.

    Plain ``http.client`` rather than httpx: its ``readinto`` moves the body from the socket
    straight into the buffer, where httpx would copy every 64 KiB chunk several times in
    Python; for a large download that copying was most of the client's CPU. The headers are
    those of the source's httpx client, so a presigned URL never gets our token.
    """

    def __init__(
        self,
        transport: Transport,
        source: _Source,
        total: int,
        write_at: Callable[[int, memoryview], Any],
    ) -> None:
        self._t = transport
        self._url = httpx.URL(source.url)
        self._headers = _identity_headers(source.http)
        self._timeout = source.http.timeout.read
        self._total = total
        self._write_at = write_at
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def read(self, start: int, buffer: bytearray) -> memoryview:
        """Bytes ``start..`` of the blob in ``buffer`` (a view of the part filled), written at
        their offset too; retried like every other request on a dropped connection or 5xx."""
        end = min(start + DOWNLOAD_RANGE, self._total)
        view = memoryview(buffer)[: end - start]
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                status, body = self._attempt(start, end, view)
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection()
                if last:
                    raise errors.ServerUnavailableError(
                        f"{self._url.host} did not answer a blob download ({error}); check that "
                        "it is running and reachable, then retry."
                    ) from error
            else:
                if status == 206:
                    self._write_at(start, view)
                    return view
                if status not in RETRY_STATUSES or last:
                    raise self._t.error(httpx.Response(status, content=body))
            _pause_before_retry(attempt)
        raise AssertionError("unreachable")

    def _attempt(self, start: int, end: int, view: memoryview) -> tuple[int, bytes]:
        connection = self._connection()
        headers = {**self._headers, **_range_header(start, end)}
        connection.request("GET", self._url.raw_path.decode("ascii"), headers=headers)
        response = connection.getresponse()
        if response.status != 206:
            return response.status, response.read()
        if response.getheader("content-range") != f"bytes {start}-{end - 1}/{self._total}":
            response.close()
            raise self._wrong_range()
        filled = 0
        while filled < len(view) and (count := response.readinto(view[filled:])):
            filled += count
        if filled != len(view) or response.read(1):
            response.close()
            raise self._wrong_range()
        return 206, b""

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _connection_to(self._url, self._timeout)
            with self._lock:
                self._opened.append(connection)
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _wrong_range(self) -> errors.IntegrityError:
        return errors.IntegrityError(
            f"{self._url.path} answered a byte range other than the one asked for; nothing was "
            "loaded; retry."
        )

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()


class _FileSender:
    """PUTs one file as the request body with ``socket.sendfile`` (``RemoteBlobStore``)."""

    def __init__(self, transport: Transport, url: str) -> None:
        self._url = httpx.URL(url)
        self._headers = _identity_headers(transport.http)
        self._timeout = transport.http.timeout.read

    def put(self, source: Path, size: int, progress: Progress | None) -> httpx.Response:
        """One attempt; a lost connection is an ``httpx.TransportError`` so it is retried."""
        connection = _connection_to(self._url, self._timeout)
        try:
            connection.putrequest("PUT", self._url.raw_path.decode("ascii"))
            for name, value in self._headers.items():
                connection.putheader(name, value)
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            _send_file(connection, source, size, progress)
            answer = connection.getresponse()
            return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
        except (OSError, http.client.HTTPException) as error:
            raise httpx.WriteError(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()


def _send_file(
    connection: http.client.HTTPConnection, source: Path, size: int, progress: Progress | None
) -> None:
    """Exactly ``size`` bytes of ``source`` (the size hashed); a file that shrank meanwhile is
    refused here, one that changed otherwise by the server's digest check."""
    with open(source, "rb") as reader:
        for offset in range(0, size, SENDFILE_STEP):
            count = min(SENDFILE_STEP, size - offset)
            if connection.sock.sendfile(reader, offset, count) != count:
                raise FileChangedError(
                    f"{source} got shorter while clew was uploading it; retry once it is no "
                    "longer being written."
                )
            if progress:
                progress(count)


def _identity_headers(http: httpx.Client) -> dict[str, str]:
    """Only who we are (and the token, for our own server) from ``http``'s headers: no
    Accept-Encoding, as blob bytes must travel exactly as stored."""
    return {
        name: value
        for name, value in http.headers.items()
        if name.lower() in ("authorization", "user-agent")
    }


def _connection_to(url: httpx.URL, timeout: float | None) -> http.client.HTTPConnection:
    if url.scheme == "https":
        return http.client.HTTPSConnection(
            url.host, url.port, timeout=timeout, context=httpx.create_ssl_context()
        )
    return http.client.HTTPConnection(url.host, url.port, timeout=timeout)


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


def _first_byte(source: _Source) -> httpx.Response:
    """A one-byte range request (a redirect is returned, not followed)."""
    with source.http.stream("GET", source.url, headers=_range_header(0, 1)) as answer:
        if answer.status_code != 200:  # a whole blob is never read into memory here
            answer.read()
    return answer


def _range_header(start: int, end: int) -> dict[str, str]:
    return {"Range": f"bytes={start}-{end - 1}"}


def _total(response: httpx.Response, digest: str) -> int:
    """The blob's size from a ``Content-Range: bytes a-b/<size>`` header."""
    _, _, total = response.headers.get("content-range", "").rpartition("/")
    if not total.isdigit():
        raise errors.IntegrityError(
            f"the server answered a range of blob {digest} without its size; nothing was loaded."
        )
    return int(total)


def _write_at(descriptor: int, offset: int, data: memoryview) -> None:
    """Write ``data`` at ``offset`` in ``WRITE_SLICE`` pieces: one 8 MiB ``pwrite`` per range
    cost the kernel two to five times the system time of the same bytes in 256 KiB writes
    (perf: ``copy_folio_from_iter_atomic``), which made a 256 MiB download 0.5x boto3."""
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view[:WRITE_SLICE], offset)
        view, offset = view[written:], offset + written


def _stat(path: Path) -> os.stat_result:
    try:
        result = path.stat()
    except FileNotFoundError as error:
        raise FileChangedError(f"{path} does not exist (or disappeared while reading).") from error
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a regular file.")
    return result


def _fingerprint(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
    return digests.PREFIX + hasher.hexdigest()


def _chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK):
            if progress:
                progress(len(chunk))
            yield chunk


def _corrupt(digest: str) -> errors.IntegrityError:
    return errors.IntegrityError(
        f"blob {digest} from the server does not match its digest; nothing was loaded; ask the "
        "server's admin to run `clew verify`."
    )


class RemoteStore:
    """The part of ``Store`` a client touches: its address and its blobs."""

    def __init__(self, uri: str, transport: Transport) -> None:
        self.uri = uri
        self.blobs = RemoteBlobStore(transport)


class RemoteBackend:
    def __init__(
        self, uri: str, token: str | None = None, signing_token: str | None = None
    ) -> None:
        token = token or os.environ.get("CLEW_TOKEN") or None
        signing_token = signing_token or os.environ.get("CLEW_SIGNING_TOKEN") or None
        self._transport = Transport(uri, token)
        self.store = RemoteStore(uri, self._transport)
        self.runs = RemoteRuns(self._transport)
        self.artifacts = RemoteArtifacts(self._transport, self.store.blobs)
        self.lineage = RemoteLineage(self._transport)
        self.registry = RemoteRegistry(self._transport)
        self.approvals = RemoteApprovals(self._transport, self.registry, signing_token)
        self.promotion = RemotePromotion(self._transport, self.registry)
        self.policies = RemotePolicies(self._transport)
        self.predictions = RemotePredictions(self._transport)
        self.user_keys = RemoteUserKeys(self._transport)
        self.sessions = RemoteSessions(self._transport)
        self.audit = RemoteAudit(self._transport)
        self._actor: str | None = None

    @property
    def actor(self) -> str:
        """The user the server knows this token as (every write is attributed to it)."""
        if self._actor is None:
            self._actor = self._transport.call("GET", "/whoami")["name"]
        return self._actor

    def record_read(self, digest: str, actor: str) -> None:
        """Nothing to do here: the server audits each download as it answers it."""

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        return self.runs.search_runs(filter_text, order_by, max_results, experiments)

    def close(self) -> None:
        self._transport.close()
