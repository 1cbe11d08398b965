"""Artifacts and their bytes.

Bytes are addressed only by digest: ``PUT /blobs/<digest>`` hashes the body as it arrives and
commits the blob only if the bytes hash to the digest in the URL and, when they read as a
directory manifest, every path in it stays inside its directory, either by renaming a temp
file from the server's own upload directory (local blobs) or by completing a multipart upload
whose parts went up while the body was still arriving (object stores; aborted otherwise).
``GET /blobs/<digest>`` honours a single byte range, so clients fetch large blobs in parallel,
and always answers with an attachment (``Content-Disposition``, a sanitised file name) under
``Content-Security-Policy: sandbox``: an uploaded HTML or SVG file can never run as a page of
the server's origin, even if a browser is led to it.
No client-supplied name, path or URI is ever joined to a filesystem path or fetched. Artifact
records may cite a reference URI, which is checked (clew/service/uploads.py) and stored as text.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from clew.domain import digests, refs
from clew.errors import InvalidInputError, StoreUnavailableError
from clew.server.deps import PrincipalDep, ServicesDep
from clew.server.errors import HTTPError
from clew.server.routes.bodies import Body, Id, Int64, JsonObject, Name, PlainRoute
from clew.service import accounts, reads, uploads
from clew.store.blobs import BlobBackend, PartUpload
from clew.store.object_store import PART_SIZE

router = APIRouter(prefix="/api/v1", tags=["artifacts"], route_class=PlainRoute)

DigestParam = Annotated[str, PathParam(pattern=r"^sha256:[0-9a-f]{64}$")]
MAX_BLOB_BYTES = 1 << 40
PRESIGNED_ENV = "CLEW_PRESIGNED_DOWNLOADS"
DEFAULT_PRESIGNED_SECONDS = 900
MAX_PRESIGNED_SECONDS = 7 * 24 * 60 * 60
# Smaller blobs are relayed: one round trip instead of two, and no URL handed out for them.
PRESIGNED_MIN_BYTES = PART_SIZE
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")
FileName = Annotated[str | None, Query(max_length=255, description="The saved file's name.")]
BlobEntry = Annotated[tuple[Int64, Annotated[str, Field(max_length=20)]], Field(strict=False)]
DigestText = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class LogArtifact(Body):
    run_id: Id | None = None
    direction: Annotated[str, Field(max_length=10)]
    type: Annotated[str, Field(max_length=40)]
    name: Name
    digest: DigestText
    size: Int64 | None = None
    uri: Annotated[str, Field(max_length=uploads.MAX_URI_LENGTH)] | None = None
    properties: JsonObject = Field(default_factory=dict)
    blobs: Annotated[dict[DigestText, BlobEntry], Field(max_length=1_000_000)] = Field(
        default_factory=dict
    )
    derived_from: Annotated[list[Id], Field(max_length=1000)] = Field(default_factory=list)


@router.post("/artifacts", status_code=201)
def log_artifact(body: LogArtifact, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    uploads.check_blob_kinds(body.blobs)
    if body.run_id:
        accounts.require_run_writer(services.store, body.run_id, who)
    record = services.artifacts.log(
        run_id=body.run_id,
        direction=body.direction,
        type_=body.type,
        name=body.name,
        digest=body.digest,
        actor=who.name,
        size=body.size,
        uri=body.uri,
        properties=body.properties,
        blobs={digest: (size, kind) for digest, (size, kind) in body.blobs.items()},
        derived_from=body.derived_from,
    )
    return wire(record)


@router.get("/artifacts")
def find_artifact(
    ref: Annotated[str, Query(max_length=400)], services: ServicesDep
) -> dict[str, Any]:
    parsed = refs.parse(ref)
    if not isinstance(parsed, refs.ArtifactRef):
        raise InvalidInputError(f"{ref!r} is not an artifact ref; use type:name[@sha256:...].")
    return wire(services.artifacts.find(parsed))


@router.get("/artifacts/{artifact_id}")
def get_artifact(artifact_id: Id, services: ServicesDep) -> dict[str, Any]:
    return wire(services.artifacts.get(artifact_id))


def wire(record: Any) -> dict[str, Any]:
    fields: dict[str, Any] = record.to_dict()
    return fields | {"created_ms": record.created_ms}


@router.put("/blobs/{digest}", status_code=201)
async def upload_blob(
    digest: DigestParam, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Store a blob whose bytes must hash to ``digest``; on an object store they stream
    straight into a multipart upload at the final key that completes only if they match."""
    blobs = services.store.blobs
    if await run_in_threadpool(blobs.exists, digest):
        async for _chunk in request.stream():
            pass
        return {"digest": digest, "size": await run_in_threadpool(blobs.size_of, digest)}
    streamed = blobs.streamed_upload(digest)
    if streamed is not None:
        size = await _stream_to_object_store(request, streamed, digest)
        return {"digest": digest, "size": size}
    store = services.store
    store.uploads.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=store.uploads, prefix="upload-")
    temp = Path(name)
    try:
        size = await _receive(request, descriptor, digest)
        await run_in_threadpool(blobs.adopt_verified_file, temp, digest)
    finally:
        temp.unlink(missing_ok=True)
    return {"digest": digest, "size": size}


