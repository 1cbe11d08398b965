"""Re-hashing every stored blob, so damage or tampering is found before anyone loads it.

Reads verify each blob they touch; this checks all of them at once (``clew verify``): every
blob the metadata records and every blob file on disk, so both a missing file and an altered
one are named by digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from clew.store import schema
from clew.store.location import Store

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
