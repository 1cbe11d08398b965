"""Where a store lives: resolving ``CLEW_URI`` / ``CLEW_HOME`` / ``connect(uri)`` to parts.

The embedded default is a directory (``~/.clew``) holding ``clew.db`` (SQLite), ``blobs/``
and ``captures/``. A database URL (``sqlite:///...``, ``postgresql+psycopg://...``) selects
another metadata database; its blobs then live where ``artifacts`` (or ``CLEW_ARTIFACTS``)
says: a directory, or an object store URL such as ``s3://bucket/prefix``. Without one, blobs
sit beside a SQLite file, or under ``CLEW_HOME`` for a server database. Capture batches go
where the blobs go (``<prefix>/captures/`` in an object store).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from clew.errors import InvalidInputError, NotFoundError, StoreMissingError
from clew.extras import require_extra
from clew.store.blobs import BlobBackend, LocalBlobStore
from clew.store.faults import file_faults
from clew.store.metadata import Database
from clew.store.object_store import ObjectBlobStore

if TYPE_CHECKING:
    from clew.store.captures import CaptureFiles

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
    blobs: BlobBackend
    captures: Path = field(init=False)
    keys: Path = field(init=False)
    uploads: Path = field(init=False)

    def __post_init__(self) -> None:
        self.captures = self.home / "captures"
        self.keys = self.home / "keys"
        self.uploads = self.home / "uploads"

    @functools.cached_property
    def capture_files(self) -> CaptureFiles:
        """Opened on first use: capture files bring pyarrow, which most commands never need."""
        from clew.store.captures import open_files

        return open_files(self.blobs, self.captures)

    def scratch_directories(self) -> list[Path]:
        """Where a write killed half-way can leave a temp file: the server's upload spool
        and a local blob directory's staging area (``clew gc`` sweeps old ones)."""
        return [self.uploads, *self.blobs.scratch_directories()]

    def close(self) -> None:
        self.db.close()


def open_store(
    uri: str | os.PathLike[str] | None = None,
    artifacts: str | None = None,
    *,
    create: bool = False,
    existing: bool = False,
) -> Store:
    """Open the store named by ``uri``, ``CLEW_URI`` or ``CLEW_HOME``.

    A new store is created on first use of an empty or new home or database; one whose blobs,
    capture files or keys are there without its database is refused (``StoreMissingError``)
    unless ``create`` asks for an empty database beside them on purpose. ``existing`` is for
    commands that operate on a store (``clew db upgrade``, ``clew backup``): there a path or
    database holding no store is a typo, refused unless ``create`` asks for a new one.
    """
    must_exist = existing and not create
    text = os.fspath(uri) if uri is not None else os.environ.get("CLEW_URI") or ""
    if text.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{text} is a clew server and this works on the store itself; run it on the "
            "server host with --uri (or CLEW_URI) naming the store's directory or database."
        )
    if "://" in text and not text.startswith("file://"):
        return _open_database_url(
            text, artifacts or os.environ.get("CLEW_ARTIFACTS"), create, must_exist
        )
    home = Path(text.removeprefix("file://")).expanduser() if text else default_home()
    if must_exist:
        _refuse_no_store(home / "clew.db")
    with file_faults(home, "create the store directory"):
        home.mkdir(parents=True, exist_ok=True)
    blobs = open_blobs(artifacts, home / "blobs")
    return _open(str(home), home, f"sqlite:///{home / 'clew.db'}", blobs, create)


def open_blobs(artifacts: str | None, default: Path) -> BlobBackend:
    """A directory (or ``file://`` URL) gives local blobs; any other URL an object store."""
    if artifacts and "://" in artifacts and not artifacts.startswith("file://"):
        if artifacts.startswith("s3://"):
            require_extra("s3", f"the object store {artifacts.split('?', 1)[0]}")
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


