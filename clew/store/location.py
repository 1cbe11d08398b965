"""Where a store lives: resolving ``CLEW_URI`` / ``CLEW_HOME`` / ``connect(uri)`` to parts.

The embedded default is a directory (``~/.clew``) holding ``clew.db`` (SQLite), ``blobs/``
and ``captures/``. A database URL (``sqlite:///...``, ``postgresql+psycopg://...``) selects
another metadata database; its blobs then live where ``artifacts`` (or ``CLEW_ARTIFACTS``)
says: a directory, or an object store URL such as ``s3://bucket/prefix``. Without one, blobs
sit beside a SQLite file, or under ``CLEW_HOME`` for a server database. Capture batches go
where the blobs go (``<prefix>/captures/`` in an object store).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from clew.errors import InvalidInputError
from clew.store.blobs import LocalBlobStore
from clew.store.captures import CaptureFiles, open_files
from clew.store.metadata import Database
from clew.store.object_store import ObjectBlobStore

BlobStore = LocalBlobStore | ObjectBlobStore
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_ACCEPTED = (
    "a directory, sqlite:///<path>, postgresql+psycopg://<user>@<host>:<port>/<database> "
    "or http(s)://<server>"
)


def default_home() -> Path:
    return Path(os.environ.get("CLEW_HOME") or Path.home() / ".clew").expanduser()


@dataclass
class Store:
    """The opened parts of one store; services receive this and nothing global.

    ``uri`` never contains a password: it is shown to users and written to logs.
    """

    uri: str
    home: Path
    db: Database
    blobs: BlobStore
    captures: Path = field(init=False)
    capture_files: CaptureFiles = field(init=False)
    keys: Path = field(init=False)
    uploads: Path = field(init=False)

    def __post_init__(self) -> None:
        self.captures = self.home / "captures"
        self.capture_files = open_files(self.blobs, self.captures)
        self.keys = self.home / "keys"
        self.uploads = self.home / "uploads"

    def scratch_directories(self) -> list[Path]:
        """Where a write killed half-way can leave a temp file: the server's upload spool
        and a local blob directory's staging area (``clew gc`` sweeps old ones)."""
        staging = [self.blobs.staging] if isinstance(self.blobs, LocalBlobStore) else []
        return [self.uploads, *staging]

    def close(self) -> None:
        self.db.close()


def open_store(uri: str | os.PathLike[str] | None = None, artifacts: str | None = None) -> Store:
    """Open (creating if needed) the store named by ``uri``, ``CLEW_URI`` or ``CLEW_HOME``."""
    text = os.fspath(uri) if uri is not None else os.environ.get("CLEW_URI") or ""
    if text.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{text} is a server address; the HTTP client is not available in this build, "
            "so pass a directory or a database URL."
        )
    if "://" in text and not text.startswith("file://"):
        return _open_database_url(text, artifacts or os.environ.get("CLEW_ARTIFACTS"))
    home = Path(text.removeprefix("file://")).expanduser() if text else default_home()
    home.mkdir(parents=True, exist_ok=True)
    database = Database(f"sqlite:///{home / 'clew.db'}")
    return Store(str(home), home, database, open_blobs(artifacts, home / "blobs"))


def open_blobs(artifacts: str | None, default: Path) -> BlobStore:
    """A directory (or ``file://`` URL) gives local blobs; any other URL an object store."""
    if artifacts and "://" in artifacts and not artifacts.startswith("file://"):
        return ObjectBlobStore.from_url(artifacts)
    if artifacts:
        return LocalBlobStore(Path(artifacts.removeprefix("file://")).expanduser())
    return LocalBlobStore(default)


def database_url(url: str) -> str:
    """Normalise a metadata URL: PostgreSQL always goes through psycopg 3."""
    if url.startswith("sqlite:///"):
        return url
    if not url.startswith(_POSTGRES_SCHEMES):
        scheme = url.split("://", 1)[0]
        raise InvalidInputError(f"{scheme}:// is not a clew store; use {_ACCEPTED}.")
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise InvalidInputError(f"{redact(url)} is not a valid database URL; {error}.") from error
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and ``Store.uri``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://***"


def _open_database_url(url: str, artifacts: str | None) -> Store:
    url = database_url(url)
    if url.startswith("sqlite:///"):
        home = Path(url.removeprefix("sqlite:///")).expanduser().resolve().parent
    else:
        _require_driver()
        home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    blobs = open_blobs(artifacts, home / "blobs")
    return Store(redact(url), home, Database(url), blobs)


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        raise InvalidInputError(
            "PostgreSQL needs the psycopg driver; install it with pip install 'clew[postgres]'."
        ) from error
