"""Content digests: ``sha256:<hex>`` strings, canonical JSON and Merkle manifests.

Digests are what make clew's records tamper-evident, so every place that hashes something
goes through this module and the encoding never varies.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "sha256:"
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


def digest_bytes(data: bytes) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


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


def manifest_digest(entries: dict[str, str]) -> str:
    """The digest of a directory: the digest of its Merkle manifest (relative path → digest)."""
    return digest_json({"kind": "clew.manifest/v1", "files": dict(sorted(entries.items()))})


def is_digest(text: str) -> bool:
    """``sha256:`` and 64 lowercase hex digits (one compiled match: it guards every blob path
    and runs for every file checked before a registration)."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def hex_part(digest: str) -> str:
    return digest[len(PREFIX) :]


def short(digest: str, length: int = 12) -> str:
    """A short display form, ``sha256:ab12cd34ef56``."""
    return digest[: len(PREFIX) + length]
