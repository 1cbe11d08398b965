"""clew's extension points, all in one place (pluggy hook specifications).

A plugin is a module with ``@hookimpl`` functions, registered under the ``clew`` entry-point
group in its package metadata. clew's own flavors are registered the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clew.integrations.flavors import Flavor

hookspec = pluggy.HookspecMarker("clew")
hookimpl = pluggy.HookimplMarker("clew")


@hookspec
def clew_flavors() -> list[Flavor]:  # type: ignore[empty-body]
    """Model flavors this plugin provides: how to save and load one kind of model."""
