"""What a caller may read in an error: never where the server keeps its data.

The store's messages name its directory, blob location or database URL, because the person
running clew locally needs them to fix a fault. Over HTTP the same sentence would tell any
caller (a viewer, or someone with a bogus token) the server's paths, database user, host, port
and name. So every error leaving the server goes through ``public_message``: a 5xx answer is
replaced by a sentence that says what to do and which request failed (unless it is an
integrity or storage finding the caller must read), and in every other answer each internal
location is replaced by "the server's storage". The full sentence goes to the server
log with the request id, where the operator looks it up.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from sqlalchemy.engine import make_url
from starlette.requests import Request

from clew.store.location import Store

log = logging.getLogger("clew.server")
PLACEHOLDER = "the server's storage"
# 5xx answers whose sentence is written for the caller: which record the store can no longer
# vouch for, which file is damaged. Hiding them would hide the finding itself (an auditor must
# read "actor is 'mallory' where audit entry #18 recorded 'bob'"), so they are redacted like a
# 4xx instead of replaced. Anything else at 5xx (a crash, the database unreachable) is replaced.
_SPOKEN_FAULTS = frozenset({"integrity_error", "storage_fault"})
_CACHE = "clew_internal_names"


def internal_names(store: Store) -> list[str]:
    """The store's locations as text, longest first (a path before the directory it is in)."""
    names = {str(store.home), str(store.home.resolve()), store.uri, str(store.captures)}
    names |= store.blobs.location_names()
    url = make_url(store.db.url)
    names |= {url.render_as_string(hide_password=True), url.render_as_string(hide_password=False)}
    if url.get_backend_name() == "sqlite":
        names.add(str(url.database or ""))
    return sorted((name for name in names if len(name) >= 4), key=len, reverse=True)


def public_message(
    request: Request | None, status: int, code: str, message: str, *, log_fault: bool = False
) -> str:
    """``message`` as a caller may read it. A 5xx's original is logged here when
    ``log_fault`` (the API's error handlers log their own), a 4xx's when anything in it was
    replaced. ``clew ui``, which serves the user's own store on the user's own machine, shows
    its user everything."""
    if request is not None and getattr(request.app.state, "store", None) is None:
        return message
    request_id = _request_id(request)
    if status >= 500 and code not in _SPOKEN_FAULTS:
        if log_fault:
            log.error("request %s failed (%s): %s", request_id, code, message)
        return _server_fault(status, request_id)
    redacted = _redact(message, _names(request))
    if redacted != message:
        log.warning("request %s refused (%s): %s", request_id, code, message)
    return redacted


def _server_fault(status: int, request_id: str) -> str:
    if status == 503:
        return (
            f"the server's store is unavailable right now; try again shortly (request "
            f"{request_id}; the server log has the details)."
        )
    return f"the server failed on request {request_id}; the server log has the details."


def _redact(message: str, names: list[str]) -> str:
    for name in names:
        message = message.replace(name, PLACEHOLDER)
    host = socket.gethostname()
    if len(host) >= 4:
        message = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "the server", message)
    return message


def _names(request: Request | None) -> list[str]:
    """The internal names of the app's store, worked out once per app."""
    if request is None:
        return []
    state: Any = request.app.state
    cached = getattr(state, _CACHE, None)
    if cached is None:
        store = getattr(state, "store", None)
        cached = internal_names(store) if isinstance(store, Store) else []
        setattr(state, _CACHE, cached)
    return list(cached)


def _request_id(request: Request | None) -> str:
    state = getattr(request, "state", None)
    return str(getattr(state, "request_id", None) or "-")
