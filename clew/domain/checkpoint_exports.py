"""Checkpoint export files: the signed checkpoints written to, and read back from, a file or
an object-store bucket the database's writers cannot change (S3 Object Lock).

One line of JSON per checkpoint. A store exports its own checkpoints
(``service/signed_heads.py``); a client of a server writes the checkpoints the server signed
and reads an export back itself, since a server never reads or writes where a client names.
It lives in the domain for that client, which must not import the store: like
``domain/blobs.py``, it touches files (and buckets, through ``domain/object_urls.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clew.domain.audit import Checkpoint
from clew.domain.object_urls import filesystem_for
from clew.errors import InvalidInputError, NotFoundError


def write_export(destination: str, found: list[Checkpoint], retain_days: int | None) -> int:
    """Write ``found`` where the caller says: how a client of a server exports the
    checkpoints the server signed (a server never writes where a client names)."""
    check_retention(destination, retain_days)
    text = "".join(json.dumps(asdict(checkpoint), sort_keys=True) + "\n" for checkpoint in found)
    _write(destination, text.encode(), retain_days)
    return len(found)


def check_retention(destination: str, retain_days: int | None) -> None:
    if retain_days is not None and (retain_days < 1 or not destination.startswith("s3://")):
        raise InvalidInputError(
            "retention needs an s3:// destination on a bucket with Object Lock and at least 1 day."
        )


def read_export(source: str) -> list[Checkpoint]:
    """The checkpoints an export at ``source`` holds (read by the caller: a client of a
    server reads its export itself and sends the checkpoints to the server to check)."""
    found = [_parse(line, source) for line in _read(source).splitlines() if line.strip()]
    if not found:
        raise InvalidInputError(
            f"{source} holds no checkpoints; export some with `clew audit checkpoint export`."
        )
    return found


def _parse(line: str, source: str) -> Checkpoint:
    try:
        data: dict[str, Any] = json.loads(line)
        return Checkpoint(
            int(data["seq"]),
            str(data["hash"]),
            int(data["time_ms"]),
            str(data["key_id"]),
            str(data["signature"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(
            f"{source} is not a clew checkpoint file (a line could not be read: {error}); "
            "pass a file written by `clew audit checkpoint export`."
        ) from error


def _write(destination: str, data: bytes, retain_days: int | None) -> None:
    if "://" not in destination:
        path = Path(destination).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.incoming")
        temporary.write_bytes(data)
        temporary.replace(path)
        return
    filesystem, key = filesystem_for(destination)
    if retain_days is None:
        filesystem.pipe_file(key, data)
        return
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=retain_days)
    try:
        filesystem.pipe_file(
            key, data, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
        )
    except (OSError, ValueError) as error:
        raise InvalidInputError(
            f"{destination} could not be written under Object Lock ({error}); create the bucket "
            "with Object Lock enabled, or export without --retain-days."
        ) from error


def _read(source: str) -> str:
    if "://" not in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise NotFoundError(
                f"{path} does not exist; pass the file `clew audit checkpoint export` wrote."
            )
        return path.read_text()
    filesystem, key = filesystem_for(source)
    try:
        return bytes(filesystem.cat_file(key)).decode()
    except FileNotFoundError as error:
        raise NotFoundError(
            f"{source} does not exist; pass the object `clew audit checkpoint export` wrote."
        ) from error
