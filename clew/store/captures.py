"""Captured predictions as files: one Parquet file and one Merkle file per batch.

Files live under ``captures/model=<name>/version=<n>/date=<YYYY-MM-DD>/`` — in the store's
directory for the embedded default, or under the ``captures/`` prefix of the artifacts bucket
when blobs live in an object store — so DuckDB (or Spark) can prune by partition. Each batch is
``<batch id>.parquet`` (the rows) and ``<batch id>.merkle`` (every level of the batch's Merkle
tree, leaves first, 32 bytes per hash), which turns an inclusion proof into a handful of small
reads.

A batch becomes visible to readers in two steps: its files are written completely (a local
file is written under a temporary name, flushed and renamed; an object appears only when its
upload completes), then the caller records the batch in the database. Readers only open files
a database row names, so they never see half a batch. ``CaptureFiles`` is the one interface the
services use; ``open_files`` picks the implementation from where the store keeps its blobs.
"""

from __future__ import annotations

import base64
import contextlib
import os
import posixpath
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clew.domain import digests, merkle
from clew.errors import IntegrityError, NotFoundError
from clew.store.blobs import BlobBackend
from clew.store.faults import capture_file_faults
from clew.store.object_store import ObjectBlobStore

ROW_GROUP_ROWS = 65_536
ARROW_SCHEMA_KEY = b"ARROW:schema"
Seal = Callable[[], tuple[Sequence[bytes], dict[bytes, bytes]]]
CHUNK = 4 * 1024 * 1024
PREFIX = "captures"


def batch_relative_path(model: str, version: int, date: str, batch_id: str) -> str:
    return f"model={model}/version={version}/date={date}/{batch_id}.parquet"


def merkle_name(relative: str) -> str:
    """The Merkle file beside a batch's Parquet file."""
    return relative.removesuffix(".parquet") + ".merkle"


