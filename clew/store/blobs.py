"""Content-addressed blob storage on a local directory.

Every blob lives at ``<root>/sha256/<2 hex>/<2 hex>/<64 hex>`` and is written to a temporary
name, flushed to disk and renamed, so a reader never sees half a blob and a crash leaves at
most an orphaned temp file. Identical content is stored once. Reads re-hash and refuse bytes
that do not match their digest (``clew.domain.blobs.VerifiedReads``, shared by every backend).

``BlobBackend`` is what a store's own blob backend (this one or ``ObjectBlobStore``) offers
beyond ``BlobStore``: what integrity checks, ``clew gc`` and the server's blob routes need.
The server asks it for capabilities (a local path to send, a presigned URL to redirect to, a
streamed upload) rather than for its class.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from clew.domain import digests
from clew.domain.blobs import BlobStore, Progress, StoredBlob, VerifiedReads, fsync_directory
from clew.errors import FileChangedError, InvalidInputError, NotFoundError, StorageFullError
from clew.store.faults import file_faults, os_fault

SNIFF_BYTES = 64
Fingerprint = tuple[object, ...]
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class Rehashed:
    """Blobs this process hashed (re-hashed, or hashed while writing them), each with the
    fingerprint the store reported then and what was learnt about it (a directory manifest's
    files, or None). An entry counts only while the store reports the same fingerprint, so it
    never vouches for bytes that changed since; it spares hashing unchanged bytes again."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Fingerprint, dict[str, str] | None]] = {}

    def find(self, digest: str, fingerprint: Fingerprint) -> tuple[dict[str, str] | None] | None:
        """``(files,)`` when ``digest`` was hashed at this fingerprint, else None."""
        entry = self._seen.get(digest)
        return (entry[1],) if entry is not None and entry[0] == fingerprint else None

    def remember(self, digest: str, fingerprint: Fingerprint, files: dict[str, str] | None) -> None:
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen[digest] = (fingerprint, files)


def could_be_json(head: bytes | bytearray) -> bool:
    """False when a blob's first bytes already rule out JSON (and so a directory manifest)."""
    stripped = bytes(head).lstrip()
    return not stripped or stripped.startswith(b"{")


class PartUpload(Protocol):
    """Bytes sent to one blob's key part by part while they arrive, visible only once
    ``finish`` completes them (``ObjectBlobStore.streamed_upload``)."""

    def add_part(self, part: bytes | bytearray) -> None: ...

    def finish(self, last: bytes | bytearray) -> None: ...

    def abort(self) -> None: ...


class BlobBackend(BlobStore, Protocol):
    """A blob store a store opens itself (a local directory or an object store): ``BlobStore``
    plus what integrity checks, ``clew gc`` and the server's blob routes ask of it."""

    rehashed: Rehashed

    @property
    def location(self) -> str: ...

    def location_names(self) -> set[str]:
        """Every form of the store's location that an error text may carry (the server
        redacts them from what it tells callers)."""
        ...

    def fingerprint(self, digest: str) -> Fingerprint | None: ...

    def read_prefix(self, digest: str, size: int) -> bytes: ...

    def read_range(self, digest: str, start: int, end: int) -> Iterator[bytes]: ...

    def is_empty(self) -> bool: ...

    def iter_digests(self) -> Iterator[str]: ...

    def modified_ms(self, digest: str) -> int: ...

    def delete(self, digest: str) -> None: ...

    def adopt_verified_file(self, source: Path, digest: str) -> StoredBlob: ...

    def local_path(self, digest: str) -> Path | None:
        """The file holding the blob's bytes, when they are on this machine's disk."""
        ...

    def presigned_url(self, digest: str, seconds: int, disposition: str) -> str | None:
        """A URL that serves the blob without this process for ``seconds``, its download
        answered with ``Content-Disposition: disposition``; None if the store has none."""
        ...

    def streamed_upload(self, digest: str) -> PartUpload | None:
        """An upload at ``digest`` that takes the bytes as they arrive; None when the store
        wants them in a temp file first (``adopt_verified_file``)."""
        ...

    def scratch_directories(self) -> list[Path]:
        """Where a write killed half-way can leave a temp file (``clew gc`` sweeps them)."""
        ...


