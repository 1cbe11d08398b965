"""Rules for what a remote caller may hand the store: reference URIs and directory manifests.

A server must never act on a client-supplied location. Reference URIs (``s3://bucket/key``)
are recorded as text only, and even as text some are refused because nothing legitimate
points there: ``file://`` and every other scheme fsspec would open on this machine or through
an unsupported filesystem (``local``, ``zip``, ``ssh``, ``ftp``, ``memory``, chained ``a::b``
URLs; a path on the *client's* disk means nothing on the server and invites local-file
inclusion later), scheme-less paths, fragments and embedded credentials. The host of an
``http(s)`` URI is not checked: the server never connects to it, and the SDK reads a
reference's size in the caller's own process, with network access the caller has anyway. A
filter on "loopback" hosts protected nothing and could not be complete (``2130706433``,
``0x7f000001``, ``127.1``, ``0`` and any DNS name can all mean 127.0.0.1), so none pretends
to be one. A scheme nothing can open
(``postgres://crm/customers``, ``sklearn://datasets/wine``) names data outside any store and
is kept as a label. The embedded store applies the same rule (``ArtifactService.log``), so an
SDK call is refused identically on both backends, and the embedded client never fetches the
size of a refused URI. Directory manifests name files by
relative path; a manifest that could make an export land outside its destination (``..``,
absolute paths, backslashes, drive letters, NUL) is refused before any record points at it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from clew.errors import InvalidInputError
from clew.store.blobs import SNIFF_BYTES, could_be_json

# Object stores and web addresses: opened by fsspec (the embedded client reads their size).
REFERENCE_SCHEMES = frozenset(
    {"s3", "gs", "gcs", "az", "abfs", "abfss", "adl", "hdfs", "http", "https", "dbfs", "hf"}
)
# Schemes a browser would execute or inline even though fsspec cannot open them.
_ACTIVE_SCHEMES = frozenset({"javascript", "vbscript", "data", "blob"})
_HIERARCHICAL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_BRACKETED_HOST = re.compile(r"\[[^\]]*\]")
MAX_URI_LENGTH = 2048
MANIFEST_KIND = "clew.manifest/v1"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_reference_uri(uri: str | None) -> str | None:
    """Refuse reference URIs that something here would open, or that carry secrets."""
    if uri is None:
        return None
    if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH or not uri.isprintable():
        raise _bad_uri(uri, f"it must be printable text of at most {MAX_URI_LENGTH} characters")
    _scheme(uri)  # refuses a scheme something here would open
    parts = urlsplit(uri)
    if "#" in uri:
        raise _bad_uri(uri, "fragments (#...) are not allowed")
    if parts.username or parts.password:
        raise _bad_uri(uri, "credentials must not be embedded in a URI")
    return uri


def _scheme(uri: str) -> str:
    """The URI's scheme, when it is one that names data and that nothing here would open."""
    match = _HIERARCHICAL.match(uri)
    if match is None:
        raise _bad_uri(
            uri, "it needs a scheme such as s3:// or https://; upload local files instead"
        )
    if "::" in _BRACKETED_HOST.sub("", uri):
        raise _bad_uri(uri, "chained URLs (a::b) are not allowed")
    scheme = match.group(1).lower()
    if scheme in REFERENCE_SCHEMES:
        return scheme
    if scheme in _ACTIVE_SCHEMES or scheme in _openable_schemes():
        allowed = ", ".join(sorted(REFERENCE_SCHEMES))
        raise _bad_uri(
            uri,
            f"{scheme}:// would be opened on this machine or through an unsupported filesystem; "
            f"use one of {allowed}, or upload local files instead",
        )
    return scheme


def _openable_schemes() -> set[str]:
    import fsspec

    return {protocol.lower() for protocol in fsspec.available_protocols()}


def _bad_uri(uri: Any, why: str) -> InvalidInputError:
    shown = uri[:200] if isinstance(uri, str) else uri
    return InvalidInputError(f"reference URI {shown!r} is refused: {why}.")


