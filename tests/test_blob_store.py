"""One blob-store shape: the local directory, the object store and the remote client's store all
satisfy ``BlobStore``, and all refuse a tampered blob through the one read path they share
(``VerifiedReads``), never through a read of their own."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import RunningServer, serve
from tamper import corrupt_blob

import clew
from clew.client.remote_blobs import RemoteBlobStore
from clew.domain.blobs import BlobStore, VerifiedReads
from clew.errors import IntegrityError
from clew.store.blobs import BlobBackend, LocalBlobStore
from clew.store.location import open_store
from clew.store.object_store import ObjectBlobStore

# Each test sets up its own stores: the backend and remote passes would only repeat it.
pytestmark = pytest.mark.backend_independent

STORES = (LocalBlobStore, ObjectBlobStore, RemoteBlobStore)
SHARED_READS = ("read_bytes", "read_manifest", "verify", "export_file", "export_directory")


def _members(protocol: type) -> list[str]:
    return [name for name in protocol.__dict__ if not name.startswith("_")]


@pytest.mark.parametrize("store", STORES, ids=lambda cls: cls.__name__)
def test_every_blob_store_has_the_protocol_s_methods_with_its_signatures(store: type) -> None:
    for name in _members(BlobStore):
        assert inspect.signature(getattr(store, name)) == inspect.signature(
            getattr(BlobStore, name)
        ), f"{store.__name__}.{name}"


@pytest.mark.parametrize("store", [LocalBlobStore, ObjectBlobStore], ids=lambda c: c.__name__)
def test_a_store_s_own_blob_backends_offer_what_the_server_asks_of_them(store: type) -> None:
    for name in _members(BlobBackend):
        member = getattr(store, name, None)
        assert member is not None, f"{store.__name__} lacks {name}"
        if callable(member):
            wanted = inspect.signature(getattr(BlobBackend, name))
            assert list(inspect.signature(member).parameters) == list(wanted.parameters), name


@pytest.mark.parametrize("store", STORES, ids=lambda cls: cls.__name__)
def test_no_store_reads_or_verifies_by_a_path_of_its_own(store: type) -> None:
    for name in SHARED_READS:
        assert getattr(store, name) is getattr(VerifiedReads, name), f"{store.__name__}.{name}"


@pytest.fixture(params=["local", "s3"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    artifacts = request.getfixturevalue("s3_artifacts") if request.param == "s3" else None
    yield from serve(open_store(str(tmp_path / "server"), artifacts), tmp_path / "server")


def _refuses(blobs: BlobStore, digest: str, tmp_path: Path) -> None:
    """Every read of the tampered blob fails naming it, and no exported file is left."""
    with pytest.raises(IntegrityError, match=digest):
        blobs.read_bytes(digest)
    with pytest.raises(IntegrityError, match=digest):
        blobs.export_file(digest, tmp_path / "out" / "model.bin")
    assert not (tmp_path / "out" / "model.bin").exists()
    assert list((tmp_path / "out").iterdir()) == []
    assert blobs.verify(digest) is False


def test_a_tampered_blob_is_refused_by_the_local_store(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    digest = blobs.put_bytes(b"weights " * 1000).digest
    assert isinstance(blobs, BlobStore) and blobs.verify(digest)
    corrupt_blob(blobs, digest)
    _refuses(blobs, digest, tmp_path)


@pytest.mark.s3
def test_a_tampered_blob_is_refused_by_the_object_store(tmp_path: Path, s3_artifacts: str) -> None:
    blobs = ObjectBlobStore.from_url(s3_artifacts)
    digest = blobs.put_bytes(b"weights " * 1000).digest
    assert isinstance(blobs, BlobStore) and blobs.verify(digest)
    corrupt_blob(blobs, digest)
    _refuses(blobs, digest, tmp_path)


def test_a_tampered_blob_is_refused_by_the_remote_client(
    server: RunningServer, tmp_path: Path
) -> None:
    """The server hands the altered bytes out as they are; the client's hash refuses them."""
    client = clew.connect(server.url, token=server.user("alice"))
    blobs = client.store.blobs
    assert isinstance(blobs, RemoteBlobStore) and isinstance(blobs, BlobStore)
    digest = blobs.put_bytes(b"weights " * 1000).digest
    assert blobs.verify(digest)
    corrupt_blob(server.store.blobs, digest)
    _refuses(blobs, digest, tmp_path)
    client.close()
