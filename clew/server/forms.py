"""Reading a browser's url-encoded form, bounded: for the web UI's pages and for ``auth``,
which takes an approval's signing token from the approve form."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import HTTPException, Request

MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """A url-encoded form body as a dict (first value of each field), at most 64 KiB."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "the form is too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}
