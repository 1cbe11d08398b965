"""What every blob store is and the one read path they share: local directory, object store
or a clew server reached over HTTP.

``BlobStore`` is the type a caller holds. ``VerifiedReads`` holds the reads written once for
all three: each backend only yields a blob's bytes (unverified) and this module hashes them,
so no backend can hand out bytes that do not match their digest, and a downloaded file or
directory appears at its destination only once every byte of it has been checked.

It lives in the domain, beside ``digests``, because the remote client implements it and must
not import the store; so it touches files (exports write a temp sibling and rename it,
directory puts walk a tree, ``fsync_directory`` makes a rename durable for the blob store and
the client's capture spool), as ``digests.digest_file`` reads one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from clew.domain import digests
from clew.errors import IntegrityError, InvalidInputError, NotFoundError

# Exports write this much per system call: one 8 MiB write cost the kernel two to five times
# the system time of the same bytes in 256 KiB writes (perf: ``copy_folio_from_iter_atomic``).
WRITE_SLICE = 256 * 1024
Progress = Callable[[int], None]


@dataclass(frozen=True)
class StoredBlob:
    digest: str
    size: int


@dataclass(frozen=True)
class StoredDirectory:
    digest: str
    size: int
    files: dict[str, str]


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed bytes: put returns the digest, and every read is checked against it."""

    def exists(self, digest: str) -> bool: ...

    def size_of(self, digest: str) -> int: ...

    def put_bytes(self, data: bytes) -> StoredBlob: ...

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob: ...

    def put_directory(self, source: Path, progress: Progress | None = None) -> StoredDirectory: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def read_manifest(self, digest: str) -> dict[str, str]: ...

    def export_file(self, digest: str, destination: Path) -> Path: ...

    def export_directory(self, digest: str, destination: Path) -> Path: ...

    def verify(self, digest: str) -> bool: ...


class VerifiedReads(ABC):
    """``read_bytes``, ``read_manifest``, ``verify``, ``export_file``, ``export_directory`` and
    ``put_directory`` over two primitives a backend supplies: ``_whole`` (a small blob in one
    read) and ``_chunks`` (a blob in order, piece by piece). Neither primitive checks anything;
    every byte either returns is hashed here before a caller sees it."""

    # What ``verify`` reports as False rather than raising: a blob the store does not have.
    _UNVERIFIABLE: tuple[type[Exception], ...] = (NotFoundError,)

    @abstractmethod
    def _whole(self, digest: str) -> bytes:
        """Every byte of the blob, unverified; ``NotFoundError`` when it is missing."""

    @abstractmethod
    def _chunks(self, digest: str) -> Iterator[digests.Chunk]:
        """The blob's bytes in order, unverified; ``NotFoundError`` when it is missing. A chunk
        may be a view of a buffer reused once the next one is asked for."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> StoredBlob: ...

    @abstractmethod
    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob: ...

    def _corrupt(self, digest: str) -> IntegrityError:
        """The error for bytes that do not hash to their digest (a backend may say where)."""
        return IntegrityError(
            f"blob {digest} does not match its digest: the stored bytes were altered or damaged; "
            "restore it from a backup or re-log the artifact."
        )

    def _written(self, digest: str, descriptor: int) -> Iterator[digests.Chunk]:
        """``_chunks``, each also written at its offset in ``descriptor`` (an export's temp
        file). A backend that receives pieces on several threads may write them there itself."""
        offset = 0
        for chunk in self._chunks(digest):
            write_at(descriptor, offset, chunk)
            offset += len(chunk)
            yield chunk

    def read_bytes(self, digest: str) -> bytes:
        data = self._whole(digest)
        if digests.digest_bytes(data) != digest:
            raise self._corrupt(digest)
        return data

    def read_manifest(self, digest: str) -> dict[str, str]:
        return parse_manifest(self.read_bytes(digest), digest)

    def verify(self, digest: str) -> bool:
        """True when the stored bytes still hash to ``digest``; False when they do not or the
        blob is missing."""
        try:
            return digests.digest_chunks(self._chunks(digest)) == digest
        except self._UNVERIFIABLE:
            return False

    def export_file(self, digest: str, destination: Path) -> Path:
        """Copy a blob out to ``destination`` through a temp sibling that is renamed into place
        only once every byte matched, so a bad blob leaves nothing there."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        temp = destination.with_name(f".{destination.name}.clew-tmp")
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                actual = digests.digest_chunks(self._written(digest, descriptor))
            finally:
                os.close(descriptor)
            if actual != digest:
                raise self._corrupt(digest)
            temp.replace(destination)
        finally:
            temp.unlink(missing_ok=True)
        return destination

    def export_directory(self, digest: str, destination: Path) -> Path:
        """Export every file of a manifest; on any bad digest nothing is left at ``destination``.

        Files are first written under a temporary sibling directory and moved into place only
        once all of them have been verified.
        """
        destination = Path(destination)
        manifest = self.read_manifest(digest)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
        try:
            for relative, file_digest in manifest.items():
                self.export_file(file_digest, staging / _safe_relative(relative))
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

    def put_directory(self, source: Path, progress: Progress | None = None) -> StoredDirectory:
        """Store every file of ``source``, then the Merkle manifest whose digest names it."""
        files: dict[str, str] = {}
        total = 0
        for relative, path in walk_files(Path(source)):
            blob = self.put_file(path, progress)
            files[relative] = blob.digest
            total += blob.size
        stored = self.put_bytes(digests.manifest_bytes(files))
        return StoredDirectory(stored.digest, total, files)


def parse_manifest(data: bytes, digest: str) -> dict[str, str]:
    """The file-path -> digest mapping of a directory manifest's (already verified) bytes."""
    manifest = json.loads(data)
    if manifest.get("kind") != digests.MANIFEST_KIND:
        raise InvalidInputError(f"blob {digest} is not a directory manifest.")
    return dict(manifest["files"])


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


def write_at(descriptor: int, offset: int, data: digests.Chunk) -> None:
    """Write ``data`` at ``offset`` in ``WRITE_SLICE`` pieces (see there)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view[:WRITE_SLICE], offset)
        view, offset = view[written:], offset + written


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive power loss (fsync its entry list)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _safe_relative(relative: str) -> str:
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or "\x00" in relative:
        raise IntegrityError(f"manifest entry {relative!r} points outside its directory.")
    return relative
