"""What an object-store URL means: its fsspec filesystem, path and storage options.

``s3://bucket/prefix?endpoint_url=...&region=...&profile=...`` carries where and how to reach
a bucket, never credentials (those come from the environment or a profile). The artifact store
(``store/object_store.py``) and checkpoint exports (``domain/checkpoint_exports.py``) read URLs
by the same rules. It lives in the domain because the remote client writes checkpoint exports
itself and must not import the store; building a filesystem does no I/O (fsspec connects on
first use).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from clew.errors import InvalidInputError

_QUERY_OPTIONS = {"endpoint_url": "endpoint_url", "endpoint": "endpoint_url", "region": "region"}
_SECRET_PARAMETERS = {"key", "secret", "token", "access_key_id", "secret_access_key"}


def filesystem_for(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of one object URL, with the same endpoint, region and
    credential rules as the artifact store (``?endpoint_url=...``, ``AWS_ENDPOINT_URL``)."""
    import fsspec

    base, options = base_and_options(url)
    filesystem, path = fsspec.core.url_to_fs(base, **options)
    return filesystem, str(path)


def base_and_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without its query, and the fsspec storage options its query and the
    environment give."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return base, _storage_options(parts.scheme, url, dict(parse_qsl(parts.query)))


def _storage_options(scheme: str, url: str, query: dict[str, str]) -> dict[str, Any]:
    secrets = _SECRET_PARAMETERS & set(query)
    if secrets:
        raise InvalidInputError(
            f"the artifacts URL carries credentials ({', '.join(sorted(secrets))}); remove them "
            "and set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE instead."
        )
    unknown = set(query) - set(_QUERY_OPTIONS) - {"profile"}
    if unknown:
        raise InvalidInputError(
            f"unknown option(s) {', '.join(sorted(unknown))} in {url.split('?')[0]}; accepted: "
            "endpoint_url, region, profile."
        )
    if scheme != "s3":
        return dict(query)
    options: dict[str, Any] = {}
    client_kwargs: dict[str, str] = {}
    endpoint = query.get("endpoint_url") or query.get("endpoint") or _endpoint_from_environment()
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = (
        query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    if region:
        client_kwargs["region_name"] = region
    if "profile" in query:
        options["profile"] = query["profile"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def _endpoint_from_environment() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
