"""Shadow deployments over HTTP: recording pairs and reading the report."""

from __future__ import annotations

from collections.abc import Sequence

from clew.client.transport import Transport
from clew.domain.deployments import ShadowPair, ShadowReport
from clew.domain.quality import QualitySpec


class RemoteShadows:
    """``ShadowService`` over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def record_pairs(self, deployment_id: str, pairs: Sequence[ShadowPair], actor: str) -> int:
        body = {"pairs": [pair.to_wire() for pair in pairs]}
        answer = self._t.call("POST", f"/shadows/{deployment_id}/pairs", json_body=body)
        recorded: int = answer["recorded"]
        return recorded

    def report(self, deployment_id: str, spec: QualitySpec | None = None) -> ShadowReport:
        body = {"quality": spec.to_dict() if spec is not None else None}
        answer = self._t.call("POST", f"/shadows/{deployment_id}/report", json_body=body)
        return ShadowReport.from_dict(answer)
