"""Where a store lives: resolving ``CLEW_URI`` / ``CLEW_HOME`` / ``connect(uri)`` to parts.

The embedded default is a directory (``~/.clew``) holding ``clew.db`` (SQLite), ``blobs/``
and ``captures/``. A SQLAlchemy URL selects another metadata database; its blobs then live in
the directory named by ``artifacts`` (default: beside a SQLite file, or ``CLEW_ARTIFACTS``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from clew.errors import InvalidInputError
from clew.store.blobs import LocalBlobStore
from clew.store.metadata import Database


def default_home() -> Path:
    return Path(os.environ.get("CLEW_HOME") or Path.home() / ".clew").expanduser()


@dataclass
class Store:
    """The opened parts of one store; services receive this and nothing global."""

    uri: str
    home: Path
    db: Database
    blobs: LocalBlobStore
    captures: Path = field(init=False)
    keys: Path = field(init=False)

    def __post_init__(self) -> None:
        self.captures = self.home / "captures"
        self.keys = self.home / "keys"

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
        return _open_database_url(text, artifacts)
    home = Path(text.removeprefix("file://")).expanduser() if text else default_home()
    home.mkdir(parents=True, exist_ok=True)
    database = Database(f"sqlite:///{home / 'clew.db'}")
    blobs = LocalBlobStore(Path(artifacts) if artifacts else home / "blobs")
    return Store(str(home), home, database, blobs)


def _open_database_url(url: str, artifacts: str | None) -> Store:
    if url.startswith("sqlite:///"):
        home = Path(url.removeprefix("sqlite:///")).expanduser().resolve().parent
    else:
        home = default_home()
    artifacts = artifacts or os.environ.get("CLEW_ARTIFACTS")
    home.mkdir(parents=True, exist_ok=True)
    blobs = LocalBlobStore(Path(artifacts) if artifacts else home / "blobs")
    return Store(url, home, Database(url), blobs)
