"""Content digests: ``sha256:<hex>`` strings, canonical JSON and Merkle manifests.

Digests are what make clew's records tamper-evident, so every place that hashes content goes
through this module and the encoding never varies: bytes, a stream of chunks, a file, or an
incremental ``Hasher`` fed as bytes arrive. (HMACs, CSRF tokens and request fingerprints are
keyed or truncated checks, not content digests, and hash for themselves.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

PREFIX = "sha256:"
MANIFEST_KIND = "clew.manifest/v1"
# Files are read (and hashed, and copied) this much at a time.
CHUNK = 4 * 1024 * 1024
HEX_LENGTH = 64
_DIGEST = re.compile(f"{PREFIX}[0-9a-f]{{{HEX_LENGTH}}}")


def canonical_json(value: Any) -> bytes:
    """A byte-stable JSON encoding (sorted keys, no spaces) used for every hashed record."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


Chunk = bytes | bytearray | memoryview


class Hasher:
    """A content digest computed as the bytes arrive (an upload, a download, a copy), so
    the bytes are read once and hashed on the way."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()

    def update(self, chunk: Chunk) -> None:
        self._sha256.update(chunk)

    def digest(self) -> str:
        """``sha256:<hex>`` of every byte fed so far."""
        return PREFIX + self._sha256.hexdigest()


def digest_bytes(data: Chunk) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def digest_chunks(chunks: Iterable[Chunk]) -> str:
    """The digest of ``chunks`` laid end to end."""
    hasher = Hasher()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.digest()


def file_chunks(path: Path, limit: int | None = None) -> Iterator[bytes]:
    """A file's bytes in ``CHUNK`` pieces; at most ``limit`` bytes when given (the size
    seen when hashing began: a file that keeps growing is not read forever)."""
    remaining = sys.maxsize if limit is None else limit
    with open(path, "rb") as reader:
        while remaining and (chunk := reader.read(min(CHUNK, remaining))):
            remaining -= len(chunk)
            yield chunk


def digest_file(path: Path) -> str:
    """The digest of a file's bytes, read ``CHUNK`` at a time."""
    return digest_chunks(file_chunks(path))


def digest_json(value: Any) -> str:
    """The digest of a JSON-able value's canonical encoding."""
    return digest_bytes(canonical_json(value))


def code_digest(facts: Mapping[str, Any], *, with_script: bool = True) -> str:
    """A code record's identity: commit, uncommitted diff, remote and the script that ran.

    The script belongs to it so that two scripts run from one commit are two code records,
    each naming (and linking to) its own script. Records made before the script was part of
    the identity re-derive with ``with_script=False``.
    """
    identity = {key: facts.get(key) for key in ("commit", "diff_digest", "remote")}
    if with_script and facts.get("script"):
        identity["script"] = facts["script"]
    return digest_json(identity)


def manifest_bytes(entries: Mapping[str, str]) -> bytes:
    """A directory's Merkle manifest (relative path → digest) as stored: its canonical JSON."""
    return canonical_json({"kind": MANIFEST_KIND, "files": dict(sorted(entries.items()))})


def manifest_digest(entries: Mapping[str, str]) -> str:
    """The digest of a directory: the digest of its Merkle manifest (relative path → digest)."""
    return digest_bytes(manifest_bytes(entries))


def is_digest(text: str) -> bool:
    """``sha256:`` and 64 lowercase hex digits (one compiled match: it guards every blob path
    and runs for every file checked before a registration)."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def hex_part(digest: str) -> str:
    return digest[len(PREFIX) :]


def short(digest: str, length: int = 12) -> str:
    """A short display form, ``sha256:ab12cd34ef56``."""
    return digest[: len(PREFIX) + length]
