"""Account roles: each can do everything the roles below it can.

Accounts (``service/accounts.py``) grant them and a policy (``domain/policy.py``) may name
them, so the value lives below both.
"""

from __future__ import annotations

from enum import IntEnum

from clew.errors import InvalidInputError


class Role(IntEnum):
    """Each role can do everything the roles below it can."""

    VIEWER = 1
    CONTRIBUTOR = 2
    APPROVER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[str(text).upper()]
        except KeyError:
            names = ", ".join(role.name.lower() for role in cls)
            raise InvalidInputError(f"role {text!r} is unknown; use one of: {names}.") from None

    @property
    def label(self) -> str:
        return self.name.lower()