def check_relative(relative: str) -> str:
    """Refuse a recorded path that could name anything outside the captures root."""
    parts = relative.split("/")
    if (
        not relative
        or relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise IntegrityError(f"capture path {relative!r} points outside the captures root.")
    return relative


class CaptureFiles(ABC):
    """Where capture batches are written and read; subclasses say how bytes move."""

    location: str

    # --- what a subclass provides -----------------------------------------------------

    @abstractmethod
    def _write_file(self, relative: str, write: Callable[[Path], str | None]) -> str:
        """Make ``relative`` hold what ``write`` puts in a local file, all at once; its digest
        (the one ``write`` returns, when it hashed the bytes as it wrote them)."""

    @abstractmethod
    def _arrow_source(self, relative: str) -> tuple[str, Any]:
        """The path and filesystem pyarrow opens ``relative`` with."""

    @abstractmethod
    def _read_range(self, relative: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``relative`` from offset ``start``."""

    @abstractmethod
    def _read_all(self, relative: str) -> bytes:
        """The whole (small) file: Merkle files only."""

    @abstractmethod
    def exists(self, relative: str) -> bool:
        """Whether a file is stored at ``relative``."""

    @abstractmethod
    def file_digest(self, relative: str) -> str:
        """The sha256 digest of the stored bytes (``clew audit verify`` compares it)."""

    @abstractmethod
    def local_copy(self, relative: str) -> contextlib.AbstractContextManager[Path]:
        """A local path holding the file's bytes while the context lasts (for backups)."""

    @abstractmethod
    def put_file(self, relative: str, source: Path) -> None:
        """Store a local file at ``relative`` (restores); ``source`` may be moved away."""

    @abstractmethod
    def has_files(self) -> bool:
        """Whether any capture file is stored (restores refuse a non-empty target)."""

    @abstractmethod
    def list_files(self) -> list[StoredCaptureFile]:
        """Every file under the captures root, with its size and age (``clew gc`` compares
        them with the paths ``capture_batches`` names to find orphans)."""

    @abstractmethod
    def delete_file(self, relative: str) -> None:
        """Remove one file; only ``clew gc`` calls this, for files no batch row names."""

    # --- shared behaviour -------------------------------------------------------------

    def write_sealing(self, relative: str, table: pa.Table, seal: Seal) -> str:
        """Write the rows while ``seal`` builds the tree and the signed metadata, then the tree
        file and the Parquet footer carrying that metadata; returns the Parquet file's digest.

        Parquet encoding and compression release the GIL, so the rows are encoded on a second
        thread while ``seal`` hashes them on this one: on two cores the two overlap. The tree
        file is complete before the Parquet file, and neither is visible before it is whole.
        """
        check_relative(relative)

        def write(target: Path) -> str:
            with _rows_in_background(table, target) as finish:
                levels, metadata = seal()
                self._write_file(merkle_name(relative), lambda path: _write_levels(levels, path))
                return finish(metadata)

        return self._write_file(relative, write)

    def read_prediction_group(self, relative: str, prediction_id: str) -> pa.Table:
        """Every row of the row group(s) whose statistics may hold this id, read once: the
        prediction's row and the rows of its leaf (a leaf never spans row groups when written
        here, as 65,536 rows is a whole number of leaves) are both filtered from it."""
        path, filesystem = self._existing(relative)
        with self._reading(relative):
            parquet = pq.ParquetFile(path, filesystem=filesystem)
            column = parquet.schema_arrow.get_field_index("prediction_id")
            groups = []
            for index in range(parquet.metadata.num_row_groups):
                stats = parquet.metadata.row_group(index).column(column).statistics
                if (
                    stats is None
                    or not stats.has_min_max
                    or stats.min <= prediction_id <= stats.max
                ):
                    groups.append(index)
            return parquet.read_row_groups(groups)

    def read_leaf(self, relative: str, leaf: int) -> pa.Table:
        """Every row of Merkle leaf ``leaf``, in file order (statistics on ``leaf`` keep this to
        one row group)."""
        path, filesystem = self._existing(relative)
        with self._reading(relative):
            return pq.read_table(path, filesystem=filesystem, filters=[("leaf", "=", leaf)])

    def read_ids(self, relative: str) -> pa.Array:
        path, filesystem = self._existing(relative)
        with self._reading(relative):
            return pq.read_table(path, filesystem=filesystem, columns=["prediction_id"]).column(0)

    def open_parquet(self, relative: str) -> pq.ParquetFile:
        """A batch's Parquet file opened for reading chosen columns and row groups (monitoring
        reads windows this way, one row group at a time)."""
        path, filesystem = self._existing(relative)
        with self._reading(relative):
            return pq.ParquetFile(path, filesystem=filesystem)

    def read_batch(self, relative: str) -> pa.Table:
        path, filesystem = self._existing(relative)
        with self._reading(relative):
            return pq.read_table(path, filesystem=filesystem)

    def read_proof(self, relative: str, count: int, index: int) -> list[merkle.ProofStep]:
        """The inclusion proof of leaf ``index`` of ``count`` leaves: one small read per level."""
        name = merkle_name(check_relative(relative))
        if not self.exists(name):
            raise NotFoundError(f"the Merkle file of capture batch {relative} is missing.")
        sizes = merkle.level_sizes(count)
        starts = [sum(sizes[:level]) for level in range(len(sizes))]
        steps = []
        for level, first, length in merkle.proof_positions(count, index):
            data = self._read_range(
                name, (starts[level] + first) * merkle.HASH_SIZE, length * merkle.HASH_SIZE
            )
            group = tuple(
                data[k * merkle.HASH_SIZE : (k + 1) * merkle.HASH_SIZE] for k in range(length)
            )
            steps.append(merkle.ProofStep(index % merkle.ARITY, group))
            index //= merkle.ARITY
        return steps

    def read_levels(self, relative: str, count: int) -> list[bytes]:
        """Every level of a batch's tree of ``count`` leaves, leaves first."""
        data = self._read_all(merkle_name(check_relative(relative)))
        levels, offset = [], 0
        for size in merkle.level_sizes(count):
            levels.append(data[offset : offset + size * merkle.HASH_SIZE])
            offset += size * merkle.HASH_SIZE
        return levels

    def _reading(self, relative: str) -> contextlib.AbstractContextManager[None]:
        """Read faults of one capture file become one sentence naming it (store/faults.py)."""
        return capture_file_faults(f"{self.location.rstrip('/')}/{relative}")

    def _existing(self, relative: str) -> tuple[str, Any]:
        if not self.exists(check_relative(relative)):
            raise NotFoundError(f"capture batch file {relative} is missing from {self.location}.")
        return self._arrow_source(relative)


class LocalCaptureFiles(CaptureFiles):
    """Batches in a directory (the embedded default: ``<store>/captures``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def path(self, relative: str) -> Path:
        """The absolute path of a recorded file; refuses anything outside the root."""
        path = (self.root / check_relative(relative)).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise IntegrityError(f"capture path {relative!r} points outside {self.root}.")
        return path

    def _write_file(self, relative: str, write: Callable[[Path], str | None]) -> str:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        os.close(descriptor)
        temp = Path(name)
        try:
            digest = write(temp)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            digest = digest or local_digest(temp)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return digest

    def _arrow_source(self, relative: str) -> tuple[str, Any]:
        return str(self.path(relative)), None

    def _read_range(self, relative: str, start: int, length: int) -> bytes:
        with open(self.path(relative), "rb") as reader:
            reader.seek(start)
            return reader.read(length)

    def _read_all(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

    def exists(self, relative: str) -> bool:
        return self.path(relative).is_file()

    def file_digest(self, relative: str) -> str:
        return local_digest(self.path(relative))

    @contextlib.contextmanager
    def local_copy(self, relative: str) -> Iterator[Path]:
        yield self.path(relative)

    def put_file(self, relative: str, source: Path) -> None:
        destination = self.path(relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)

    def has_files(self) -> bool:
        return self.root.is_dir() and any(p.is_file() for p in self.root.rglob("*"))

    def list_files(self) -> list[StoredCaptureFile]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                status = path.stat()
                relative = path.relative_to(self.root).as_posix()
                found.append(
                    StoredCaptureFile(relative, status.st_size, status.st_mtime_ns // 1_000_000)
                )
        return found

    def delete_file(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)


class ObjectCaptureFiles(CaptureFiles):
    """Batches under the ``captures/`` prefix of the store's object-store bucket.

    An object has no rename, but it also has no partial state: it becomes visible only when
    its single PUT (or multipart upload) completes. The Parquet file is written to a local
    temporary file first (pyarrow needs seekable output to write its footer), hashed, then
    uploaded.
    """

    def __init__(self, blobs: ObjectBlobStore) -> None:
        self._blobs = blobs
        self.root = f"{blobs.root}/{PREFIX}"
        self.location = f"{blobs.url}/{PREFIX}"

    @property
    def fs(self) -> Any:
        return self._blobs.fs  # the blob store's, which a forked child opens again

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options the store was opened with (endpoint, region, profile; never a
        secret), so another process, a Dask worker, opens the same files."""
        return dict(self._blobs._options)

    def key(self, relative: str) -> str:
        return posixpath.join(self.root, check_relative(relative))

    def _write_file(self, relative: str, write: Callable[[Path], str | None]) -> str:
        with tempfile.TemporaryDirectory(prefix="clew-capture-") as scratch:
            temp = Path(scratch) / "batch"
            digest = write(temp) or local_digest(temp)
            self.fs.put_file(str(temp), self.key(relative))
        return digest

    def _arrow_source(self, relative: str) -> tuple[str, Any]:
        return self.key(relative), self.fs

    def _read_range(self, relative: str, start: int, length: int) -> bytes:
        data: bytes = self.fs.cat_file(self.key(relative), start=start, end=start + length)
        return data

    def _read_all(self, relative: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self.key(relative))
        except FileNotFoundError as error:
            raise NotFoundError(
                f"capture file {relative} is missing from {self.location}."
            ) from error
        return data

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.key(relative)))

    def file_digest(self, relative: str) -> str:
        with self.fs.open(self.key(relative), "rb", block_size=CHUNK, cache_type="none") as reader:
            return digests.digest_chunks(iter(lambda: reader.read(CHUNK), b""))

    @contextlib.contextmanager
    def local_copy(self, relative: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="clew-capture-") as scratch:
            temp = Path(scratch) / posixpath.basename(relative)
            self.fs.get_file(self.key(relative), str(temp))
            yield temp

    def put_file(self, relative: str, source: Path) -> None:
        self.fs.put_file(str(source), self.key(relative))

    def has_files(self) -> bool:
        return bool(self.fs.exists(self.root)) and bool(self.fs.find(self.root, maxdepth=None))

    def list_files(self) -> list[StoredCaptureFile]:
        """One listing call per page of keys (no request per file): sizes and modification
        times come with the listing."""
        if not self.fs.exists(self.root):
            return []
        listing = self.fs.find(self.root, detail=True)
        return [
            StoredCaptureFile(
                posixpath.relpath(key, self.root), int(info["size"]), _listed_modified_ms(info)
            )
            for key, info in sorted(listing.items())
            if info.get("type", "file") == "file"
        ]

    def delete_file(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.key(relative))


