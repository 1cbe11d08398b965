"""The registry over HTTP: models and versions (``RemoteRegistry``), approvals as electronic
signatures (``RemoteApprovals``) and aliases (``RemotePromotion``), shaped like their services.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from clew.client.transport import Transport, path_segment, plain_json
from clew.domain import refs
from clew.domain.keys import SignedStatement
from clew.domain.records import ModelRecord, RegistryEvent, VersionRecord, from_fields
from clew.errors import AuthenticationError, InvalidInputError

SIGNING_HEADER = "X-Clew-Signing-Token"


class RemoteRegistry:
    """``RegistryService`` over HTTP (``actor`` is ignored: the server uses the token's user)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create_model(
        self,
        name: str,
        actor: str,
        *,
        owner: str | None = None,
        description: str = "",
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        body = {
            "name": name,
            "owner": owner,
            "description": description,
            "risk_tier": risk_tier,
            "tags": plain_json(dict(tags or {})),
        }
        return self._t.record(ModelRecord, "POST", "/models", json_body=body)

    def get_model(self, name: str) -> ModelRecord:
        return self._t.record(ModelRecord, "GET", f"/models/{path_segment(name)}")

    def list_models(self) -> list[ModelRecord]:
        return self._t.records(ModelRecord, "GET", "/models")

    def register(
        self,
        name: str,
        source: str,
        actor: str,
        *,
        description: str = "",
        signature: Mapping[str, Any] | None = None,
        owner: str | None = None,
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        if signature is not None and not isinstance(signature, Mapping):
            raise InvalidInputError("signature must be a mapping such as {'inputs': [...]}.")
        body = {
            "source": source,
            "description": description,
            "signature": None if signature is None else plain_json(dict(signature)),
            "owner": owner,
            "risk_tier": risk_tier,
            "tags": plain_json(dict(tags or {})),
        }
        refs.validate_name(name, "model name")  # a "/" in it would change the route
        path = f"/models/{path_segment(name)}/versions"
        return self._t.record(VersionRecord, "POST", path, json_body=body)

    def versions(self, name: str) -> list[VersionRecord]:
        return self._t.records(VersionRecord, "GET", f"/models/{path_segment(name)}/versions")

    def resolve(self, ref: str) -> VersionRecord:
        return self._t.record(VersionRecord, "GET", "/resolve", params={"ref": ref})


class RemoteApprovals:
    """``ApprovalService`` over HTTP. Approve, reject and revoke are electronic signatures: they
    carry the user's signing token, and the server checks it belongs to the token's user."""

    def __init__(self, transport: Transport, registry: RemoteRegistry, signing: str | None) -> None:
        self._t = transport
        self._registry = registry
        self._signing = signing

    def loadable(self, ref: str) -> VersionRecord:
        return self._t.record(VersionRecord, "GET", "/loadable", params={"ref": ref})

    def approve(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str = "approved",
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        body = {"comment": comment, "evidence": list(evidence), "meaning": meaning}
        return self._signed(ref, "approve", {**body, "signed": signed_wire(signed)})

    def reject(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        body = {"comment": comment, "evidence": list(evidence), "signed": signed_wire(signed)}
        return self._signed(ref, "reject", body)

    def revoke(
        self, ref: str, actor: str, comment: str, *, signed: SignedStatement | None = None
    ) -> RegistryEvent:
        return self._signed(ref, "revoke", {"comment": comment, "signed": signed_wire(signed)})

    def statement(
        self,
        ref: str,
        decision: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """The statement the server prepares, with its own time, for this user to sign."""
        body = {
            "decision": decision,
            "comment": comment,
            "evidence": list(evidence),
            "meaning": meaning,
            "alias": alias,
        }
        statement: dict[str, Any] = self._t.call(
            "POST", f"{self._path(ref)}/statement", json_body=body
        )
        return statement

    def archive(self, ref: str, actor: str, comment: str) -> RegistryEvent:
        path = f"{self._path(ref)}/archive"
        return self._t.record(RegistryEvent, "POST", path, json_body={"comment": comment})

    def _signed(self, ref: str, action: str, body: dict[str, Any]) -> RegistryEvent:
        if not self._signing:
            raise AuthenticationError(
                f"to {action} on a clew server you sign with your signing token; pass "
                "clew.connect(uri, token=..., signing_token=...) or set CLEW_SIGNING_TOKEN."
            )
        path = f"{self._path(ref)}/{action}"
        headers = {SIGNING_HEADER: self._signing}
        return self._t.record(RegistryEvent, "POST", path, json_body=body, headers=headers)

    def _path(self, ref: str) -> str:
        """``/models/churn/versions/3``; any other model ref is resolved by the server first."""
        parsed = refs.parse(ref)
        if not isinstance(parsed, refs.ModelVersionRef):
            version = self._registry.resolve(ref)
            parsed = refs.ModelVersionRef(version.name, version.version)
        return f"/models/{path_segment(parsed.name)}/versions/{parsed.version}"


class RemotePromotion:
    """``PromotionService`` over HTTP."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def promote(
        self,
        ref: str,
        alias: str,
        actor: str,
        comment: str = "",
        new_alias: bool = False,
        *,
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        version = self._registry.resolve(ref)
        path = f"/models/{path_segment(version.name)}/aliases/{path_segment(alias)}"
        body = {
            "version": version.version,
            "comment": comment,
            "new_alias": new_alias,
            "signed": signed_wire(signed),
        }
        return self._t.record(RegistryEvent, "POST", path, json_body=body)

    def rollback(self, name: str, alias: str, actor: str, comment: str = "") -> RegistryEvent:
        path = f"/models/{path_segment(name)}/aliases/{path_segment(alias)}/rollback"
        return self._t.record(RegistryEvent, "POST", path, json_body={"comment": comment})

    def alias_history(self, name: str, alias: str | None = None) -> list[RegistryEvent]:
        params: dict[str, Any] = {"aliases_only": "true"}
        if alias is not None:
            params["alias"] = alias
        path = f"/models/{path_segment(name)}/history"
        return self._t.records(RegistryEvent, "GET", path, params=params)

    def model_history(self, name: str) -> list[RegistryEvent]:
        return self._t.records(RegistryEvent, "GET", f"/models/{path_segment(name)}/history")

    def alias_at(self, name: str, alias: str, when_ms: int) -> VersionRecord | None:
        path = f"/models/{path_segment(name)}/aliases/{path_segment(alias)}/at"
        found = self._t.call("GET", path, params={"when_ms": max(when_ms, 0)})
        return None if found is None else from_fields(VersionRecord, found)

    def model_overview(self) -> list[dict[str, Any]]:
        overview: list[dict[str, Any]] = self._t.call("GET", "/models-overview")
        return overview

    def version_overview(self, name: str) -> list[dict[str, Any]]:
        path = f"/models/{path_segment(name)}/versions-overview"
        overview: list[dict[str, Any]] = self._t.call("GET", path)
        return overview

    def version_status(self, ref: str) -> dict[str, Any]:
        status: dict[str, Any] = self._t.call("GET", "/version-status", params={"ref": ref})
        return status


def signed_wire(signed: SignedStatement | None) -> dict[str, Any] | None:
    return None if signed is None else dataclasses.asdict(signed)
