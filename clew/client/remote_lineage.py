"""``RemoteLineage``: lineage walks, the feature-lineage questions and bulk ingest over HTTP,
returning the same values as ``LineageService``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clew.client.transport import Transport
from clew.domain.lineage import NODE_COLUMNS, IngestResult, LineageResult, Node, WalkedEdge

if TYPE_CHECKING:
    import pandas as pd


class RemoteLineage:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def upstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._walk("upstream", ref, max_depth, types)

    def downstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._walk("downstream", ref, max_depth, types)

    def _walk(
        self, direction: str, ref: str, max_depth: int, types: Sequence[str] | None
    ) -> LineageResult:
        params: dict[str, Any] = {"ref": ref, "max_depth": max_depth}
        if types:
            params["types"] = list(types)
        data = self._t.call("GET", f"/lineage/{direction}", params=params)
        nodes = {node["id"]: Node(**node) for node in data["nodes"]}
        edges = [WalkedEdge(*edge) for edge in data["edges"]]
        return LineageResult(
            Node(**data["start"]), data["direction"], edges, nodes, data["truncated"]
        )

    def ingest(
        self,
        artifacts: Sequence[Mapping[str, Any]],
        runs: Sequence[Mapping[str, Any]],
        actor: str,
    ) -> IngestResult:
        """One request, one transaction on the server; ``actor`` is the token's user there."""
        body = {"artifacts": list(artifacts), "runs": list(runs)}
        data = self._t.call("POST", "/lineage/ingest", json_body=body)
        return IngestResult(data["artifacts"], data["runs"], data["edges"])

    def _question(self, question: str, ref: str, max_depth: int) -> pd.DataFrame:
        params = {"ref": ref, "max_depth": max_depth}
        rows = self._t.call("GET", f"/lineage/questions/{question}", params=params)
        import pandas as pd  # on first use: connecting and walking never need it

        return pd.DataFrame(rows, columns=NODE_COLUMNS)

    def feature_groups_from_data_source(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._question("feature_groups_from_data_source", ref, max_depth)

    def data_sources_from_feature_group(self, ref: str, max_depth: int = 3) -> pd.DataFrame:
        return self._question("data_sources_from_feature_group", ref, max_depth)

    def models_from_feature_group(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._question("models_from_feature_group", ref, max_depth)

    def feature_groups_from_model(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._question("feature_groups_from_model", ref, max_depth)
