"""OpenLineage's HTTP transport: ``POST /api/v1/lineage`` takes run events, gzip or plain.

The body is one RunEvent (what openlineage-python's HTTP transport sends) or, as clew's own
extension for bulk senders, a JSON list of them. A gzip body is inflated in bounded steps and
refused once it passes the server's JSON body limit, so a small compressed bomb costs the
server that limit, not its memory.
"""

from __future__ import annotations

import json
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from clew.errors import InvalidInputError
from clew.server.deps import ActorDep, ServicesDep
from clew.server.errors import HTTPError
from clew.server.limits import MAX_JSON_BYTES, check_text_depth
from clew.server.routes.bodies import PlainRoute

router = APIRouter(prefix="/api/v1", tags=["lineage"], route_class=PlainRoute)
_CHUNK = 1024 * 1024


async def _body(request: Request) -> bytes:
    return await request.body()


@router.post("/lineage", status_code=201)
def receive(
    request: Request,
    body: Annotated[bytes, Depends(_body)],
    services: ServicesDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """OpenLineage RunEvents (one, or a list) into the lineage graph, in one transaction
    (synchronous, so a retried request with the same Idempotency-Key lands once)."""
    limit = getattr(request.app.state, "max_json_bytes", MAX_JSON_BYTES)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    text = _decoded(body, encoding, limit)
    events = check_text_depth(text, _json(text), "the OpenLineage body")
    return services.openlineage.receive(events, actor).to_dict()


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as JSON bytes: plain, or gzip inflated to at most ``limit`` bytes."""
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise HTTPError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {encoding!r} is not supported here; send gzip or no encoding.",
        )
    inflater = zlib.decompressobj(wbits=31)
    parts: list[bytes] = []
    size = 0
    try:
        pending = body
        while pending and not inflater.eof:
            part = inflater.decompress(pending, _CHUNK)
            size += len(part)
            if size > limit:
                raise HTTPError(
                    413,
                    "payload_too_large",
                    f"the gzip body inflates to more than {limit} bytes; send the events in "
                    "smaller requests.",
                )
            parts.append(part)
            pending = inflater.unconsumed_tail
    except zlib.error:
        raise InvalidInputError(
            "the body says Content-Encoding gzip but is not valid gzip; compress it with gzip "
            "or drop the header."
        ) from None
    if not inflater.eof:
        raise InvalidInputError("the gzip body ends early; send the whole compressed event.")
    return b"".join(parts)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidInputError(
            "the body is not JSON; send an OpenLineage RunEvent (or a list of them) as JSON."
        ) from None
