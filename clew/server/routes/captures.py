"""Capture batches from remote clients, and captured predictions read back over HTTP.

A client that loaded a model from this server queues its predictions and posts them here in
batches (an Arrow IPC stream of ids, times, inputs and outputs). The server checks the rows,
adds the model columns from its registry, builds the Merkle tree, signs the root with the
store's key and writes the batch where the store keeps captures, exactly as an in-process
writer would: the signing key never leaves the server. The batch id in the query makes a
retried post harmless. Bodies are read as they stream in and refused past ``MAX_BATCH_BYTES``.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from clew.domain.captures import CaptureTarget
from clew.errors import InvalidInputError
from clew.server import arrow_bodies
from clew.server.arrow_bodies import ARROW_STREAM, BODY_TYPES
from clew.server.deps import ActorDep, ServicesDep
from clew.server.errors import HTTPError
from clew.server.responses import JSONResponse
from clew.server.routes.bodies import Name
from clew.service import capture_lookup, signing
from clew.service.capture_acceptance import MAX_REMOTE_ROWS, accept_batch
from clew.service.registry import RegistryService
from clew.store.location import Store

router = APIRouter(prefix="/api/v1", tags=["predictions"])

MAX_BATCH_BYTES = 16 * 1024 * 1024
CAPTURE_LIMITS = arrow_bodies.Limits(rows=MAX_REMOTE_ROWS, values=64 * 1024 * 1024)
BatchId = Annotated[str, Query(min_length=26, max_length=26, description="a client-made ULID")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/models/{name}/versions/{version}/captures",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {media: {"schema": arrow_bodies.OPENAPI_BINARY} for media in BODY_TYPES},
        }
    },
)
async def post_capture(
    name: Name,
    version: Version,
    batch: BatchId,
    request: Request,
    services: ServicesDep,
    actor: ActorDep,
    method: Literal["predict", "predict_proba"] = "predict",
    dropped: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JSONResponse:
    """Seal, sign and store one batch of predictions (201; 200 when the batch id is known)."""
    if arrow_bodies.media_type(request) not in BODY_TYPES:
        raise HTTPError(
            415,
            "unsupported_media_type",
            f"send a capture batch as an Arrow IPC stream (Content-Type: {ARROW_STREAM}).",
        )
    body = await _bounded_body(request)
    rows = arrow_bodies.decode(body, "capture batch", CAPTURE_LIMITS)
    target = await run_in_threadpool(_target, services.registry, f"{name}/{version}", method)
    signer = await run_in_threadpool(_signer, request, services.store)
    accepted = await run_in_threadpool(
        accept_batch, services.store, signer, actor, target, batch, rows, dropped
    )
    return JSONResponse(accepted.to_dict(), status_code=200 if accepted.duplicate else 201)


@router.get("/predictions/{prediction_id}")
def get_prediction(
    prediction_id: Annotated[str, Path(min_length=1, max_length=80)], services: ServicesDep
) -> JSONResponse:
    """A captured prediction with its proof, its stored row and the rows of its Merkle leaf
    (Arrow IPC, base64) so the caller can re-check leaf, proof and signature with only the
    public key."""
    found = capture_lookup.find_prediction(services.store, prediction_id)
    data: dict[str, Any] = found.to_dict()
    data["model_version_id"] = found.model_version_id
    data["time_ms"] = found.time_ms
    data["labelled"] = found.labelled
    data["row"] = _encoded(found.row)
    data["leaf_table"] = _encoded(found.leaf_table)
    return JSONResponse(data)


def _encoded(table: pa.Table | None) -> str | None:
    return None if table is None else base64.b64encode(_encode(table)).decode()


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
        raise _too_large()
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > MAX_BATCH_BYTES:
            raise _too_large()
        chunks.append(chunk)
    if not seen:
        raise InvalidInputError("the capture batch body is empty; send an Arrow IPC stream.")
    return b"".join(chunks)


def _too_large() -> HTTPError:
    return HTTPError(
        413,
        "payload_too_large",
        f"a capture batch body is at most {MAX_BATCH_BYTES} bytes; send fewer rows per batch.",
    )


def _target(registry: RegistryService, ref: str, method: str) -> CaptureTarget:
    version = registry.resolve(ref)
    return CaptureTarget(version.id, version.name, version.version, version.digest, method)


def _signer(request: Request, store: Store) -> signing.Signer:
    """One signer per app, its key loaded once and again only after a key rotation."""
    current = getattr(request.app.state, "capture_signer", None)
    signer = request.app.state.capture_signer = signing.current_signer(store, current)
    return signer


def _encode(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    encoded: bytes = sink.getvalue().to_pybytes()
    return encoded