class LocalBlobStore(VerifiedReads):
    """Blobs under one directory that the store's owner chose; clients never pick paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.staging = self.root / "tmp"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.rehashed = Rehashed()
        self._root_text = str(self.root)

    def path_for(self, digest: str) -> Path:
        if not digests.is_digest(digest):
            raise InvalidInputError(f"{digest!r} is not a sha256 digest; expected sha256:<64 hex>.")
        hex_part = digests.hex_part(digest)
        return self.root / "sha256" / hex_part[:2] / hex_part[2:4] / hex_part

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = digests.digest_bytes(data)
        if self.exists(digest):
            self._touch(digest)
        else:
            with self._staging() as (handle, temp_path):
                handle.write(data)
                self._commit(handle, temp_path, digest)
            self._remember_written(digest, data[:SNIFF_BYTES])
        return StoredBlob(digest, len(data))

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob:
        """Copy a file in while hashing it; refuse if it changes or vanishes meanwhile."""
        source = Path(source)
        before = _stat_or_fail(source)
        hasher = digests.Hasher()
        head = b""
        with self._staging() as (handle, temp_path):
            try:
                with open(source, "rb") as reader:
                    # Read no more than the size seen at the start: a file that keeps growing
                    # would otherwise be read forever; the fingerprint check below refuses it.
                    remaining = before.st_size
                    buffer = bytearray(digests.CHUNK)
                    view = memoryview(buffer)
                    while remaining and (
                        count := reader.readinto(view[: min(digests.CHUNK, remaining)])
                    ):
                        remaining -= count
                        head = head or bytes(view[: min(count, SNIFF_BYTES)])
                        hasher.update(view[:count])
                        handle.write(view[:count])
                        if progress:
                            progress(count)
            except FileNotFoundError as error:
                raise _vanished(source) from error
            after = _stat_or_fail(source)
            if _fingerprint(before) != _fingerprint(after):
                raise FileChangedError(
                    f"{source} changed while clew was hashing it; retry once it is no longer "
                    "being written."
                )
            digest = hasher.digest()
            if self.exists(digest):
                self._touch(digest)
            else:
                self._commit(handle, temp_path, digest)
                self._remember_written(digest, head)
        return StoredBlob(digest, before.st_size)

    def adopt_verified_file(self, source: Path, digest: str) -> StoredBlob:
        """Move in a private temp file whose bytes the caller has just hashed to ``digest``
        (the server's upload spool): a rename instead of a second hashing copy."""
        size = Path(source).stat().st_size
        if self.exists(digest):
            self._touch(digest)
            return StoredBlob(digest, size)
        with open(source, "rb+") as handle:
            os.fsync(handle.fileno())
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, final)
        except OSError:  # another filesystem: fall back to the hashing copy
            return self.put_file(source)
        fsync_directory(final.parent)
        return StoredBlob(digest, size)

    def _whole(self, digest: str) -> bytes:
        return self._open_existing(digest).read_bytes()

    def _chunks(self, digest: str) -> Iterator[bytes]:
        return digests.file_chunks(self._open_existing(digest))

    def read_range(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a blob, unverified."""
        with open(self._open_existing(digest), "rb") as reader:
            reader.seek(start)
            remaining = end - start
            while remaining > 0 and (chunk := reader.read(min(digests.CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk

    def local_path(self, digest: str) -> Path:
        return self.path_for(digest)

    def presigned_url(self, digest: str, seconds: int, disposition: str) -> None:
        """None: a local directory has no URL of its own."""
        return None

    def streamed_upload(self, digest: str) -> None:
        """None: uploads land in a temp file and are renamed in (``adopt_verified_file``)."""
        return None

    def scratch_directories(self) -> list[Path]:
        return [self.staging]

    def fingerprint(self, digest: str) -> Fingerprint | None:
        """What changes whenever the stored file does (None when it is missing): size first,
        then mtime, ctime, inode and device. ``os.utime`` can put mtime back but not ctime, so
        bytes rewritten in place or replaced by a rename always show a new fingerprint."""
        if not digests.is_digest(digest):
            raise InvalidInputError(f"{digest!r} is not a sha256 digest; expected sha256:<64 hex>.")
        hex_part = digests.hex_part(digest)
        try:  # a string path: this runs on every registration, and Path joins cost more
            stat = os.stat(f"{self._root_text}/sha256/{hex_part[:2]}/{hex_part[2:4]}/{hex_part}")
        except FileNotFoundError:
            return None
        return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)

    def read_prefix(self, digest: str, size: int) -> bytes:
        """The first ``size`` bytes, unverified: enough to tell a manifest from other data."""
        with open(self._open_existing(digest), "rb") as reader:
            return reader.read(size)

    @property
    def location(self) -> str:
        """Where the blobs are, as shown to users."""
        return str(self.root)

    def location_names(self) -> set[str]:
        return {str(self.root)}

    def is_empty(self) -> bool:
        """Whether no blob is stored (a new store's database may only be created over none)."""
        return next((self.root / "sha256").glob("*/*/*"), None) is None

    def iter_digests(self) -> Iterator[str]:
        base = self.root / "sha256"
        if not base.exists():
            return
        for path in sorted(base.glob("*/*/*")):
            yield digests.PREFIX + path.name

    def size_of(self, digest: str) -> int:
        return self._open_existing(digest).stat().st_size

    def modified_ms(self, digest: str) -> int:
        """When the blob was last stored (or stored again): ``clew gc`` spares young blobs."""
        return self._open_existing(digest).stat().st_mtime_ns // 1_000_000

    def delete(self, digest: str) -> None:
        """Remove one blob; only ``clew gc`` calls this, for blobs no record points at."""
        self.path_for(digest).unlink(missing_ok=True)

    def _remember_written(self, digest: str, head: bytes) -> None:
        """Bytes this process hashed while writing them count as re-hashed, unless they could
        be a directory manifest (whose paths the service checks when it reads them)."""
        if not could_be_json(head):
            fingerprint = self.fingerprint(digest)
            if fingerprint is not None:
                self.rehashed.remember(digest, fingerprint, None)

    def _touch(self, digest: str) -> None:
        """Storing content that is already here renews its age, so a concurrent ``clew gc``
        does not delete it before the metadata that will point at it commits."""
        os.utime(self.path_for(digest))

    def _open_existing(self, digest: str) -> Path:
        path = self.path_for(digest)
        if not path.exists():
            raise NotFoundError(f"blob {digest} is missing from the store at {self.root}.")
        return path

    def _staging(self) -> _Staging:
        return _Staging(self.staging)

    def _commit(self, handle: IO[bytes], temp_path: Path, digest: str) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, final)
        fsync_directory(final.parent)


class _Staging:
    """A temp file in the store that is removed unless it was renamed into place."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __enter__(self) -> tuple[IO[bytes], Path]:
        with file_faults(self.directory, "write a new blob in"):
            descriptor, name = tempfile.mkstemp(dir=self.directory, prefix="incoming-")
        self.path = Path(name)
        self.handle = os.fdopen(descriptor, "wb")
        return self.handle, self.path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        try:
            self.handle.close()
        except OSError as error:
            exc = exc or error
        self.path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise StorageFullError(
                f"no space left while writing to {self.directory.parent}; nothing was recorded; "
                "free some space and retry."
            ) from exc
        if isinstance(exc, OSError) and self._in_store(exc):
            raise os_fault(self.directory.parent, exc, "write to the blob store") from exc

    def _in_store(self, error: OSError) -> bool:
        """A fault of the store's own files (not of the file being logged, which the caller
        names itself) and not a vanished file (``FileChangedError``'s to explain)."""
        if isinstance(error, FileNotFoundError):
            return False
        return error.filename is None or Path(error.filename).is_relative_to(self.directory.parent)


def _stat_or_fail(path: Path) -> os.stat_result:
    try:
        result = path.stat()
    except FileNotFoundError as error:
        raise _vanished(path) from error
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a regular file.")
    return result


def _fingerprint(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _vanished(path: Path) -> FileChangedError:
    return FileChangedError(f"{path} does not exist (or disappeared while clew was reading it).")
