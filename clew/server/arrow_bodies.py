"""Request bodies sent as Arrow IPC streams: capture batches, and the SDK's metric points.

Columns travel as typed buffers, so the server neither parses nor validates a JSON value per
row; decoding is bounded so a small compressed body cannot expand without limit: every route
states its ``Limits``, and the whole stream's declared rows, values and decompressed bytes are
checked against them from the message headers before any batch is decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from fastapi import Request

from clew.errors import InvalidInputError
from clew.server.arrow_limits import Cost, message_cost

ARROW_STREAM = "application/vnd.apache.arrow.stream"
BODY_TYPES = (ARROW_STREAM, "application/octet-stream")  # the body is an Arrow IPC stream
MAX_DECODED_BYTES = 256 * 1024 * 1024
OPENAPI_BINARY = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Limits:
    """The most one body may decode to: record-batch rows, array values (nested children and
    dictionaries counted) and decompressed bytes."""

    rows: int
    values: int
    decoded_bytes: int = MAX_DECODED_BYTES


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def decode(body: bytes, what: str, limits: Limits) -> pa.Table:
    """The stream's table, decoded only once its headers show it fits ``limits``."""
    buffer = pa.py_buffer(body)
    try:
        check_cost(buffer, what, limits)
        reader = pa.ipc.open_stream(buffer)
        return pa.Table.from_batches(list(reader), schema=reader.schema)
    except (pa.ArrowException, OSError, ValueError) as error:  # pyarrow raises all three
        raise InvalidInputError(
            f"the {what} is not a readable Arrow IPC stream ({error})."
        ) from error


def check_cost(buffer: pa.Buffer, what: str, limits: Limits) -> None:
    """Refuse the stream as soon as its running cost passes a limit (nothing is decompressed)."""
    total = Cost()
    for message in pa.ipc.MessageReader.open_stream(buffer):
        total += message_cost(message)
        for name, limit, verb in (
            ("rows", limits.rows, "holds more than {} rows"),
            ("values", limits.values, "holds more than {} values"),
            ("decoded_bytes", limits.decoded_bytes, "decodes to more than {} bytes"),
        ):
            if getattr(total, name) > limit:
                raise InvalidInputError(
                    f"the {what} {verb.format(limit)}; send fewer rows per request."
                )
