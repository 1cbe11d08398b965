"""Storage faults as one sentence: which file, what went wrong and what to do about it.

The operating system, SQLite and pyarrow report a fault in their own words and mostly without
the file (``unable to open database file``, ``Parquet magic bytes not found in footer``);
raised as they are, they reach the user as a traceback. The store's readers and writers turn
them into ``StorageFaultError`` (``StorageFullError`` for a full disk) here, so the embedded
store, the CLI and the server (a 5xx with code ``storage_fault``) all say the same sentence.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Iterator
from pathlib import Path

from clew.errors import ClewError, StorageFaultError, StorageFullError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_ACCESS = {errno.EACCES, errno.EPERM}
# SQLite's primary result codes for a file it may not open or write, or a failing disk.
_SQLITE_FAULTS = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")
_SQLITE_FAULT_TEXTS = ("readonly database", "unable to open database file", "disk I/O error")


def os_fault(path: Path | str, error: OSError, doing: str) -> ClewError:
    """The sentence for an operating-system error met while ``doing`` (e.g. "write") ``path``."""
    reason = error.strerror or type(error).__name__
    if error.errno in NO_SPACE:
        return StorageFullError(
            f"no space left while trying to {doing} {path}; nothing was recorded; free some "
            "space and retry."
        )
    return StorageFaultError(f"clew could not {doing} {path} ({reason}); {_fix(error, path)}.")


def _fix(error: OSError, path: Path | str) -> str:
    if error.errno in _NO_ACCESS:
        return (
            f"give the user running clew read and write access to {path} and its directory, "
            "or run clew as the store's owner"
        )
    if error.errno == errno.EROFS:
        return "the file system is mounted read-only: remount it read-write or move the store"
    if error.errno == errno.EIO:
        return "the disk failed: check it, then run clew verify and restore from a backup"
    return "check the file and its disk, then retry"


@contextlib.contextmanager
def file_faults(path: Path | str, doing: str) -> Iterator[None]:
    """Operating-system errors inside become ``os_fault``; a missing file is left to the
    caller, which knows whether that means "not found" or "changed while reading"."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        raise os_fault(path, error, doing) from error


@contextlib.contextmanager
def capture_file_faults(location: str) -> Iterator[None]:
    """A capture file that can not be read: no access, a failing disk, or damaged bytes that
    pyarrow can not parse (a truncated file has no Parquet footer)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        raise os_fault(location, error, "read the capture file") from error
    except Exception as error:
        if not _arrow_error(error):
            raise
        raise StorageFaultError(
            f"the capture file {location} is damaged or truncated ({_first_line(error)}); run "
            "clew audit verify to list every damaged batch, then restore the store's captures "
            "from a backup."
        ) from error


def _arrow_error(error: Exception) -> bool:
    """Whether pyarrow raised ``error``: looked up, not imported, so opening a store does not
    load pyarrow (if it is not loaded, it raised nothing)."""
    arrow = sys.modules.get("pyarrow")
    return arrow is not None and isinstance(error, arrow.ArrowException)


def sqlite_fault(database: str, error: BaseException | None) -> StorageFaultError | None:
    """The sentence for SQLite failing to open or write the database file ``database`` (not
    for a locked or damaged one, which have their own); None for any other error."""
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error)
    if not name.startswith(_SQLITE_FAULTS) and not any(t in text for t in _SQLITE_FAULT_TEXTS):
        return None
    directory = Path(database).parent
    if "I/O" in text or name.startswith("SQLITE_IOERR"):
        fix = "the disk failed: check it, then run clew verify and restore from a backup"
    else:
        fix = (
            f"give the user running clew write access to that file and to {directory} (SQLite "
            "creates clew.db-wal and clew.db-shm beside it, even to read), or run clew as the "
            "store's owner"
        )
    return StorageFaultError(
        f"clew could not open or write the database {database} ({_first_line(error)}); {fix}."
    )


def _first_line(error: BaseException | None) -> str:
    """The library's reason, cut to its first sentence so clew's stays one sentence."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(". ", 1)[0].rstrip(".")
