"""Content-addressed blob storage on a local directory.

Every blob lives at ``<root>/sha256/<2 hex>/<2 hex>/<64 hex>`` and is written to a temporary
name, flushed to disk and renamed, so a reader never sees half a blob and a crash leaves at
most an orphaned temp file. Identical content is stored once. Reads re-hash and refuse bytes
that do not match their digest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clew.domain import digests
from clew.errors import (
    FileChangedError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StorageFullError,
)
from clew.store.faults import file_faults, os_fault

CHUNK = 4 * 1024 * 1024
MANIFEST_KIND = "clew.manifest/v1"
SNIFF_BYTES = 64
Progress = Callable[[int], None]
Fingerprint = tuple[object, ...]
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class StoredBlob:
    digest: str
    size: int


@dataclass(frozen=True)
class StoredDirectory:
    digest: str
    size: int
    files: dict[str, str]


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


class LocalBlobStore:
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
        hasher = hashlib.sha256()
        head = b""
        with self._staging() as (handle, temp_path):
            try:
                with open(source, "rb") as reader:
                    # Read no more than the size seen at the start: a file that keeps growing
                    # would otherwise be read forever; the fingerprint check below refuses it.
                    remaining = before.st_size
                    buffer = bytearray(CHUNK)
                    view = memoryview(buffer)
                    while remaining and (count := reader.readinto(view[: min(CHUNK, remaining)])):
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
            digest = digests.PREFIX + hasher.hexdigest()
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

    def put_directory(self, source: Path, progress: Progress | None = None) -> StoredDirectory:
        """Store every file, then the Merkle manifest whose digest names the directory."""
        return put_directory(self, source, progress)

    def read_bytes(self, digest: str) -> bytes:
        data = self._open_existing(digest).read_bytes()
        if digests.digest_bytes(data) != digest:
            raise corrupt(digest)
        return data

    def read_manifest(self, digest: str) -> dict[str, str]:
        return parse_manifest(self.read_bytes(digest), digest)

    def export_file(self, digest: str, destination: Path) -> Path:
        """Copy a blob out to ``destination`` after checking every byte against its digest."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        source = self._open_existing(digest)
        temp = destination.with_name(f".{destination.name}.clew-tmp")
        try:
            with open(source, "rb") as reader, open(temp, "wb") as writer:
                while chunk := reader.read(CHUNK):
                    hasher.update(chunk)
                    writer.write(chunk)
            if digests.PREFIX + hasher.hexdigest() != digest:
                raise corrupt(digest)
            temp.replace(destination)
        finally:
            temp.unlink(missing_ok=True)
        return destination

    def export_directory(self, digest: str, destination: Path) -> Path:
        """Export every file of a manifest; on any bad digest nothing is left at ``destination``."""
        return export_directory(self, digest, destination)

    def verify(self, digest: str) -> bool:
        """True when the stored bytes still hash to ``digest``."""
        path = self.path_for(digest)
        if not path.exists():
            return False
        hasher = hashlib.sha256()
        with open(path, "rb") as reader:
            while chunk := reader.read(CHUNK):
                hasher.update(chunk)
        return digests.PREFIX + hasher.hexdigest() == digest

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

    def _staging(self):  # type: ignore[no-untyped-def]
        return _Staging(self.staging)

    def _commit(self, handle, temp_path: Path, digest: str) -> None:  # type: ignore[no-untyped-def]
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

    def __enter__(self):  # type: ignore[no-untyped-def]
        with file_faults(self.directory, "write a new blob in"):
            descriptor, name = tempfile.mkstemp(dir=self.directory, prefix="incoming-")
        self.path = Path(name)
        self.handle = os.fdopen(descriptor, "wb")
        return self.handle, self.path

    def __exit__(self, exc_type, exc, _tb) -> None:  # type: ignore[no-untyped-def]
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


class BlobWriter(Protocol):
    """What ``put_directory`` needs from a blob store (local, object store or remote)."""

    def put_bytes(self, data: bytes) -> StoredBlob: ...

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob: ...


class BlobExporter(Protocol):
    """What ``export_directory`` needs from a blob store."""

    def read_manifest(self, digest: str) -> dict[str, str]: ...

    def export_file(self, digest: str, destination: Path) -> Path: ...


def put_directory(
    blobs: BlobWriter, source: Path, progress: Progress | None = None
) -> StoredDirectory:
    """Store every file of ``source``, then the Merkle manifest whose digest names it."""
    files: dict[str, str] = {}
    total = 0
    for relative, path in walk_files(Path(source)):
        blob = blobs.put_file(path, progress)
        files[relative] = blob.digest
        total += blob.size
    manifest = {"kind": MANIFEST_KIND, "files": dict(sorted(files.items()))}
    stored = blobs.put_bytes(digests.canonical_json(manifest))
    return StoredDirectory(stored.digest, total, files)


def parse_manifest(data: bytes, digest: str) -> dict[str, str]:
    """The file-path -> digest mapping of a directory manifest's (already verified) bytes."""
    manifest = json.loads(data)
    if manifest.get("kind") != MANIFEST_KIND:
        raise InvalidInputError(f"blob {digest} is not a directory manifest.")
    return dict(manifest["files"])


def export_directory(blobs: BlobExporter, digest: str, destination: Path) -> Path:
    """Export every file of a manifest; on any bad digest nothing is left at ``destination``.

    Files are first written under a temporary sibling directory and moved into place only
    once all of them have been verified.
    """
    destination = Path(destination)
    manifest = blobs.read_manifest(digest)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        for relative, file_digest in manifest.items():
            blobs.export_file(file_digest, staging / _safe_relative(relative))
        if not destination.exists():
            staging.rename(destination)
            return destination
        for relative in manifest:
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def walk_files(source: Path) -> Iterator[tuple[str, Path]]:
    """Every file under ``source`` (sorted) with its POSIX relative path; refuses symlinks
    that leave ``source``, so a directory artifact never captures bytes from elsewhere."""
    if not source.is_dir():
        raise NotFoundError(f"directory {source} does not exist.")
    root = source.resolve()
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise InvalidInputError(
                    f"{path} is a symlink pointing outside {source}; copy the file in instead."
                )
            yield path.relative_to(source).as_posix(), path


def _safe_relative(relative: str) -> str:
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or "\x00" in relative:
        raise IntegrityError(f"manifest entry {relative!r} points outside its directory.")
    return relative


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


def corrupt(digest: str) -> IntegrityError:
    return IntegrityError(
        f"blob {digest} does not match its digest: the stored bytes were altered or damaged; "
        "restore it from a backup or re-log the artifact."
    )


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive power loss (fsync its entry list)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
