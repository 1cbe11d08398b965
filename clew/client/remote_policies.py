"""``RemotePolicies``: the governance policy over HTTP, parsed here into the same
``StoredPolicy`` an embedded store returns."""

from __future__ import annotations

from clew import errors
from clew.client.transport import Transport
from clew.domain.policy import StoredPolicy, parse


class RemotePolicies:
    """``PolicyService`` over HTTP; the policy comes back as the same ``StoredPolicy``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def set_policy(self, document: str, actor: str) -> int:
        if not isinstance(document, str):
            raise errors.PolicySyntaxError(
                f"the policy must be YAML text, not {type(document).__name__}."
            )
        answer = self._t.call("POST", "/policy", json_body={"document": document})
        version: int = answer["version"]
        return version

    def get_policy(self) -> StoredPolicy:
        data = self._t.call("GET", "/policy")
        return StoredPolicy(
            data["version"],
            data["digest"],
            data["document"],
            data["created_ms"],
            data["set_by"],
            parse(data["document"]),
        )
