"""The remote client's blob store: blobs over ``/api/v1/blobs/<digest>`` of a clew server.

Uploads skip bytes the server already has and send large files with ``sendfile``; downloads
come in byte ranges, from a presigned object-store URL when the server redirects to one, and
are re-hashed here, so damaged or substituted bytes are refused before anything loads them.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from clew import errors
from clew.client.transport import API, ATTEMPTS, RETRY_STATUSES, Transport, pause_before_retry
from clew.domain import digests
from clew.domain.blobs import Progress, StoredBlob, VerifiedReads, write_at
from clew.errors import ClewError, FileChangedError, InvalidInputError

# Large blobs are downloaded as ranges of this size, a few at a time (boto3 does the same).
DOWNLOAD_RANGE = 8 * 1024 * 1024
# Files this large go up with sendfile on a connection of their own, this much per call.
SENDFILE_FROM = SENDFILE_STEP = 8 * 1024 * 1024
DOWNLOAD_CONCURRENCY = 4
REDIRECTS = {301, 302, 303, 307, 308}


class RemoteBlobStore(VerifiedReads):
    """The blob-store methods the client uses, over ``/api/v1/blobs/<digest>``.

    Uploads skip bytes the server already has (content addressing makes that safe); downloads
    are re-hashed here (``VerifiedReads``), so damaged or substituted bytes are refused before
    anything loads them.
    """

    # A blob this client cannot fetch whole, for whatever reason, is not verified.
    _UNVERIFIABLE = (ClewError,)

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def exists(self, digest: str) -> bool:
        response = self._t.send("GET", f"/blobs/{digest}/size")
        if response.status_code == 404:
            return False
        self._t.decode(response)
        return True

    def size_of(self, digest: str) -> int:
        return int(self._t.call("GET", f"/blobs/{digest}/size")["size"])

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = digests.digest_bytes(data)
        if not self.exists(digest):
            self._put(digest, lambda: data)
        return StoredBlob(digest, len(data))

    def put_file(self, source: Path, progress: Progress | None = None) -> StoredBlob:
        source = Path(source)
        before = _stat(source)
        digest = digests.digest_file(source)
        if not self.exists(digest):
            if before.st_size >= SENDFILE_FROM:
                self._put_large(digest, source, before.st_size, progress)
            else:
                self._put(digest, lambda: _reported(source, progress))
        if _fingerprint(_stat(source)) != _fingerprint(before):
            raise FileChangedError(
                f"{source} changed while clew was uploading it; retry once it is no longer "
                "being written."
            )
        return StoredBlob(digest, before.st_size)

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

    def _whole(self, digest: str) -> bytes:
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
        return response.content

    def _chunks(self, digest: str) -> Iterator[memoryview]:
        return self._ranges(digest, lambda _offset, _data: None)

    def _written(self, digest: str, descriptor: int) -> Iterator[memoryview]:
        """The ranges are written at their offsets by the threads that receive them."""
        return self._ranges(digest, functools.partial(write_at, descriptor))

    def _corrupt(self, digest: str) -> errors.IntegrityError:
        return errors.IntegrityError(
            f"blob {digest} from the server does not match its digest; nothing was loaded; "
            "ask the server's admin to run `clew verify`."
        )

    def _ranges(
        self, digest: str, write_at: Callable[[int, memoryview], Any]
    ) -> Iterator[memoryview]:
        """The blob in order, each range also given to ``write_at(offset, bytes)``.

        A one-byte probe tells the size (and whether the server redirects to a presigned
        object-store URL, which then serves every range without our token); then every range
        is read straight into one of a few reused buffers by a pool of threads while the
        caller hashes the buffers in order, so hashing overlaps the transfer, no byte is copied
        in Python and memory stays at a few ranges. If the object store fails part way, the
        rest of the blob is read through the server.
        """
        source, total = self._locate(digest)
        done = 0
        if source.http is self._t.direct:
            try:
                for received in self._read_ranges(source, total, done, write_at):
                    yield received
                    done += len(received)
                return
            except ClewError as error:
                self._t.stop_direct(source.url, error)
            source, total = self._locate(digest)
        yield from self._read_ranges(source, total, done, write_at)

    def _read_ranges(
        self,
        source: _Source,
        total: int,
        start: int,
        write_at: Callable[[int, memoryview], Any],
    ) -> Iterator[memoryview]:
        offsets = iter(range(start, total, DOWNLOAD_RANGE))
        reader = _RangeReader(self._t, source, total, write_at)
        pool = ThreadPoolExecutor(DOWNLOAD_CONCURRENCY, thread_name_prefix="clew-range")
        window: deque[Future[memoryview]] = deque()
        try:
            for offset in itertools.islice(offsets, DOWNLOAD_CONCURRENCY + 1):
                window.append(pool.submit(reader.read, offset, bytearray(DOWNLOAD_RANGE)))
            while window:
                received = window.popleft().result()
                yield received
                if (following := next(offsets, None)) is not None:
                    buffer = cast(bytearray, received.obj)  # the one it was read into
                    window.append(pool.submit(reader.read, following, buffer))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            reader.close()

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


def _reported(path: Path, progress: Progress | None) -> Iterator[bytes]:
    """A file's bytes as an upload body, each piece reported to ``progress`` as it goes."""
    for chunk in digests.file_chunks(path):
        if progress:
            progress(len(chunk))
        yield chunk
