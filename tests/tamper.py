"""Altering a store behind clew's back, on whichever backend the test runs against.

Tamper tests must run on the embedded store (SQLite + blob directory) and on PostgreSQL + S3,
so they go through the store's own engine and filesystem objects, never ``sqlite3`` or a path.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from clew.store.blobs import LocalBlobStore
from clew.store.location import Store
from clew.store.object_store import ObjectBlobStore


def corrupt_blob(blobs: LocalBlobStore | ObjectBlobStore, digest: str) -> None:
    """Flip a stored blob's first byte (a local file or an object in the bucket)."""
    if isinstance(blobs, ObjectBlobStore):
        key = blobs.key_for(digest)
        data = bytearray(blobs.fs.cat_file(key))
        data[0] ^= 0xFF
        blobs.fs.pipe_file(key, bytes(data))
        return
    path = blobs.path_for(digest)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def execute_sql(store: Store, sql: str, **params: Any) -> None:
    """Run raw SQL on the metadata database (SQLite or PostgreSQL), outside every service."""
    with store.db.engine.begin() as connection:
        connection.execute(text(sql), params)
