"""The S3 blob store against a real SeaweedFS server with enforced credentials."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import boto3
import pytest
from conftest import free_port

import clew
from clew.domain import digests
from clew.errors import (
    FileChangedError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StoreUnavailableError,
)
from clew.store.object_store import PART_SIZE, ObjectBlobStore

pytestmark = pytest.mark.s3
MIB = 1024 * 1024


@pytest.fixture
def store(s3_artifacts: str) -> ObjectBlobStore:
    return ObjectBlobStore.from_url(s3_artifacts)


@pytest.fixture
def s3(s3_server: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=s3_server["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=s3_server["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_server["AWS_SECRET_ACCESS_KEY"],
    )


def _bucket_and_key(store: ObjectBlobStore, digest: str) -> tuple[str, str]:
    bucket, _, key = store.key_for(digest).partition("/")
    return bucket, key


def _write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes in 1 MiB pieces; return their digest."""
    hasher = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(size // MIB):
            chunk = os.urandom(MIB)
            hasher.update(chunk)
            handle.write(chunk)
    return digests.PREFIX + hasher.hexdigest()


def _digest_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MIB):
            hasher.update(chunk)
    return digests.PREFIX + hasher.hexdigest()


def test_bytes_round_trip_and_identical_content_is_stored_once(store: ObjectBlobStore) -> None:
    first = store.put_bytes(b"hello clew")
    second = store.put_bytes(b"hello clew")
    assert first == second
    assert first.digest == digests.digest_bytes(b"hello clew")
    assert store.read_bytes(first.digest) == b"hello clew"
    assert store.exists(first.digest)
    assert store.size_of(first.digest) == 10
    assert store.verify(first.digest)
    assert list(store.iter_digests()) == [first.digest]


def test_keys_follow_the_local_layout(store: ObjectBlobStore, s3_artifacts: str) -> None:
    digest = store.put_bytes(b"layout").digest
    hex_part = digests.hex_part(digest)
    prefix = s3_artifacts.removeprefix("s3://")
    assert store.key_for(digest) == f"{prefix}/sha256/{hex_part[:2]}/{hex_part[2:4]}/{hex_part}"
    with pytest.raises(InvalidInputError, match="not a sha256 digest"):
        store.key_for("sha256:../../etc/passwd")


def test_missing_blob_is_not_found_and_fails_verification(store: ObjectBlobStore) -> None:
    digest = digests.digest_bytes(b"never stored")
    assert not store.exists(digest)
    assert not store.verify(digest)
    with pytest.raises(NotFoundError, match="missing"):
        store.read_bytes(digest)
    with pytest.raises(NotFoundError):
        store.size_of(digest)


def test_tampered_object_is_detected_on_every_read(
    store: ObjectBlobStore, s3, tmp_path: Path
) -> None:
    digest = store.put_bytes(b"the approved model").digest
    bucket, key = _bucket_and_key(store, digest)
    s3.put_object(Bucket=bucket, Key=key, Body=b"a swapped model!!!")
    assert not store.verify(digest)
    with pytest.raises(IntegrityError, match="does not match its digest"):
        store.read_bytes(digest)
    destination = tmp_path / "out" / "model.bin"
    with pytest.raises(IntegrityError):
        store.export_file(digest, destination)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_directory_manifest_round_trip(store: ObjectBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "weights").mkdir(parents=True)
    (source / "config.json").write_text('{"depth": 3}')
    (source / "weights" / "layer0.bin").write_bytes(b"\x00\x01" * 1000)
    (source / "weights" / "copy.bin").write_bytes(b"\x00\x01" * 1000)
    stored = store.put_directory(source)
    assert stored.size == 12 + 4000
    manifest = store.read_manifest(stored.digest)
    assert sorted(manifest) == ["config.json", "weights/copy.bin", "weights/layer0.bin"]
    assert manifest["weights/copy.bin"] == manifest["weights/layer0.bin"]
    assert len(list(store.iter_digests())) == 3  # manifest + two distinct contents
    out = store.export_directory(stored.digest, tmp_path / "restored")
    assert (out / "weights" / "layer0.bin").read_bytes() == b"\x00\x01" * 1000
    assert (out / "config.json").read_text() == '{"depth": 3}'
    with pytest.raises(InvalidInputError, match="not a directory manifest"):
        store.read_manifest(manifest["config.json"])


def test_large_file_streams_up_as_multipart_and_back_without_buffering_it(
    store: ObjectBlobStore, s3, tmp_path: Path
) -> None:
    size = 64 * MIB
    source = tmp_path / "big.bin"
    expected = _write_random(source, size)
    seen: list[int] = []
    store.read_bytes(store.put_bytes(b"load botocore's models first").digest)
    tracemalloc.start()
    try:
        stored = store.put_file(source, progress=seen.append)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        exported = store.export_file(stored.digest, tmp_path / "back.bin")
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.digest == expected
    assert stored.size == size
    assert sum(seen) == size and len(seen) > 1
    # Holding the whole file would need at least ``size`` bytes; streaming holds a few parts.
    assert upload_peak < 0.75 * size, f"upload held {upload_peak} bytes of a {size}-byte file"
    assert download_peak < 0.75 * size, f"download held {download_peak} of {size} bytes"
    assert _digest_of(exported) == expected
    bucket, key = _bucket_and_key(store, stored.digest)
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    assert etag.endswith(f"-{size // PART_SIZE}"), f"{etag} is not a multipart ETag"


