"""Who is acting: ``CLEW_USER`` or the operating-system user on the embedded store."""

from __future__ import annotations

import functools
import getpass
import os


def current_actor() -> str:
    """Read on every call, so switching ``CLEW_USER`` switches the actor at once."""
    return os.environ.get("CLEW_USER") or _os_user()


@functools.cache
def _os_user() -> str:
    """The login name; looked up once because it cannot change while the process runs."""
    return getpass.getuser()