def check_manifest_bytes(data: bytes, digest: str) -> dict[str, str]:
    """Parse a directory manifest and refuse entries that could escape their directory."""
    try:
        manifest = json.loads(data)
    except ValueError:
        raise InvalidInputError(f"blob {digest} is not a directory manifest (not JSON).") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise InvalidInputError(f"blob {digest} is not a {MANIFEST_KIND} directory manifest.")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InvalidInputError(f"manifest {digest} has no 'files' mapping.")
    for relative, file_digest in files.items():
        check_relative_path(relative)
        if not isinstance(file_digest, str):
            raise InvalidInputError(f"manifest entry {relative!r} has no digest.")
    return files


class ManifestSniffer:
    """Keeps an arriving blob's bytes while they could still be a directory manifest, so its
    paths are checked (``check``) before the blob is stored: a record may name a manifest
    before its bytes arrive, and the bytes must not slip in unchecked afterwards."""

    def __init__(self) -> None:
        self._kept = bytearray()
        self._possible = True
        self._started = False

    def feed(self, chunk: bytes | bytearray) -> None:
        if not self._possible:
            return
        if not self._started and (head := bytes(chunk).lstrip()):
            self._started = True
            if not head.startswith(b"{"):
                self._possible = False
                return
        self._kept += chunk
        if len(self._kept) > MAX_MANIFEST_BYTES:
            self._possible, self._kept = False, bytearray()

    def check(self, digest: str) -> None:
        """Refuse the blob if it reads as a directory manifest with an escaping path."""
        if self._possible and looks_like_manifest(bytes(self._kept)):
            check_manifest_bytes(bytes(self._kept), digest)


def check_logged_manifests(
    blobs: Any, artifact_digest: str, listed: Mapping[str, tuple[int, str]]
) -> None:
    """Validate the manifests an artifact brings that are stored already: those listed as
    manifests, and its own digest whatever kind the caller claims (a directory's digest is
    its manifest's). Bytes not stored yet are checked when they arrive and at registration."""
    for digest in {artifact_digest, *(d for d, (_, kind) in listed.items() if kind == "manifest")}:
        declared = listed.get(digest, (0, "file"))[1] == "manifest"
        if not blobs.exists(digest):
            continue
        if not (declared or could_be_json(blobs.read_prefix(digest, SNIFF_BYTES))):
            continue
        if blobs.size_of(digest) > MAX_MANIFEST_BYTES:
            if declared:
                raise InvalidInputError(f"manifest {digest} is too large to be a manifest.")
            continue
        data = blobs.read_bytes(digest)
        if declared or looks_like_manifest(data):
            check_manifest_bytes(data, digest)


def looks_like_manifest(data: bytes) -> bool:
    """True for bytes that a client would read as a directory manifest."""
    if not data.lstrip().startswith(b"{") or MANIFEST_KIND.encode() not in data:
        return False
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("kind") == MANIFEST_KIND


def check_relative_path(relative: Any) -> str:
    """A forward-slash relative path that stays inside its directory on every OS."""
    if not isinstance(relative, str) or not relative or len(relative) > 4096:
        raise _bad_path(relative, "it must be a non-empty path of at most 4096 characters")
    if "\x00" in relative or "\\" in relative:
        raise _bad_path(relative, "NUL bytes and backslashes are not allowed")
    if relative.startswith("/") or _DRIVE.match(relative):
        raise _bad_path(relative, "absolute paths are not allowed")
    decoded = unquote(unquote(relative))
    if "\x00" in decoded or "\\" in decoded or decoded.startswith("/"):
        raise _bad_path(relative, "encoded NUL bytes, backslashes and slashes are not allowed")
    for candidate in (relative, decoded):
        if any(part in ("", ".", "..") for part in candidate.split("/")):
            raise _bad_path(relative, "'.', '..' and empty path segments are not allowed")
    return relative


def _bad_path(relative: Any, why: str) -> InvalidInputError:
    return InvalidInputError(f"file path {relative!r} in a directory manifest is refused: {why}.")


def check_blob_kinds(blobs: Mapping[str, Any]) -> None:
    for digest, entry in blobs.items():
        kind = entry[1] if isinstance(entry, list | tuple) and len(entry) == 2 else None
        if kind not in ("file", "manifest"):
            raise InvalidInputError(f"blob {digest} must be listed as [size, 'file'|'manifest'].")