async def _stream_to_object_store(request: Request, upload: PartUpload, digest: str) -> int:
    """Hash the body while its parts go up; complete only on a match, abort otherwise (a
    mismatch, an oversize body, a dropped connection), so nothing half-written is visible.

    Parts (a little over ``PART_SIZE``: S3 allows any size above 5 MiB) are hashed in order
    by one thread, 8 MiB at a time: hashing each small network chunk on the event loop
    released and re-took the GIL thousands of times per part while the part uploads held it.
    Each part is joined into a ``bytearray``, not ``bytes``: botocore wraps a ``bytes`` body
    in a file object, which then goes out 16 KiB per Python call after an
    ``Expect: 100-continue`` round trip, where a buffer goes to the socket in one call.
    """
    hasher = digests.Hasher()
    manifest = uploads.ManifestSniffer()
    size = 0
    pending: list[bytes] = []
    buffered = 0
    hashing = ThreadPoolExecutor(1, thread_name_prefix="clew-hash")
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BLOB_BYTES:
                raise _too_large()
            manifest.feed(chunk)
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= PART_SIZE:
                part = bytearray().join(pending)
                pending, buffered = [], 0
                hashing.submit(hasher.update, part)
                await run_in_threadpool(upload.add_part, part)
        last = bytearray().join(pending)
        hashing.submit(hasher.update, last)
        await run_in_threadpool(hashing.shutdown)
        actual = hasher.digest()
        if actual != digest:
            raise _mismatch(digest, actual)
        manifest.check(digest)
        await run_in_threadpool(upload.finish, last)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(hashing.shutdown, cancel_futures=True)
            await run_in_threadpool(upload.abort)
        raise
    return size


async def _receive(request: Request, descriptor: int, digest: str) -> int:
    """Stream the body to ``descriptor`` while hashing; refuse a mismatch or an oversize body."""
    hasher = digests.Hasher()
    manifest = uploads.ManifestSniffer()
    size = 0
    with os.fdopen(descriptor, "wb") as sink:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BLOB_BYTES:
                raise _too_large()
            hasher.update(chunk)
            manifest.feed(chunk)
            sink.write(chunk)
    actual = hasher.digest()
    if actual != digest:
        raise _mismatch(digest, actual)
    manifest.check(digest)
    return size


def _too_large() -> HTTPError:
    return HTTPError(413, "payload_too_large", "the blob is larger than 1 TiB.")


def _mismatch(expected: str, actual: str) -> HTTPError:
    return HTTPError(
        400,
        "digest_mismatch",
        f"the uploaded bytes hash to {actual}, not {expected}; nothing was stored; re-send "
        "the file (it may have changed while uploading).",
    )


@router.get("/blobs/{digest}/size")
def blob_size(digest: DigestParam, services: ServicesDep) -> dict[str, Any]:
    return {"digest": digest, "size": services.store.blobs.size_of(digest)}


