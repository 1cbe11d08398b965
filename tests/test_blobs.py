"""Content-addressed blobs: atomic writes, dedupe, Merkle manifests, verification on read,
a full disk and files that change while they are hashed — all on the real filesystem."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from tamper import corrupt_blob

import clew
from clew.domain.digests import CHUNK
from clew.errors import FileChangedError, IntegrityError, NotFoundError
from clew.integrations import flavors
from clew.store.blobs import LocalBlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _stored_files(store: LocalBlobStore) -> list[Path]:
    return sorted(path for path in (store.root / "sha256").rglob("*") if path.is_file())


@pytest.mark.backend_independent
def test_put_bytes_is_content_addressed_and_deduplicated(blobs: LocalBlobStore) -> None:
    first = blobs.put_bytes(b"hello")
    second = blobs.put_bytes(b"hello")
    assert first == second
    assert first.digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert _stored_files(blobs) == [blobs.path_for(first.digest)]
    assert blobs.read_bytes(first.digest) == b"hello"
    assert list(blobs.staging.iterdir()) == []


@pytest.mark.backend_independent
def test_put_file_matches_put_bytes_and_leaves_no_temp_files(
    blobs: LocalBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(CHUNK + 123))
    stored = blobs.put_file(source)
    again = blobs.put_file(source)
    assert stored == again
    assert stored.size == CHUNK + 123
    assert stored.digest == blobs.put_bytes(source.read_bytes()).digest
    assert len(_stored_files(blobs)) == 1
    assert list(blobs.staging.iterdir()) == []
    assert blobs.verify(stored.digest)


@pytest.mark.backend_independent
def test_directory_digest_is_a_stable_merkle_manifest(
    blobs: LocalBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.txt").write_text("beta")
    first = blobs.put_directory(source)
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    assert blobs.put_directory(copy).digest == first.digest
    assert first.files == {
        "a.txt": "sha256:" + hashlib.sha256(b"alpha").hexdigest(),
        "sub/b.txt": "sha256:" + hashlib.sha256(b"beta").hexdigest(),
    }
    assert blobs.read_manifest(first.digest) == first.files
    assert first.size == len("alpha") + len("beta")

    (copy / "sub" / "b.txt").write_text("beta!")
    assert blobs.put_directory(copy).digest != first.digest
    (copy / "sub" / "b.txt").write_text("beta")
    (copy / "sub" / "b.txt").rename(copy / "sub" / "c.txt")
    assert blobs.put_directory(copy).digest != first.digest


@pytest.mark.backend_independent
def test_directory_digest_is_stable_across_processes(tmp_path: Path) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    for index in range(5):
        (source / f"f{index}.txt").write_text(str(index) * index)
    script = (
        "import sys; from pathlib import Path; from clew.store.blobs import LocalBlobStore; "
        "print(LocalBlobStore(Path(sys.argv[1])).put_directory(Path(sys.argv[2])).digest)"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"store{n}"), str(source)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for n in range(2)
    }
    assert len(outputs) == 1
    assert outputs.pop().startswith("sha256:")


@pytest.mark.backend_independent
def test_corrupted_blob_is_refused_on_read_naming_its_digest(blobs: LocalBlobStore) -> None:
    stored = blobs.put_bytes(b"precious bytes")
    corrupt_blob(blobs, stored.digest)
    with pytest.raises(IntegrityError, match=stored.digest):
        blobs.read_bytes(stored.digest)
    assert not blobs.verify(stored.digest)


@pytest.mark.backend_independent
def test_missing_blob_is_not_found(blobs: LocalBlobStore) -> None:
    digest = "sha256:" + "0" * 64
    with pytest.raises(NotFoundError, match=digest):
        blobs.read_bytes(digest)
    assert not blobs.verify(digest)


def test_corrupted_blob_is_refused_on_export(client: clew.Client, tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    source.write_text("a,b\n1,2\n3,4\n")
    with clew.start_run(experiment="blobs") as run:
        artifact = run.log_input(source, name="train")
    corrupt_blob(client.store.blobs, artifact.digest)
    destination = tmp_path / "out" / "train.csv"
    with pytest.raises(IntegrityError, match=artifact.digest):
        client.export_artifact(f"dataset:train@{artifact.digest}", destination)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_corrupted_model_blob_is_refused_before_loading(
    client: clew.Client, tmp_path: Path
) -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with clew.start_run(experiment="blobs") as run:
        artifact = run.log_model(model, name="clf")
    manifest = client.store.blobs.read_manifest(artifact.digest)
    pickle_digest = manifest["model.pkl"]
    corrupt_blob(client.store.blobs, pickle_digest)
    destination = tmp_path / "exported"
    with pytest.raises(IntegrityError, match=pickle_digest):
        client.export_artifact(f"artifact:{artifact.id}", destination)
    assert not destination.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".exported")] == []


def test_exported_model_loads_back_through_its_flavor(client: clew.Client, tmp_path: Path) -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with clew.start_run(experiment="blobs") as run:
        artifact = run.log_model(model, name="clf")
    directory = client.export_artifact(f"model:clf@{artifact.digest}", tmp_path / "m")
    loaded = flavors.load(directory)
    assert loaded.predict([[0.0], [3.0]]).tolist() == [0, 1]


@pytest.mark.backend_independent
def test_file_changing_while_hashed_is_refused(blobs: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "growing.log"
    source.write_bytes(b"x" * (3 * CHUNK))

    def append_once(_count: int) -> None:
        with open(source, "ab") as handle:
            handle.write(b"more")

    with pytest.raises(FileChangedError, match=r"growing\.log"):
        blobs.put_file(source, progress=append_once)
    assert _stored_files(blobs) == []
    assert list(blobs.staging.iterdir()) == []


@pytest.mark.backend_independent
def test_file_appended_to_by_another_thread_is_refused(
    blobs: LocalBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "busy.bin"
    source.write_bytes(b"y" * (8 * CHUNK))
    started, stop = threading.Event(), threading.Event()

    def writer() -> None:
        with open(source, "ab") as handle:
            while not stop.is_set():
                handle.write(b"z")
                handle.flush()
                started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait()
    try:
        with pytest.raises(FileChangedError):
            blobs.put_file(source)
    finally:
        stop.set()
        thread.join()
    assert _stored_files(blobs) == []
    assert list(blobs.staging.iterdir()) == []


@pytest.mark.backend_independent
def test_file_disappearing_while_hashed_is_refused(blobs: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "vanishing.bin"
    source.write_bytes(b"v" * (2 * CHUNK))
    with pytest.raises(FileChangedError, match=r"vanishing\.bin"):
        blobs.put_file(source, progress=lambda _count: source.unlink(missing_ok=True))
    assert _stored_files(blobs) == []
    assert list(blobs.staging.iterdir()) == []


_DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path

    import clew
    from clew.errors import StorageFullError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    home, source, limit = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    client = clew.Client(home)
    run = client.start_run(experiment="full", capture_code=False)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        run.log_input(source, name="big")
    except StorageFullError as error:
        print("STORAGE_FULL:", error)
    else:
        print("WROTE")
    """
)


