"""Who is acting: ``CLEW_USER`` or the operating-system user on the embedded store."""

from __future__ import annotations

import getpass
import os


def current_actor() -> str:
    return os.environ.get("CLEW_USER") or getpass.getuser()
