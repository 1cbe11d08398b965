"""The lineage explorer: any node's upstream and downstream, drawn by ``static/graph.js``.

The page is a shell; the browser fetches ``graph.json`` for the chosen ref, depth and
direction, and again for a node the user expands, merging the answers. Each node carries the
link to its own page, decided here so the JavaScript holds no knowledge of URLs.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse, Response

from clew.domain import refs
from clew.errors import ClewError
from clew.server.ui.pages import Offset, Page

DIRECTIONS = ("both", "upstream", "downstream")
DEPTHS = (1, 2, 3, 5, 10, 20)
DEFAULT_DEPTH = 5


def add_routes(router: APIRouter, page: Any, action: Any) -> None:
    @router.get("/lineage", name="ui.lineage")
    def explorer(
        current: Annotated[Page, Depends(page)],
        ref: str = "",
        depth: Offset = DEFAULT_DEPTH,
        direction: str = "both",
    ) -> Response:
        ref = ref.strip()
        if ref.startswith("prediction:"):
            return current.redirect("ui.prediction", prediction_id=ref.removeprefix("prediction:"))
        error = None
        if ref:
            try:
                refs.parse(ref)
            except ClewError as problem:
                error = str(problem)
        return current.render(
            "lineage.html",
            ref=ref,
            depth=_depth(depth),
            direction=direction if direction in DIRECTIONS else "both",
            depths=DEPTHS,
            directions=DIRECTIONS,
            error=error,
        )

    @router.get("/lineage/graph.json", name="ui.lineage_graph")
    def graph_json(
        current: Annotated[Page, Depends(page)],
        ref: str = "",
        depth: Offset = DEFAULT_DEPTH,
        direction: str = "both",
    ) -> Response:
        try:
            payload = graph_payload(current, ref.strip(), _depth(depth), direction)
        except ClewError as problem:
            return JSONResponse(
                {"error": str(problem), "code": problem.code}, status_code=problem.http_status
            )
        return JSONResponse(payload)


def _depth(depth: int) -> int:
    return min(max(depth, 1), max(DEPTHS))


def graph_payload(current: Page, ref: str, depth: int, direction: str) -> dict[str, Any]:
    """Nodes and edges within ``depth`` hops of ``ref``, merged across both directions."""
    service = current.services.lineage
    walks = []
    if direction in ("both", "upstream"):
        walks.append(service.upstream(ref, depth))
    if direction in ("both", "downstream"):
        walks.append(service.downstream(ref, depth))
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str, str], dict[str, str]] = {}
    for walk in walks:
        found = walk.to_dict()
        for node in found["nodes"]:
            nodes[node["id"]] = {
                **node,
                "href": node_href(current, node),
                "expand_ref": expand_ref(node),
            }
        for edge in found["edges"]:
            key = (edge["source_id"], edge["destination_id"], edge["association"])
            edges[key] = {"source": key[0], "target": key[1], "association": key[2]}
    start = walks[0].start.id if walks else None
    return {
        "start": start,
        "nodes": list(nodes.values()),
        "edges": list(edges.values()),
        "truncated": any(walk.truncated for walk in walks),
    }


def expand_ref(node: dict[str, Any]) -> str | None:
    """A ref naming exactly this node (by id where there is one), or None if none does."""
    if node["kind"] == "run":
        return f"run:{node['id']}"
    if node["kind"] == "artifact":
        return f"artifact:{node['id']}"
    if node["type"] in refs.CONTEXT_TYPES:
        return f"{node['type']}:{node['name']}"
    return None


def node_href(current: Page, node: dict[str, Any]) -> str:
    """The page that shows a lineage node in full."""
    if node["kind"] == "run":
        return current.url("ui.run", run_id=node["id"])
    if node["kind"] == "artifact":
        return current.url("ui.artifact", artifact_id=node["id"])
    if node["type"] == "model":
        return current.url("ui.model", name=node["name"])
    if node["type"] == "experiment":
        return current.url("ui.experiments", {"experiment": node["name"]})
    return current.url("ui.lineage", {"ref": f"{node['type']}:{node['name']}"})
