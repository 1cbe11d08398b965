"""Lineage as values: the graph's nodes and walked edges, a walk's result, an ingest's result.

The service walks the store (``service/graph.py``, ``service/lineage.py``) and a remote client
rebuilds the same values from the server's JSON, so both backends return these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from clew.domain import digests

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    type: str
    name: str
    digest: str | None = None
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # The key facts people ask about this node (see ``node_facts``), filled in by lineage walks.
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ref(self) -> str:
        if self.kind == "run":
            return f"run:{self.id}"
        if self.kind == "context":
            return f"{self.type}:{self.name}"
        return f"{self.type}:{self.name}@{digests.short(self.digest or '', 12)}"


class WalkedEdge(NamedTuple):
    """One edge a walk crossed, at the depth it was first reached (a tuple: a 20-hop walk
    makes thousands, and a frozen dataclass costs several times as much to build)."""

    source_id: str
    association: str
    destination_id: str
    depth: int


EDGE_COLUMNS = [
    "source",
    "source_type",
    "association",
    "destination",
    "destination_type",
    "depth",
    "source_name",
    "destination_name",
    "source_id",
    "destination_id",
    "source_facts",
    "destination_facts",
]


NODE_COLUMNS = ["name", "type", "ref", "id", "digest", "depth", "properties"]


@dataclass
class LineageResult:
    """Edges found by a walk, with the nodes they touch; converts to pandas or plain dicts."""

    start: Node
    direction: str
    edges: list[WalkedEdge]
    nodes: dict[str, Node]
    truncated: bool = False
    _rows: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    def rows(self) -> list[dict[str, Any]]:
        if not self._rows:
            for edge in self.edges:
                source, destination = self.nodes[edge.source_id], self.nodes[edge.destination_id]
                self._rows.append(
                    {
                        "source": source.ref,
                        "source_type": source.type,
                        "association": edge.association,
                        "destination": destination.ref,
                        "destination_type": destination.type,
                        "depth": edge.depth,
                        "source_name": source.name,
                        "destination_name": destination.name,
                        "source_id": source.id,
                        "destination_id": destination.id,
                        "source_facts": source.facts,
                        "destination_facts": destination.facts,
                    }
                )
        return self._rows

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd  # on first use: a walk itself never needs it

        return pd.DataFrame(self.rows(), columns=EDGE_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": _node_dict(self.start),
            "direction": self.direction,
            "truncated": self.truncated,
            "nodes": [_node_dict(node) for node in self.nodes.values()],
            "edges": self.rows(),
        }

    def far_nodes(self, node_type: str) -> pd.DataFrame:
        """Distinct nodes of one type at the far end of the walk, nearest first."""
        depth_of: dict[str, int] = {}
        for edge in self.edges:
            far = edge.source_id if self.direction == "upstream" else edge.destination_id
            depth_of.setdefault(far, edge.depth)
        found = [
            {
                "name": n.name,
                "type": n.type,
                "ref": n.ref,
                "id": n.id,
                "digest": n.digest,
                "depth": depth_of[n.id],
                "properties": n.properties,
            }
            for n in self.nodes.values()
            if n.id in depth_of and n.type == node_type and n.id != self.start.id
        ]
        found.sort(key=lambda row: (row["depth"], row["name"]))
        import pandas as pd  # on first use: a walk itself never needs it

        return pd.DataFrame(found, columns=NODE_COLUMNS)


def _node_dict(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "kind": node.kind,
        "type": node.type,
        "name": node.name,
        "ref": node.ref,
        "digest": node.digest,
        "facts": node.facts,
    }


@dataclass(frozen=True)
class IngestResult:
    """The id of each item, by the key the caller gave it, and how many edges were written."""

    artifacts: dict[str, str]
    runs: dict[str, str]
    edges: int

    def to_dict(self) -> dict[str, Any]:
        return {"artifacts": self.artifacts, "runs": self.runs, "edges": self.edges}