def _open_database_url(url: str, artifacts: str | None, create: bool, must_exist: bool) -> Store:
    url = database_url(url)
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///")).expanduser().resolve()
        if must_exist:
            _refuse_no_store(database)
        home = database.parent
    else:
        require_extra("postgres", "a PostgreSQL store")
        home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    blobs = open_blobs(artifacts, home / "blobs")
    return _open(redact(url), home, url, blobs, create, must_exist)


def _refuse_no_store(database: Path) -> None:
    """A command that needs a store was pointed at a SQLite file that is not there, in a
    directory holding no store's data either (with data, the database was lost instead:
    ``_refuse_lost_database`` says so)."""
    leftovers = (database.parent / part for part in ("blobs", "captures", "keys"))
    if _no_file(database) and not any(_holds_files(path) for path in leftovers):
        raise NotFoundError(
            f"there is no clew store at {database.parent} ({database.name} is missing or "
            "empty); check the path, or pass --create to start a new store there."
        )


def _refuse_no_schema(shown: str) -> None:
    """A command that needs a store was pointed at a server database without clew's schema."""
    raise NotFoundError(
        f"the database {shown} holds no clew store (no schema); check the URL, or pass "
        "--create to create a new store in it."
    )


def _open(
    shown: str, home: Path, url: str, blobs: BlobBackend, create: bool, must_exist: bool = False
) -> Store:
    """The store's parts, refusing to start an empty database over a lost one's data.

    Checked twice, data first and the database's emptiness second, so a process that finds
    the data another one wrote after creating its schema also finds that schema: SQLite before
    the file is opened (opening would create it), any database again when it has no schema.
    """
    if create:
        return Store(shown, home, Database(url), blobs)
    sqlite_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if sqlite_file is not None:
        _refuse_lost_database(shown, home, blobs, sqlite_file, lambda: _no_file(sqlite_file))
    database = Database(
        url,
        before_create=(
            (lambda _opened: _refuse_no_schema(shown))
            if must_exist
            else lambda opened: _refuse_lost_database(
                shown, home, blobs, sqlite_file, lambda: opened.schema_revision() is None
            )
        ),
    )
    return Store(shown, home, database, blobs)


def _refuse_lost_database(
    shown: str,
    home: Path,
    blobs: BlobBackend,
    sqlite_file: Path | None,
    database_is_new: Callable[[], bool],
) -> None:
    found = _stored_data(home, blobs, own_home=sqlite_file is not None)
    if not found or not database_is_new():
        return
    where = (
        f"its database {sqlite_file} is missing or empty"
        if sqlite_file
        else (f"the database {shown} is empty")
    )
    raise StoreMissingError(
        f"the store holds {' and '.join(found)} but {where}; restore the store from a backup "
        f"(clew restore ARCHIVE --uri NEW_STORE) or point clew at the database that recorded "
        f"them, or run clew db upgrade --create (create=True) to start an empty database "
        f"beside them on purpose."
    )


def _stored_data(home: Path, blobs: BlobBackend, own_home: bool) -> list[str]:
    """What a store's database would describe, found without it (empty: a new store).

    ``keys/`` counts only beside a SQLite file: a PostgreSQL store's home is the shared
    ``CLEW_HOME``, which may belong to an embedded store as well.
    """
    if not blobs.is_empty():
        return [f"blobs ({blobs.location})"]
    found = []
    captures = home / "captures"
    from clew.store.captures import open_files

    if isinstance(blobs, LocalBlobStore) and open_files(blobs, captures).has_files():
        found.append(f"capture files ({captures})")
    keys = home / "keys"
    if own_home and keys.is_dir() and any(path.is_file() for path in keys.iterdir()):
        found.append(f"keys ({keys})")
    return found


def _holds_files(directory: Path) -> bool:
    return any(path.is_file() for path in directory.rglob("*"))


def _no_file(path: Path) -> bool:
    """No database file, or an empty one with no WAL beside it (a new database's first
    commits sit in its WAL until a checkpoint copies them into the file)."""
    wal = path.with_name(path.name + "-wal")
    return not path.exists() or (
        path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)
    )