def test_disk_full_during_a_blob_write_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / "store"
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * 1024 * 1024))
    result = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_SCRIPT, str(home), str(source), str(2 * 1024 * 1024)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("STORAGE_FULL:"), result.stdout + result.stderr
    message = result.stdout.removeprefix("STORAGE_FULL:").strip()
    assert "nothing was recorded" in message and message.count(". ") == 0
    assert list((home / "blobs" / "tmp").iterdir()) == []
    digest = "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    assert not LocalBlobStore(home / "blobs").exists(digest)
    with sqlite3.connect(home / "clew.db") as connection:
        artifacts = connection.execute("SELECT name FROM artifacts").fetchall()
        blob_rows = connection.execute("SELECT COUNT(*) FROM blobs").fetchone()
    assert ("big",) not in artifacts
    assert blob_rows == (0,)


@pytest.mark.backend_independent
def test_manifest_with_escaping_paths_is_refused(blobs: LocalBlobStore, tmp_path: Path) -> None:
    target = blobs.put_bytes(b"payload")
    manifest = {"kind": "clew.manifest/v1", "files": {"../escape.txt": target.digest}}
    stored = blobs.put_bytes(json.dumps(manifest).encode())
    with pytest.raises(IntegrityError, match="outside"):
        blobs.export_directory(stored.digest, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