def open_files(blobs: BlobBackend, local_root: Path) -> CaptureFiles:
    """Capture files go where the blobs go: an object store's bucket, or ``local_root``."""
    if isinstance(blobs, ObjectBlobStore):
        return ObjectCaptureFiles(blobs)
    return LocalCaptureFiles(local_root)


@contextlib.contextmanager
def _rows_in_background(
    table: pa.Table, target: Path
) -> Iterator[Callable[[dict[bytes, bytes]], str]]:
    """Encode ``table`` into ``target`` on a second thread; the block ends by calling the
    yielded ``finish(metadata)``, which waits for the rows, puts ``metadata`` in the footer,
    closes the file and returns its digest, hashed as it was written (no second read).

    pyarrow serializes the Arrow schema (``ARROW:schema``, which readers take the schema
    metadata from) when the writer opens, before the metadata exists, so ``finish`` replaces
    that entry with the schema carrying the metadata; the footer is written on close.
    Statistics on ``prediction_id`` and ``leaf`` let a reader open one row group per lookup.
    """
    sink = _DigestingFile(target)
    writer = pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        compression_level=1,
        use_dictionary=["model_name", "model_digest"],
        write_statistics=["prediction_id", "leaf"],
    )
    failures: list[BaseException] = []

    def encode() -> None:
        try:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        except BaseException as error:  # re-raised on the caller's thread by finish
            failures.append(error)

    thread = threading.Thread(target=encode, name="clew-capture-parquet", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # Python 3.12+ starts no thread at interpreter exit (the atexit flush)
        encode()

    def finish(metadata: dict[bytes, bytes]) -> str:
        _join_if_started(thread)
        if failures:
            raise failures[0]
        schema = table.schema.with_metadata({**(table.schema.metadata or {}), **metadata})
        arrow_schema = base64.b64encode(schema.serialize().to_pybytes())
        writer.add_key_value_metadata({**metadata, ARROW_SCHEMA_KEY: arrow_schema})
        writer.close()
        sink.close()
        return sink.digest()

    try:
        yield finish
    finally:
        _join_if_started(thread)
        writer.close()
        sink.close()


class _DigestingFile:
    """A local file that hashes the bytes written to it, in order: the Parquet writer only
    appends, so the digest is the finished file's without reading it back."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 -- closed by close(), as pyarrow expects
        self._hasher = digests.Hasher()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: Any) -> int:
        self._hasher.update(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def digest(self) -> str:
        return self._hasher.digest()


def _join_if_started(thread: threading.Thread) -> None:
    if thread.ident is not None:
        thread.join()


def _write_levels(levels: Sequence[bytes], target: Path) -> None:
    target.write_bytes(b"".join(levels))


def local_digest(path: Path) -> str:
    return digests.digest_file(path)


@dataclass(frozen=True)
class StoredCaptureFile:
    """A file found under the captures root, recorded by a batch row or not."""

    relative: str
    size: int
    modified_ms: int


def _listed_modified_ms(info: dict[str, Any]) -> int:
    """The modification time in a listing entry: s3fs says ``LastModified`` (a datetime),
    local and in-memory fsspec filesystems say ``mtime`` (seconds or a datetime)."""
    stamp = info.get("LastModified", info.get("mtime"))
    if stamp is None:
        raise IntegrityError(f"the object store listing gives no modification time for {info}.")
    seconds = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
    return int(seconds * 1000)
