"""Content-addressed blob storage on an object store (S3 and S3-compatible, through fsspec).

The same contract as ``LocalBlobStore``: every blob lives at ``<root>/sha256/<2>/<2>/<64 hex>``,
identical content is stored once, and reads re-hash and refuse bytes that do not match their
digest. An object store has no rename, so atomicity comes from the store itself: an object
becomes visible only when its single PUT or its multipart upload completes, and an upload whose
bytes turn out not to match is aborted before completion, so a reader never sees partial or
wrong content under a digest's key.

Endpoint, region and profile may come from the URL's query string
(``s3://bucket/prefix?endpoint_url=http://127.0.0.1:8333&region=us-east-1``); credentials come
only from the standard AWS chain (environment, profile files, instance roles), never from the
URL, because URLs end up in logs, shell history and process lists.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clew.domain import digests, object_urls
from clew.domain.blobs import Progress, StoredBlob, VerifiedReads
from clew.errors import (
    FileChangedError,
    InvalidInputError,
    NotFoundError,
    StoreUnavailableError,
)
from clew.store.blobs import Fingerprint, Rehashed, _fingerprint, _stat_or_fail, _vanished

# S3 parts must be at least 5 MiB; 8 MiB keeps memory per upload bounded to about one part
# while large files still go up as a multipart upload.
PART_SIZE = 8 * 1024 * 1024
# Parts in flight per upload streamed from a client: bounds a server's memory per upload to
# about (STREAM_CONCURRENCY + 1) parts while keeping the object store busy.
STREAM_CONCURRENCY = 4
# Multipart uploads older than this are debris of a server that died mid-upload (``clew gc``).
STALE_UPLOAD_MS = 24 * 60 * 60 * 1000
_EMPTY = digests.digest_bytes(b"")


_inherited: list[tuple[Any, Any]] = []  # a forked child's copies of its parent's clients


class ObjectBlobStore(VerifiedReads):
    """Blobs under one bucket prefix that the store's owner chose; clients never pick keys."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self._options = dict(storage_options or {})
        # No listing cache and no shared instance: another process may add blobs at any time,
        # and credentials set in the environment after a first open must take effect.
        self._fs_options = {
            "use_listings_cache": False,
            "skip_instance_cache": True,
            **(storage_options or {}),
        }
        try:
            self._fs, root = fsspec.core.url_to_fs(self.url, **self._fs_options)
        except ImportError as error:
            raise InvalidInputError(
                f"{self.url} needs an fsspec driver that is not installed; for S3 install "
                "clew[s3] (pip install 'clew[s3]')."
            ) from error
        self.root = root.rstrip("/")
        if not self.root:
            raise InvalidInputError(f"{self.url} names no bucket; use s3://<bucket>/<prefix>.")
        self._pid = os.getpid()
        self.rehashed = Rehashed()

    @property
    def fs(self) -> Any:
        """The fsspec filesystem, opened again in a forked child: s3fs refuses to be used
        across a fork ("This class is not fork-safe"), and its connections are the parent's."""
        if self._pid != os.getpid():
            self._reopen()
        return self._fs

    def _reopen(self) -> None:
        """Open this process's own filesystem and client. The parent's are kept, never freed:
        freeing them here runs s3fs's finalizer, which shuts down sockets the parent still
        uses (its next upload then hangs)."""
        import fsspec

        _inherited.append((self._fs, self.__dict__.pop("_botocore_client", None)))
        self._fs, _ = fsspec.core.url_to_fs(self.url, **self._fs_options)
        self._pid = os.getpid()

    @classmethod
    def from_url(cls, url: str) -> ObjectBlobStore:
        """Open ``s3://bucket/prefix[?endpoint_url=...&region=...&profile=...]``."""
        return cls(*object_urls.base_and_options(url))

    def key_for(self, digest: str) -> str:
        """The object key of ``digest``: ``<root>/sha256/ab/cd/<hex>``, like the local layout."""
        if not digests.is_digest(digest):
            raise InvalidInputError(f"{digest!r} is not a sha256 digest; expected sha256:<64 hex>.")
        hex_part = digests.hex_part(digest)
        return f"{self.root}/sha256/{hex_part[:2]}/{hex_part[2:4]}/{hex_part}"

    def exists(self, digest: str) -> bool:
        key = self.key_for(digest)
        with self._reachable():
            return bool(self.fs.exists(key))

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = digests.digest_bytes(data)
        if not self.exists(digest):
            with self._reachable():
                self.fs.pipe_file(self.key_for(digest), data)
        return StoredBlob(digest, len(data))

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob:
        """Upload a file while hashing it; refuse if it changes or vanishes meanwhile.

        A small file is read once into memory. A large one is hashed first, so content the
        store already holds is never uploaded, then streamed up part by part while being
        hashed again; the upload completes only if both hashes and the file's size, mtime
        and inode still agree.
        """
        source = Path(source)
        before = _stat_or_fail(source)
        if before.st_size <= PART_SIZE:
            stored = self.put_bytes(b"".join(_chunks(source, before.st_size)))
            _refuse_if_changed(source, before, stored.size)
            if progress:
                progress(stored.size)
            return stored
        digest = digests.digest_chunks(_chunks(source, before.st_size))
        _refuse_if_changed(source, before)
        if self.exists(digest):
            if progress:
                progress(before.st_size)
        else:
            self._upload(source, digest, before, progress)
        return StoredBlob(digest, before.st_size)

    @property
    def parts_client(self) -> Any:
        """A synchronous botocore S3 client for ``StreamedUpload`` and ``read_range`` (S3 only);
        a forked child makes its own, as for ``fs``."""
        if self._pid != os.getpid():
            self._reopen()
        return self._botocore_client

    @functools.cached_property
    def _botocore_client(self) -> Any:
        """The client behind ``parts_client``.

        s3fs sends through aiobotocore, which copied each 8 MiB part into a BytesIO, ran CRC32
        over it and, on plain-HTTP endpoints, SHA-256 for the request signature: together a
        quarter of the server's CPU on an upload (py-spy, 128 MiB to SeaweedFS). This client
        hands each part to the socket as one buffer and signs only the headers
        (``UNSIGNED-PAYLOAD``, what botocore already does over HTTPS). The bytes are not left
        unchecked: the server SHA-256s the whole body for the blob digest, and the upload is
        completed only if that matches.
        """
        import botocore.session
        from botocore.config import Config

        session = botocore.session.Session(profile=self._options.get("profile"))
        location = self._options.get("client_kwargs", {})
        return session.create_client(
            "s3",
            endpoint_url=location.get("endpoint_url"),
            region_name=location.get("region_name"),
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=STREAM_CONCURRENCY * 4,
                signature_version="s3v4",  # else botocore presigns with the legacy SigV2
                s3={"payload_signing_enabled": False},
                **self._options.get("config_kwargs", {}),
            ),
        )

    def call_parts_client(self, method: str, **arguments: Any) -> Any:
        """``parts_client.<method>(**arguments)``, its refusals raised as s3fs would raise them
        (inside ``_reachable``/``_existing``, which explain them)."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.parts_client, method)(**arguments)
        except ClientError as error:
            raise _translated(error) from error

    def streamed_upload(self, digest: str) -> StreamedUpload:
        """A writer that sends bytes to ``digest``'s key as they arrive (the server's upload
        route); the caller hashes them and calls ``finish`` only if they match the digest."""
        return StreamedUpload(self, digest)

    def read_range(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a blob, one ranged GET per part (no
        HEAD first), unverified: only a reader that hashes the whole blob (the remote
        client) may rely on them. Through ``parts_client``: each part arrives in one read,
        where s3fs's asyncio path cost the relaying server a quarter more CPU."""
        bucket, key, _ = self.fs.split_path(self.key_for(digest))
        for offset in range(start, end, PART_SIZE):
            last = min(offset + PART_SIZE, end) - 1
            with self._existing(digest):
                answer = self.call_parts_client(
                    "get_object", Bucket=bucket, Key=key, Range=f"bytes={offset}-{last}"
                )
                yield answer["Body"].read()

    def presigned_url(self, digest: str, seconds: int, disposition: str) -> str:
        """A presigned GET URL for ``digest`` valid for ``seconds`` (the server's download
        redirect) whose answer carries ``Content-Disposition: disposition``, as the server's
        own downloads do; signed locally by ``parts_client``, no request is sent."""
        bucket, key, _ = self.fs.split_path(self.key_for(digest))
        params = {"Bucket": bucket, "Key": key, "ResponseContentDisposition": disposition}
        with self._reachable():
            return str(
                self.parts_client.generate_presigned_url(
                    "get_object", Params=params, ExpiresIn=seconds
                )
            )

    def local_path(self, digest: str) -> None:
        """None: the bytes are in the object store, not on this machine's disk."""
        return None

    def adopt_verified_file(self, source: Path, digest: str) -> StoredBlob:
        """Upload a temp file whose bytes the caller has hashed to ``digest`` (an object store
        has no rename from local disk, so this is ``put_file``)."""
        return self.put_file(source)

    def scratch_directories(self) -> list[Path]:
        """None: an unfinished upload leaves multipart parts (``abort_stale_uploads``)."""
        return []

    def abort_stale_uploads(self, cutoff_ms: int, dry_run: bool = False) -> list[str]:
        """Abort multipart uploads under this store's prefix started before ``cutoff_ms``
        (a server killed mid-upload leaves them; their parts cost storage but are never
        visible). Returns the keys of the uploads found."""
        from botocore.exceptions import ClientError

        bucket, prefix, _ = self.fs.split_path(self.root)
        found: list[str] = []
        with self._reachable():
            pages = self.parts_client.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
            )
            try:
                stale = [
                    upload
                    for page in pages
                    for upload in page.get("Uploads", [])
                    if upload["Initiated"].timestamp() * 1000 < cutoff_ms
                ]
            except ClientError as error:
                raise _translated(error) from error
            for upload in stale:
                found.append(f"{bucket}/{upload['Key']}")
                if not dry_run:
                    self.call_parts_client(
                        "abort_multipart_upload",
                        Bucket=bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
        return found

    def _whole(self, digest: str) -> bytes:
        with self._existing(digest):
            return bytes(self.fs.cat_file(self.key_for(digest)))

    def _chunks(self, digest: str) -> Iterator[bytes]:
        """The object in ``PART_SIZE`` pieces through one streaming read."""
        key = self.key_for(digest)
        with (
            self._existing(digest),
            self.fs.open(key, "rb", block_size=PART_SIZE, cache_type="none") as reader,
        ):
            while chunk := reader.read(PART_SIZE):
                yield chunk

    def fingerprint(self, digest: str) -> Fingerprint | None:
        """What changes whenever the object does (None when it is missing): size first, then
        the ETag and last-modified time the object store sets on every write (one HEAD)."""
        try:
            with self._reachable():
                info = self.fs.info(self.key_for(digest))
        except FileNotFoundError:
            return None
        return (int(info["size"]), info.get("ETag"), str(info.get("LastModified")))

    def read_prefix(self, digest: str, size: int) -> bytes:
        """The first ``size`` bytes, unverified: enough to tell a manifest from other data."""
        if digest == _EMPTY:
            return b""  # S3 refuses any byte range of an empty object
        with self._existing(digest):
            return bytes(self.fs.cat_file(self.key_for(digest), start=0, end=size))

    @property
    def location(self) -> str:
        """Where the blobs are, as shown to users (the URL without its query options)."""
        return self.url

    def location_names(self) -> set[str]:
        """The URL and the bucket/prefix path fsspec and botocore name in their errors."""
        return {self.url, self.root}

    def is_empty(self) -> bool:
        """Whether nothing at all (blob or capture file) is under the prefix: one listing
        request, not a walk, since a new store's database may only be created over none."""
        with self._reachable():
            try:
                return not self.fs.ls(self.root, detail=False)
            except FileNotFoundError:
                return True

    def iter_digests(self) -> Iterator[str]:
        with self._reachable():
            keys = sorted(self.fs.find(f"{self.root}/sha256"))
        for key in keys:
            name = key.rsplit("/", 1)[-1]
            if digests.is_digest(digests.PREFIX + name):
                yield digests.PREFIX + name

    def size_of(self, digest: str) -> int:
        key = self.key_for(digest)
        with self._existing(digest):
            return int(self.fs.info(key)["size"])

    def modified_ms(self, digest: str) -> int:
        """When the object was written: ``clew gc`` spares blobs younger than its grace."""
        key = self.key_for(digest)
        with self._existing(digest):
            return int(self.fs.modified(key).timestamp() * 1000)

    def delete(self, digest: str) -> None:
        """Remove one blob; only ``clew gc`` calls this, for blobs no record points at."""
        key = self.key_for(digest)
        with contextlib.suppress(FileNotFoundError), self._reachable():
            self.fs.rm_file(key)

    def _upload(
        self, source: Path, digest: str, before: os.stat_result, progress: Progress | None
    ) -> None:
        hasher = digests.Hasher()
        handle = self.fs.open(self.key_for(digest), "wb", block_size=PART_SIZE, autocommit=False)
        try:
            with self._reachable():
                for chunk in _chunks(source, before.st_size):
                    hasher.update(chunk)
                    handle.write(chunk)
                    if progress:
                        progress(len(chunk))
                handle.close()
            if hasher.digest() != digest:
                raise _changed(source)
            _refuse_if_changed(source, before)
        except BaseException:
            _abandon(handle)
            raise
        with self._reachable():
            handle.commit()

    @contextlib.contextmanager
    def _existing(self, digest: str) -> Iterator[None]:
        try:
            with self._reachable():
                yield
        except FileNotFoundError as error:
            raise NotFoundError(
                f"blob {digest} is missing from the store at {self.url}."
            ) from error

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn refused credentials and dead endpoints into one clear sentence."""
        try:
            yield
        except FileNotFoundError:
            raise
        except PermissionError as error:
            raise StoreUnavailableError(
                f"the object store refused access to {self.url}; check the AWS credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy."
            ) from error
        except Exception as error:
            if _is_connection_failure(error):
                raise _unreachable(self.url) from error
            raise


class StreamedUpload:
    """Bytes for one blob key, sent as multipart parts by a few threads while the caller keeps
    receiving them.

    Nothing is visible at the key until ``finish`` completes the multipart upload, and
    ``abort`` removes every part sent, so a digest mismatch or a dropped connection leaves no
    object and no orphaned parts. A body smaller than one part goes up as a single PUT.
    """

    def __init__(self, store: ObjectBlobStore, digest: str) -> None:
        self._store = store
        self._bucket, self._key, _ = store.fs.split_path(store.key_for(digest))
        self._pool = ThreadPoolExecutor(STREAM_CONCURRENCY, thread_name_prefix="clew-part")
        self._in_flight: deque[Future[None]] = deque()
        self._etags: list[str] = []
        self._upload_id: str | None = None

    def add_part(self, part: bytes | bytearray) -> None:
        """Queue the next part (at least 5 MiB); waits while the pool is full, so memory
        stays bounded however fast the client sends."""
        if self._upload_id is None:
            created = self._call("create_multipart_upload", Bucket=self._bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._etags) + 1
        self._etags.append("")
        self._in_flight.append(self._pool.submit(self._send, number, part))
        while len(self._in_flight) >= STREAM_CONCURRENCY:
            self._in_flight.popleft().result()

    def finish(self, last: bytes | bytearray) -> None:
        """Send the remaining bytes and make the object visible (call after verifying)."""
        try:
            if self._upload_id is None:
                with self._store._reachable():
                    self._store.fs.pipe_file(f"{self._bucket}/{self._key}", last)
                return
            if last:
                self.add_part(last)
            while self._in_flight:
                self._in_flight.popleft().result()
            parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(self._etags, 1)]
            self._call(
                "complete_multipart_upload",
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Drop every part sent; nothing appears at the key."""
        for pending in self._in_flight:
            pending.cancel()
        self._pool.shutdown(wait=True)
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._call(
                    "abort_multipart_upload",
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                )

    def _send(self, number: int, part: bytes | bytearray) -> None:
        answer = self._call(
            "upload_part",
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._etags[number - 1] = answer["ETag"]

    def _call(self, method: str, **arguments: Any) -> Any:
        with self._store._reachable():
            return self._store.call_parts_client(method, **arguments)


def _translated(error: Exception) -> Exception:
    """botocore's error as the OS error s3fs would raise, which ``_reachable`` explains."""
    response: dict[str, Any] = getattr(error, "response", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 403:
        return PermissionError(str(error))
    if status == 404:
        return FileNotFoundError(str(error))
    return error


def _chunks(source: Path, limit: int) -> Iterator[bytes]:
    """At most ``limit`` bytes of ``source``, the size seen at the start: a file that keeps
    growing is not read forever, and the fingerprint check afterwards refuses it."""
    try:
        yield from digests.file_chunks(source, limit)
    except FileNotFoundError as error:
        raise _vanished(source) from error


def _refuse_if_changed(source: Path, before: os.stat_result, size: int | None = None) -> None:
    after = _stat_or_fail(source)
    if _fingerprint(before) != _fingerprint(after) or size not in (None, before.st_size):
        raise _changed(source)


def _abandon(handle: Any) -> None:
    """Abort an unfinished upload so no object (and no orphaned multipart part) remains."""
    with contextlib.suppress(Exception):
        handle.discard()
    handle.closed = True


def _is_connection_failure(error: Exception) -> bool:
    """Refused, reset or timed-out connections, from the OS or from botocore (by class name,
    so this module needs no botocore import and works for any fsspec backend)."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionError"})


def _unreachable(url: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the object store behind {url} is unreachable; check the endpoint (AWS_ENDPOINT_URL "
        "or ?endpoint_url=) and that the server is running, then retry."
    )


def _changed(source: Path) -> FileChangedError:
    return FileChangedError(
        f"{source} changed while clew was hashing it; retry once it is no longer being written."
    )
