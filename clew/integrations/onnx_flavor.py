"""placeholder"""

from typing import Any

from clew.hookspecs import hookimpl


@hookimpl
def clew_flavors() -> list[Any]:
    return []
