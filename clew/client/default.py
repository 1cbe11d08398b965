"""The process-wide default client behind ``clew.start_run`` and the other module functions."""

from __future__ import annotations

import threading

from clew.client.client import Client

_default: Client | None = None
_lock = threading.Lock()


def connect(
    uri: str | None = None,
    artifacts: str | None = None,
    token: str | None = None,
    signing_token: str | None = None,
    create: bool = False,
) -> Client:
    """Open a store (a directory, ``sqlite:///...``, ``postgresql+psycopg://...`` or a clew
    server's ``http(s)://`` address with ``token`` or ``CLEW_TOKEN``) as the default.

    ``signing_token`` (or ``CLEW_SIGNING_TOKEN``) is the server-side e-signature that approve,
    reject and revoke need on top of the API token. ``create`` starts an empty store on purpose
    where blobs, captures or keys are found without their database (otherwise refused)."""
    global _default
    client = Client(uri, artifacts, token, signing_token, create)
    with _lock:
        previous, _default = _default, client
    if previous is not None and previous is not client:
        previous.close()
    return client


def get_client() -> Client:
    """The default client, opened from ``CLEW_URI`` / ``CLEW_HOME`` (~/.clew) on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default


def reset() -> None:
    """Close and forget the default client (tests, long-lived processes switching stores)."""
    global _default
    with _lock:
        previous, _default = _default, None
    if previous is not None:
        previous.close()
