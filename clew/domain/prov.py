"""A lineage walk as a W3C PROV-JSON document (https://www.w3.org/submissions/prov-json/).

clew's graph is PROV in spirit, so the mapping is direct: artifacts are ``entity``, runs are
``activity`` (with their start and end times), the users who ran them are ``agent``, and the
edges become ``used`` (ContributedTo), ``wasGeneratedBy`` (Produced), ``wasDerivedFrom``
(DerivedFrom) and ``wasInfluencedBy`` (AssociatedWith, towards an experiment or model context,
itself a ``prov:Collection`` entity). Identifiers are qualified names in the ``clew`` namespace
(``clew:run/<id>``), digests are kept as ``clew:digest``.
"""

from __future__ import annotations

from typing import Any

from clew.domain.lineage import LineageResult, Node

NAMESPACE = "https://github.com/clew-ml/clew/ns#"
_RELATIONS = {
    "ContributedTo": ("used", "prov:entity", "prov:activity"),
    "Produced": ("wasGeneratedBy", "prov:activity", "prov:entity"),
    "DerivedFrom": ("wasDerivedFrom", "prov:usedEntity", "prov:generatedEntity"),
    "AssociatedWith": ("wasInfluencedBy", "prov:influencee", "prov:influencer"),
}


def to_prov_json(result: LineageResult) -> dict[str, Any]:
    """The nodes and edges of ``result`` as one PROV-JSON document (plain JSON values)."""
    document: dict[str, Any] = {
        "prefix": {"clew": NAMESPACE, "prov": "http://www.w3.org/ns/prov#"},
        "entity": {},
        "activity": {},
        "agent": {},
    }
    nodes = {result.start.id: result.start, **result.nodes}
    for node in nodes.values():
        _add_node(document, node)
    for index, edge in enumerate(result.edges):
        relation, source_role, destination_role = _RELATIONS[edge.association]
        record = {
            source_role: _qualified(nodes[edge.source_id]),
            destination_role: _qualified(nodes[edge.destination_id]),
        }
        if relation == "wasDerivedFrom":  # PROV names it from the derived entity's side
            record = {
                "prov:generatedEntity": record["prov:generatedEntity"],
                "prov:usedEntity": record["prov:usedEntity"],
            }
        document.setdefault(relation, {})[f"_:{relation}{index}"] = record
    return document


def _qualified(node: Node) -> str:
    return f"clew:{node.kind}/{node.id}"


def _add_node(document: dict[str, Any], node: Node) -> None:
    name = _qualified(node)
    if node.kind == "run":
        facts = node.facts
        activity: dict[str, Any] = {"prov:label": node.name, "prov:type": f"clew:{node.type}"}
        if facts.get("started"):
            activity["prov:startTime"] = facts["started"]
        if facts.get("ended"):
            activity["prov:endTime"] = facts["ended"]
        if facts.get("status"):
            activity["clew:status"] = facts["status"]
        document["activity"][name] = activity
        user = facts.get("user")
        if user:
            agent = f"clew:user/{user}"
            document["agent"][agent] = {"prov:type": "prov:Person", "prov:label": user}
            associations = document.setdefault("wasAssociatedWith", {})
            associations[f"_:assoc-{node.id}"] = {"prov:activity": name, "prov:agent": agent}
        return
    entity: dict[str, Any] = {"prov:label": node.name, "clew:type": node.type}
    if node.kind == "context":
        entity["prov:type"] = "prov:Collection"
    if node.digest:
        entity["clew:digest"] = node.digest
    document["entity"][name] = entity