@router.get("/blobs/{digest}")
def download_blob(
    digest: DigestParam,
    services: ServicesDep,
    who: PrincipalDep,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
    relay: Annotated[
        bool, Query(description="Send the bytes through this server, never a redirect.")
    ] = False,
    filename: FileName = None,
) -> Response:
    """Stream a blob, or the one byte range asked for; the client re-hashes every byte of the
    whole blob, so a damaged blob is never loaded, and fetches large ones as parallel ranges.

    A blob on this server's disk is sent from its file. On a store that presigns URLs (an
    object store), a blob of ``PRESIGNED_MIN_BYTES`` or more is answered by default with a
    redirect (307) to a presigned URL valid ``CLEW_PRESIGNED_DOWNLOADS`` seconds, which
    answers with the same ``Content-Disposition: attachment`` as this route, so its
    bytes flow from the object store straight to the client: relaying them through this
    process cost twice boto3's time on a 2-core host. ``relay=true`` (what the SDK asks
    once it could not reach the object store) and ``CLEW_PRESIGNED_DOWNLOADS=0`` relay the
    bytes part by part as they arrive instead (no temp copy: the client's hash is the check).
    Each answer is audited before it starts when the blob is governed (clew/service/reads.py).
    """
    blobs = services.store.blobs
    size = blobs.size_of(digest)  # a blob the store lacks is a 404 before any response starts
    attachment = attachment_headers(digest, filename)
    path = blobs.local_path(digest)
    url = None if path else _presigned_url(blobs, digest, size, attachment, relay)
    how = reads.ReadHow.REDIRECT if url else reads.ReadHow.STREAM
    reads.record_read(services.store, who.name, digest, how, range_header)
    if path:
        return FileResponse(path, media_type="application/octet-stream", headers=attachment)
    if url:
        return RedirectResponse(url, status_code=307)
    span = _single_range(range_header, size)
    if span is None:
        return _stream(blobs, digest, 0, size, 200, attachment)
    start, end = span
    if start >= size or start >= end:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    content_range = {"Content-Range": f"bytes {start}-{end - 1}/{size}"}
    return _stream(blobs, digest, start, end, 206, attachment | content_range)


def _presigned_url(
    blobs: BlobBackend, digest: str, size: int, attachment: dict[str, str], relay: bool
) -> str | None:
    """Where to redirect the download, if anywhere. ``CLEW_PRESIGNED_DOWNLOADS`` is read
    for every blob not on this server's disk, so a malformed setting is reported at once."""
    seconds = presigned_seconds()
    if relay or not seconds or size < PRESIGNED_MIN_BYTES:
        return None
    return blobs.presigned_url(digest, seconds, attachment["Content-Disposition"])


def attachment_headers(digest: str, filename: str | None) -> dict[str, str]:
    """Save, never display: the bytes download under a safe name and, opened anyway, run in a
    sandbox without the server's origin."""
    name = safe_file_name(filename or "") or digest.replace(":", "-")
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Security-Policy": "sandbox",
    }


def safe_file_name(asked: str) -> str:
    """The last path part of ``asked`` in plain ASCII letters, digits, ``._ -`` (anything else
    becomes ``_``), without leading dots; empty when nothing is left."""
    last = re.split(r"[/\\]", asked)[-1]
    return _UNSAFE_NAME.sub("_", last).lstrip(". ")[:128]


def presigned_seconds() -> int:
    """How long a download redirect stays valid (``CLEW_PRESIGNED_DOWNLOADS``, default
    ``DEFAULT_PRESIGNED_SECONDS``); 0 turns redirects off."""
    value = os.environ.get(PRESIGNED_ENV, "").strip()
    if not value:
        return DEFAULT_PRESIGNED_SECONDS
    if not value.isdigit() or not 0 <= int(value) <= MAX_PRESIGNED_SECONDS:
        raise StoreUnavailableError(
            f"{PRESIGNED_ENV}={value!r} is not a number of seconds from 0 to "
            f"{MAX_PRESIGNED_SECONDS}; fix the server's environment."
        )
    return int(value)


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range; None for anything else,
    which is then answered with the whole blob (RFC 9110 lets a server ignore Range)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        return (max(size - int(last), 0), size) if last else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return start, end


def _stream(
    blobs: BlobBackend, digest: str, start: int, end: int, status: int, headers: dict[str, str]
) -> StreamingResponse:
    return StreamingResponse(
        _object_parts(blobs, digest, start, end),
        status_code=status,
        media_type="application/octet-stream",
        headers={"Content-Length": str(end - start), "Accept-Ranges": "bytes", **headers},
    )


def _object_parts(blobs: BlobBackend, digest: str, start: int, end: int) -> Iterator[bytes]:
    """The range's parts in order; the next part is fetched while the current one is sent."""
    parts = blobs.read_range(digest, start, end)
    with ThreadPoolExecutor(1, thread_name_prefix="clew-read-ahead") as ahead:
        upcoming = ahead.submit(next, parts, b"")
        while part := upcoming.result():
            upcoming = ahead.submit(next, parts, b"")
            yield part
