"""Request bodies sent as Arrow IPC streams: capture batches, and the SDK's metric points.

Columns travel as typed buffers, so the server neither parses nor validates a JSON value per
row; decoding is bounded so a small compressed body cannot expand without limit.
"""

from __future__ import annotations

import pyarrow as pa
from fastapi import Request

from clew.errors import InvalidInputError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
BODY_TYPES = (ARROW_STREAM, "application/octet-stream")  # the body is an Arrow IPC stream
MAX_DECODED_BYTES = 256 * 1024 * 1024
OPENAPI_BINARY = {"type": "string", "format": "binary"}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def decode(body: bytes, what: str) -> pa.Table:
    """The stream's table, read batch by batch, refusing one that decompresses past the bound."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        batches, decoded = [], 0
        for record_batch in reader:
            decoded += record_batch.nbytes
            if decoded > MAX_DECODED_BYTES:
                raise InvalidInputError(
                    f"the {what} decodes to more than {MAX_DECODED_BYTES} bytes; send fewer "
                    "rows per batch."
                )
            batches.append(record_batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except (pa.ArrowException, OSError, ValueError) as error:  # pyarrow raises all three
        raise InvalidInputError(
            f"the {what} is not a readable Arrow IPC stream ({error})."
        ) from error
