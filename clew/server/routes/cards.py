"""Model cards of versions: read (facts and edited fields), edit, import a SageMaker card."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, Name, PlainRoute, Text

router = APIRouter(prefix="/api/v1", tags=["cards"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]


class EditCard(Body):
    changes: JsonObject
    comment: Text = ""


class ImportCard(Body):
    document: JsonObject
    comment: Text = ""


@router.get("/models/{name}/versions/{version}/card")
def card(name: Name, version: Version, services: ServicesDep) -> dict[str, Any]:
    return services.cards.card(f"{name}/{version}").to_dict()


@router.post("/models/{name}/versions/{version}/card")
def edit_card(
    name: Name, version: Version, body: EditCard, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    edited = services.cards.edit(f"{name}/{version}", actor, body.changes, body.comment)
    return edited.to_dict()


@router.post("/models/{name}/versions/{version}/card/sagemaker")
def import_card(
    name: Name, version: Version, body: ImportCard, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    found = services.cards.import_sagemaker(f"{name}/{version}", actor, body.document, body.comment)
    return found.to_dict()
