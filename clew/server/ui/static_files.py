"""The UI's own CSS and JavaScript, served from an allow-list read once at import.

Requests name a file from the list; nothing a client sends is ever joined to a filesystem
path. Each file's URL carries a digest of its content, so browsers may cache it for a year
and still pick up a new release immediately.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).parent / "static"
CONTENT_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class StaticFile:
    name: str
    body: bytes
    content_type: str
    version: str


def _load() -> dict[str, StaticFile]:
    files = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in CONTENT_TYPES:
            body = path.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            files[path.name] = StaticFile(path.name, body, CONTENT_TYPES[path.suffix], version)
    return files


FILES = _load()
