"""``RemoteBlobStore``: the blob-store methods the client uses, over ``/api/v1/blobs/<digest>``.

Blob uploads are idempotent by construction (``PUT /blobs/<digest>``); downloads are re-hashed
here. Requests go through the ``Transport`` of the backend that owns this store.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clew import errors
from clew.client.transport import API, ATTEMPTS, RETRY_STATUSES, Transport, pause_before_retry
from clew.domain import digests
from clew.errors import ClewError, FileChangedError, InvalidInputError
from clew.store.blobs import (
    CHUNK,
    Progress,
    StoredBlob,
    StoredDirectory,
    export_directory,
    parse_manifest,
    put_directory,
)

# Large blobs are downloaded as ranges of this size, a few at a time (boto3 does the same).
DOWNLOAD_RANGE = 8 * 1024 * 1024
# Files this large go up with sendfile on a connection of their own, this much per call.
SENDFILE_FROM = SENDFILE_STEP = 8 * 1024 * 1024
DOWNLOAD_CONCURRENCY = 4
WRITE_SLICE = 256 * 1024
REDIRECTS = {301, 302, 303, 307, 308}


class RemoteBlobStore:
    """The blob-store methods the client uses, over ``/api/v1/blobs/<digest>``.

    Uploads skip bytes the server already has (content addressing makes that safe); downloads
    are re-hashed here, so damaged or substituted bytes are refused before anything loads them.
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def exists(self, digest: str) -> bool:
        response = self._t.send("GET", f"/blobs/{digest}/size")
        if response.status_code == 404:
            return False
        self._t.decode(response)
        return True

    def size_of(self, digest: str) -> int:
        return self._t.call("GET", f"/blobs/{digest}/size")["size"]

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = digests.digest_bytes(data)
        if not self.exists(digest):
            self._put(digest, lambda: data)
        return StoredBlob(digest, len(data))

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob:
        source = Path(source)
        before = _stat(source)
        digest = _hash_file(source)
        if not self.exists(digest):
            if before.st_size >= SENDFILE_FROM:
                self._put_large(digest, source, before.st_size, progress)
            else:
                self._put(digest, lambda: _chunks(source, progress))
        if _fingerprint(_stat(source)) != _fingerprint(before):
            raise FileChangedError(
                f"{source} changed while clew was uploading it; retry once it is no longer "
                "being written."
            )
        return StoredBlob(digest, before.st_size)

    def put_directory(self, source: Path, progress: Progress | None = None) -> StoredDirectory:
        """Every file (those the server has are skipped), then the manifest naming them."""
        return put_directory(self, source, progress)

    def _put(self, digest: str, body: Callable[[], Any]) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        self._check_put(self._t.send("PUT", f"/blobs/{digest}", body, headers=headers))

    def _put_large(self, digest: str, source: Path, size: int, progress: Progress | None) -> None:
        """A large file goes to the socket with ``sendfile`` on a connection of its own: the
        kernel moves its pages, where httpx streamed 64 KiB chunks through Python (about a
        third of the client's CPU on a 128 MiB upload). Retried like every other request."""
        sender = _FileSender(self._t, self._t.base_url + API + f"/blobs/{digest}")
        self._check_put(self._t._with_retries(lambda: sender.put(source, size, progress)))

    def _check_put(self, response: httpx.Response) -> None:
        if response.status_code == 400 and b"digest_mismatch" in response.content[:200]:
            raise FileChangedError(self._t.error(response).args[0])
        self._t.decode(response)

    def read_bytes(self, digest: str) -> bytes:
        response = self._t.send("GET", self._t.blob_path(digest))
        if response.status_code in REDIRECTS:
            location = response.headers["location"]
            try:
                response = self._t.direct.get(location)
                if response.status_code >= 400:
                    raise self._t.error(response)
            except (httpx.TransportError, ClewError) as error:
                self._t.stop_direct(location, error)
                response = self._t.send("GET", self._t.blob_path(digest))
        if response.status_code >= 400:
            raise self._t.error(response)
        if digests.digest_bytes(response.content) != digest:
            raise _corrupt(digest)
        return response.content

    def read_manifest(self, digest: str) -> dict[str, str]:
        return parse_manifest(self.read_bytes(digest), digest)

    def export_file(self, digest: str, destination: Path) -> Path:
        """Download into a temp sibling at range offsets; it is renamed to ``destination`` only
        once the whole blob hashes to ``digest``, so a bad download leaves nothing there."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        temp = destination.with_name(f".{destination.name}.clew-tmp")
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                actual = self._fetch(digest, functools.partial(_write_at, descriptor))
            finally:
                os.close(descriptor)
            if actual != digest:
                raise _corrupt(digest)
            temp.replace(destination)
        finally:
            temp.unlink(missing_ok=True)
        return destination

    def verify(self, digest: str) -> bool:
        """True when the server has ``digest`` and its bytes, downloaded here, hash to it."""
        try:
            return self._fetch(digest, lambda _offset, _data: None) == digest
        except ClewError:
            return False

    def export_directory(self, digest: str, destination: Path) -> Path:
        """All files verified before any appears at ``destination`` (the local stores' rule)."""
        return export_directory(self, digest, destination)

    def _fetch(self, digest: str, write_at: Callable[[int, memoryview], Any]) -> str:
        """Download the blob into ``write_at(offset, bytes)`` and return the digest of what came.

        A one-byte probe tells the size (and whether the server redirects to a presigned
        object-store URL, which then serves every range without our token); then every range
        is read straight into one of a few reused buffers by a pool of threads while this
        thread hashes the buffers in order, so hashing overlaps the transfer, no byte is copied
        in Python and memory stays at a few ranges. If the object store fails part way, the
        whole blob is read again through the server (ranges land at their offsets, so the
        second pass overwrites the first).
        """
        source, total = self._locate(digest)
        if source.http is not self._t.direct:
            return self._read_ranges(source, total, write_at)
        try:
            return self._read_ranges(source, total, write_at)
        except ClewError as error:
            self._t.stop_direct(source.url, error)
        source, total = self._locate(digest)
        return self._read_ranges(source, total, write_at)

    def _read_ranges(
        self, source: _Source, total: int, write_at: Callable[[int, memoryview], Any]
    ) -> str:
        hasher = hashlib.sha256()
        offsets = iter(range(0, total, DOWNLOAD_RANGE))
        reader = _RangeReader(self._t, source, total, write_at)
        pool = ThreadPoolExecutor(DOWNLOAD_CONCURRENCY, thread_name_prefix="clew-range")
        window: deque[Future[memoryview]] = deque()
        try:
            for offset in itertools.islice(offsets, DOWNLOAD_CONCURRENCY + 1):
                window.append(pool.submit(reader.read, offset, bytearray(DOWNLOAD_RANGE)))
            while window:
                received = window.popleft().result()
                hasher.update(received)
                if (offset := next(offsets, None)) is not None:
                    window.append(pool.submit(reader.read, offset, received.obj))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            reader.close()
        return digests.PREFIX + hasher.hexdigest()

    def _locate(self, digest: str) -> tuple[_Source, int]:
        """Where the blob's ranges come from and its size: the presigned URL the server
        redirects to, or the server itself if there is none or it could not be reached."""
        relayed = self._relayed(digest)
        response = self._t._with_retries(lambda: _first_byte(relayed))
        if response.status_code in REDIRECTS and not self._t.relay_only:
            direct = _Source(self._t.direct, response.headers["location"])
            try:
                return direct, self._size(_first_byte(direct), digest)
            except (httpx.TransportError, ClewError) as error:
                self._t.stop_direct(direct.url, error)
            relayed = self._relayed(digest)
            response = self._t._with_retries(lambda: _first_byte(relayed))
        return relayed, self._size(response, digest)

    def _relayed(self, digest: str) -> _Source:
        return _Source(self._t.http, self._t.base_url + API + self._t.blob_path(digest))

    def _size(self, response: httpx.Response, digest: str) -> int:
        """The blob's size from the answer to a one-byte range request."""
        if response.status_code == 200:
            raise errors.StoreUnavailableError(
                f"{response.url.host} ignored the Range header of a blob download; clew "
                "downloads blobs in byte ranges, so check proxies between here and the server."
            )
        if response.status_code == 416 and _total(response, digest) == 0:
            return 0
        if response.status_code != 206:
            raise self._t.error(response)
        return _total(response, digest)


@dataclass(frozen=True)
class _Source:
    """Where a blob's ranges come from: our server (with the token) or a presigned URL."""

    http: httpx.Client
    url: str


class _RangeReader:
    """Reads byte ranges of one blob into caller-given buffers, one connection per thread.

    Plain ``http.client`` rather than httpx: its ``readinto`` moves the body from the socket
    straight into the buffer, where httpx would copy every 64 KiB chunk several times in
    Python; for a large download that copying was most of the client's CPU. The headers are
    those of the source's httpx client, so a presigned URL never gets our token.
    """

    def __init__(
        self,
        transport: Transport,
        source: _Source,
        total: int,
        write_at: Callable[[int, memoryview], Any],
    ) -> None:
        self._t = transport
        self._url = httpx.URL(source.url)
        self._headers = _identity_headers(source.http)
        self._timeout = source.http.timeout.read
        self._total = total
        self._write_at = write_at
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def read(self, start: int, buffer: bytearray) -> memoryview:
        """Bytes ``start..`` of the blob in ``buffer`` (a view of the part filled), written at
        their offset too; retried like every other request on a dropped connection or 5xx."""
        end = min(start + DOWNLOAD_RANGE, self._total)
        view = memoryview(buffer)[: end - start]
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                status, body = self._attempt(start, end, view)
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection()
                if last:
                    raise errors.ServerUnavailableError(
                        f"{self._url.host} did not answer a blob download ({error}); check that "
                        "it is running and reachable, then retry."
                    ) from error
            else:
                if status == 206:
                    self._write_at(start, view)
                    return view
                if status not in RETRY_STATUSES or last:
                    raise self._t.error(httpx.Response(status, content=body))
            pause_before_retry(attempt)
        raise AssertionError("unreachable")

    def _attempt(self, start: int, end: int, view: memoryview) -> tuple[int, bytes]:
        connection = self._connection()
        headers = {**self._headers, **_range_header(start, end)}
        connection.request("GET", self._url.raw_path.decode("ascii"), headers=headers)
        response = connection.getresponse()
        if response.status != 206:
            return response.status, response.read()
        if response.getheader("content-range") != f"bytes {start}-{end - 1}/{self._total}":
            response.close()
            raise self._wrong_range()
        filled = 0
        while filled < len(view) and (count := response.readinto(view[filled:])):
            filled += count
        if filled != len(view) or response.read(1):
            response.close()
            raise self._wrong_range()
        return 206, b""

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _connection_to(self._url, self._timeout)
            with self._lock:
                self._opened.append(connection)
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _wrong_range(self) -> errors.IntegrityError:
        return errors.IntegrityError(
            f"{self._url.path} answered a byte range other than the one asked for; nothing was "
            "loaded; retry."
        )

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()


class _FileSender:
    """PUTs one file as the request body with ``socket.sendfile`` (``RemoteBlobStore``)."""

    def __init__(self, transport: Transport, url: str) -> None:
        self._url = httpx.URL(url)
        self._headers = _identity_headers(transport.http)
        self._timeout = transport.http.timeout.read

    def put(self, source: Path, size: int, progress: Progress | None) -> httpx.Response:
        """One attempt; a lost connection is an ``httpx.TransportError`` so it is retried."""
        connection = _connection_to(self._url, self._timeout)
        try:
            connection.putrequest("PUT", self._url.raw_path.decode("ascii"))
            for name, value in self._headers.items():
                connection.putheader(name, value)
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            _send_file(connection, source, size, progress)
            answer = connection.getresponse()
            return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
        except (OSError, http.client.HTTPException) as error:
            raise httpx.WriteError(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()


def _send_file(
    connection: http.client.HTTPConnection, source: Path, size: int, progress: Progress | None
) -> None:
    """Exactly ``size`` bytes of ``source`` (the size hashed); a file that shrank meanwhile is
    refused here, one that changed otherwise by the server's digest check."""
    with open(source, "rb") as reader:
        for offset in range(0, size, SENDFILE_STEP):
            count = min(SENDFILE_STEP, size - offset)
            if connection.sock.sendfile(reader, offset, count) != count:
                raise FileChangedError(
                    f"{source} got shorter while clew was uploading it; retry once it is no "
                    "longer being written."
                )
            if progress:
                progress(count)


def _identity_headers(http: httpx.Client) -> dict[str, str]:
    """Only who we are (and the token, for our own server) from ``http``'s headers: no
    Accept-Encoding, as blob bytes must travel exactly as stored."""
    return {
        name: value
        for name, value in http.headers.items()
        if name.lower() in ("authorization", "user-agent")
    }


def _connection_to(url: httpx.URL, timeout: float | None) -> http.client.HTTPConnection:
    if url.scheme == "https":
        return http.client.HTTPSConnection(
            url.host, url.port, timeout=timeout, context=httpx.create_ssl_context()
        )
    return http.client.HTTPConnection(url.host, url.port, timeout=timeout)


def _first_byte(source: _Source) -> httpx.Response:
    """A one-byte range request (a redirect is returned, not followed)."""
    with source.http.stream("GET", source.url, headers=_range_header(0, 1)) as answer:
        if answer.status_code != 200:  # a whole blob is never read into memory here
            answer.read()
    return answer


def _range_header(start: int, end: int) -> dict[str, str]:
    return {"Range": f"bytes={start}-{end - 1}"}


def _total(response: httpx.Response, digest: str) -> int:
    """The blob's size from a ``Content-Range: bytes a-b/<size>`` header."""
    _, _, total = response.headers.get("content-range", "").rpartition("/")
    if not total.isdigit():
        raise errors.IntegrityError(
            f"the server answered a range of blob {digest} without its size; nothing was loaded."
        )
    return int(total)


def _write_at(descriptor: int, offset: int, data: memoryview) -> None:
    """Write ``data`` at ``offset`` in ``WRITE_SLICE`` pieces: one 8 MiB ``pwrite`` per range
    cost the kernel two to five times the system time of the same bytes in 256 KiB writes
    (perf: ``copy_folio_from_iter_atomic``), which made a 256 MiB download 0.5x boto3."""
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view[:WRITE_SLICE], offset)
        view, offset = view[written:], offset + written


def _stat(path: Path) -> os.stat_result:
    try:
        result = path.stat()
    except FileNotFoundError as error:
        raise FileChangedError(f"{path} does not exist (or disappeared while reading).") from error
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a regular file.")
    return result


def _fingerprint(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
    return digests.PREFIX + hasher.hexdigest()


def _chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK):
            if progress:
                progress(len(chunk))
            yield chunk


def _corrupt(digest: str) -> errors.IntegrityError:
    return errors.IntegrityError(
        f"blob {digest} from the server does not match its digest; nothing was loaded; ask the "
        "server's admin to run `clew verify`."
    )
