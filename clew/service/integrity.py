"""Re-hashing stored blobs, so damage or tampering is found before anyone relies on them.

Reads verify each blob they touch; ``verify_blobs`` checks all of them at once (``clew
verify``): every blob the metadata records and every blob file on disk, so both a missing file
and an altered one are named by digest. ``require_verified_bytes`` checks one artifact's bytes
before a version of it is registered, approved or promoted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from clew.domain.records import ArtifactRecord
from clew.errors import IntegrityError, InvalidInputError, NotFoundError, UnverifiedBytesError
from clew.service.uploads import (
    MAX_MANIFEST_BYTES,
    SNIFF_BYTES,
    check_manifest_bytes,
    could_be_manifest,
    looks_like_manifest,
)
from clew.store import schema
from clew.store.blobs import Fingerprint
from clew.store.location import BlobStore, Store

MISSING, CORRUPT = "missing", "corrupt"


@dataclass(frozen=True)
class BlobProblem:
    digest: str
    problem: str  # MISSING: recorded but not on disk; CORRUPT: bytes no longer match digest

    def describe(self) -> str:
        if self.problem == MISSING:
            return f"{self.digest} is recorded but missing from the blob store"
        return f"{self.digest} does not match its digest (altered or damaged)"


def inventory(store: Store) -> dict[str, int]:
    """Every blob to check, recorded or on disk, with its expected size in bytes."""
    with store.db.read() as connection:
        query = select(schema.blobs.c.digest, schema.blobs.c.size)
        recorded = {digest: size for digest, size in connection.execute(query)}
    for digest in store.blobs.iter_digests():
        if digest not in recorded:
            recorded[digest] = store.blobs.size_of(digest)
    return dict(sorted(recorded.items()))


def verify_blobs(
    store: Store,
    progress: Callable[[int], None] | None = None,
    blobs: dict[str, int] | None = None,
) -> list[BlobProblem]:
    """Re-hash each blob (``blobs`` from ``inventory``, by default all); report bytes checked."""
    problems = []
    for digest, size in (inventory(store) if blobs is None else blobs).items():
        if not store.blobs.exists(digest):
            problems.append(BlobProblem(digest, MISSING))
        elif not store.blobs.verify(digest):
            problems.append(BlobProblem(digest, CORRUPT))
        if progress:
            progress(size)
    return problems


# --- the bytes of a version: checked before it is registered, approved or promoted ----------

# (blob store root, digest) -> (fingerprint when re-hashed, its manifest's files or None).
# A hit needs the fingerprint the store reports now, so this memo never vouches for bytes
# that changed since; it only spares re-hashing unchanged bytes more than once per process.
_REHASHED: dict[tuple[str, str], tuple[Fingerprint, dict[str, str] | None]] = {}
_MEMO_LIMIT = 100_000


def require_verified_bytes(store: Store, artifact: ArtifactRecord, context: str) -> None:
    """Refuse unless the artifact's digest, and every file of its manifest when it is a
    directory, is in the blob store and hashes to its digest.

    ``context`` starts the refusal ("cannot approve churn/3"). Each blob is re-hashed once
    per process while the store reports the same fingerprint for it (a stat, or one HEAD on
    an object store); a manifest's paths are checked whenever it is re-hashed.
    """
    what = f"{artifact.type}:{artifact.name}"
    if artifact.properties.get("reference"):
        raise UnverifiedBytesError(
            f"{context}: {what} was recorded by reference only ({artifact.uri}), so the store "
            "has no bytes to check; log the model's files with run.log_model(...) instead."
        )
    directory = artifact.properties.get("kind") == "directory"
    files = _checked(
        store.blobs, artifact.digest, what, context, manifest=True, directory=directory
    )
    for path, digest in sorted((files or {}).items()):
        _checked(store.blobs, digest, f"file {path!r} of {what}", context)


def _checked(
    blobs: BlobStore,
    digest: str,
    what: str,
    context: str,
    *,
    manifest: bool = False,
    directory: bool = False,
) -> dict[str, str] | None:
    """Re-hash one blob unless unchanged since this process last did; its manifest files when
    ``manifest`` and the bytes are one (always read as one when ``directory``)."""
    fingerprint = blobs.fingerprint(digest)
    if fingerprint is None:
        raise _missing(digest, what, context)
    key = (str(blobs.root), digest)
    cached = _REHASHED.get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    try:
        files = _rehash(blobs, digest, fingerprint[0], manifest=manifest, directory=directory)
    except NotFoundError:
        raise _missing(digest, what, context) from None
    except IntegrityError:
        raise _corrupt(digest, what, context) from None
    except InvalidInputError as error:
        raise InvalidInputError(f"{context}: {error}") from None
    if len(_REHASHED) >= _MEMO_LIMIT:
        _REHASHED.clear()
    _REHASHED[key] = (fingerprint, files)
    return files


def _rehash(
    blobs: BlobStore, digest: str, size: object, *, manifest: bool, directory: bool
) -> dict[str, str] | None:
    """The manifest's files (paths checked) when the re-hashed blob is one, else None."""
    if manifest and (directory or _small_json(blobs, digest, size)):
        data = blobs.read_bytes(digest)  # re-hashes
        if directory or looks_like_manifest(data):
            return check_manifest_bytes(data, digest)
        return None
    if not blobs.verify(digest):
        raise IntegrityError(f"blob {digest} does not match its digest.")
    return None


def _small_json(blobs: BlobStore, digest: str, size: object) -> bool:
    """Whether a blob small enough to be a manifest starts like one."""
    if not isinstance(size, int) or size > MAX_MANIFEST_BYTES:
        return False
    return could_be_manifest(blobs.read_prefix(digest, SNIFF_BYTES))


def _missing(digest: str, what: str, context: str) -> UnverifiedBytesError:
    return UnverifiedBytesError(
        f"{context}: {what} ({digest}) is missing from the store; log the model again or "
        "restore the blob from a backup, then retry."
    )


def _corrupt(digest: str, what: str, context: str) -> UnverifiedBytesError:
    return UnverifiedBytesError(
        f"{context}: {what} ({digest}) does not match its digest (the stored bytes were "
        "altered or damaged); restore it from a backup, then retry."
    )