def test_large_file_already_stored_is_not_uploaded_again(
    store: ObjectBlobStore, s3, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    _write_random(source, 2 * PART_SIZE)
    digest = store.put_file(source).digest
    bucket, key = _bucket_and_key(store, digest)
    before = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    seen: list[int] = []
    again = store.put_file(source, progress=seen.append)
    assert again.digest == digest
    assert seen == [2 * PART_SIZE]
    assert s3.head_object(Bucket=bucket, Key=key)["LastModified"] == before


def test_file_changing_during_upload_leaves_nothing_behind(
    store: ObjectBlobStore, s3, tmp_path: Path
) -> None:
    source = tmp_path / "growing.bin"
    original = _write_random(source, 2 * PART_SIZE)

    def append_once(_count: int) -> None:
        if not appended:
            appended.append(True)
            with open(source, "r+b") as handle:
                handle.write(b"changed!")

    appended: list[bool] = []
    with pytest.raises(FileChangedError, match="changed while clew was hashing"):
        store.put_file(source, progress=append_once)
    assert appended
    assert not store.exists(original)
    assert list(store.iter_digests()) == []
    bucket, _ = _bucket_and_key(store, original)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert not [u for u in uploads if store.key_for(original).endswith(u["Key"])]


def test_small_file_and_vanished_file(store: ObjectBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "params.json"
    source.write_text('{"lr": 0.1}')
    seen: list[int] = []
    stored = store.put_file(source, progress=seen.append)
    assert seen == [11]
    assert store.read_bytes(stored.digest) == b'{"lr": 0.1}'
    with pytest.raises(FileChangedError, match="does not exist"):
        store.put_file(tmp_path / "gone.bin")


def test_wrong_credentials_give_one_clear_error(
    s3_artifacts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = ObjectBlobStore.from_url(s3_artifacts)
    with pytest.raises(StoreUnavailableError, match="refused access") as raised:
        store.put_bytes(b"x")
    assert "not-the-secret" not in str(raised.value)


def test_unreachable_endpoint_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    endpoint = f"http://127.0.0.1:{free_port()}"
    # One attempt and a short timeout keep the test short; the defaults ride out brief outages.
    store = ObjectBlobStore(
        "s3://bucket/p",
        {
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        },
    )
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.exists(digests.digest_bytes(b"x"))


def test_endpoint_from_the_url_query(s3_server: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    url = f"s3://{s3_server['bucket']}/query-test?endpoint_url={s3_server['endpoint']}&region=us-east-1"
    store = ObjectBlobStore.from_url(url)
    digest = store.put_bytes(b"via query").digest
    assert store.read_bytes(digest) == b"via query"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/p?secret=abc", "carries credentials"),
        ("s3://bucket/p?key=AKIA&secret=abc", "carries credentials"),
        ("s3://bucket/p?acl=public-read", "unknown option"),
    ],
)
def test_urls_with_credentials_or_unknown_options_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        ObjectBlobStore.from_url(url)
    assert "abc" not in str(raised.value)


def test_client_logs_artifacts_to_s3_with_a_sqlite_database(
    s3_artifacts: str, tmp_path: Path
) -> None:
    client = clew.connect(f"sqlite:///{tmp_path / 'meta' / 'clew.db'}", artifacts=s3_artifacts)
    source = tmp_path / "report.txt"
    source.write_text("accuracy 0.93\n")
    with client.start_run(experiment="s3-blobs") as run:
        artifact = run.log_artifact(source)
    assert isinstance(client.store.blobs, ObjectBlobStore)
    assert client.store.blobs.read_bytes(artifact.digest) == b"accuracy 0.93\n"
    assert not (tmp_path / "meta" / "blobs").exists()


def test_directory_with_one_tampered_file_exports_nothing(
    store: ObjectBlobStore, s3, tmp_path: Path
) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "a.bin").write_bytes(b"first file")
    (source / "b.bin").write_bytes(b"second file")
    stored = store.put_directory(source)
    bucket, key = _bucket_and_key(store, stored.files["b.bin"])
    s3.put_object(Bucket=bucket, Key=key, Body=b"second fil3")
    with pytest.raises(IntegrityError):
        store.export_directory(stored.digest, tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_streamed_upload_is_invisible_until_finished_and_aborts_without_parts(
    store: ObjectBlobStore,
    s3,  # type: ignore[no-untyped-def]
) -> None:
    data = os.urandom(PART_SIZE + 1234)
    digest = digests.digest_bytes(data)
    bucket, key = _bucket_and_key(store, digest)
    upload = store.streamed_upload(digest)
    upload.add_part(data[:PART_SIZE])
    assert not store.exists(digest)
    upload.abort()
    assert not store.exists(digest)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
    upload = store.streamed_upload(digest)
    upload.add_part(data[:PART_SIZE])
    upload.finish(data[PART_SIZE:])
    assert store.read_bytes(digest) == data
    assert (
        b"".join(store.read_range(digest, PART_SIZE - 10, PART_SIZE + 20))
        == data[PART_SIZE - 10 : PART_SIZE + 20]
    )


def test_a_small_streamed_upload_is_a_single_put(store: ObjectBlobStore) -> None:
    upload = store.streamed_upload(digests.digest_bytes(b"tiny"))
    upload.finish(b"tiny")
    assert store.read_bytes(digests.digest_bytes(b"tiny")) == b"tiny"
