"""Registry and governance methods of ``Client``: register, approve, promote, load.

``GovernanceMixin`` is mixed into ``Client``; the module functions below call the default
client and are re-exported by ``clew``.
"""

from __future__ import annotations

__all__: list[str] = []


class GovernanceMixin:
    """Model registry, approvals, policy and promotion (see docs/governance.md)."""
