"""Captured predictions on the server's store: trace, ground-truth labels, the public key.

These read captures that processes writing to the server's own store made (``clew serve`` on
that store, for instance); sending capture batches from a remote client is not served yet.
Labels are attributed to the authenticated user, who needs the contributor role on the model
of every prediction they label.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AfterValidator, Field

from clew.domain.keys import RotationRequest
from clew.domain.roles import Role
from clew.server.auth import require_role_on
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.limits import check_depth
from clew.server.routes.bodies import Body, PlainRoute
from clew.service import capture_lookup, ground_truth, signing
from clew.service.trace import trace_prediction

router = APIRouter(prefix="/api/v1", tags=["predictions"], route_class=PlainRoute)

MAX_LABELS = 10_000
PredictionId = Annotated[str, Field(min_length=1, max_length=80)]
PredictionIds = Annotated[list[PredictionId], Field(max_length=MAX_LABELS)]


def _bounded(value: list[Any]) -> list[Any]:
    return check_depth(value, "the labels")


class Labels(Body):
    prediction_ids: PredictionIds
    labels: Annotated[list[Any], Field(max_length=MAX_LABELS), AfterValidator(_bounded)]


class LabelQuery(Body):
    prediction_ids: PredictionIds


@router.get("/predictions/{prediction_id}/trace")
def trace(prediction_id: PredictionId, services: ServicesDep) -> dict[str, Any]:
    """The thread from one prediction to its model, approvals, run and data, each verified."""
    return trace_prediction(services.store, prediction_id).to_dict()


@router.post("/labels", status_code=201)
def log_labels(body: Labels, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Ground truth for captured predictions: the caller needs the contributor role on every
    model whose predictions are labelled, not merely on some model."""
    models = set(capture_lookup.models_of(services.store, body.prediction_ids).values())
    for model in sorted(models):
        require_role_on(principal, model, Role.CONTRIBUTOR)
    count = ground_truth.log_labels(
        services.store, body.prediction_ids, body.labels, principal.name
    )
    return {"count": count}


@router.post("/labels/search")
def labels(body: LabelQuery, services: ServicesDep) -> dict[str, Any]:
    return ground_truth.labels_for(services.store, body.prediction_ids)


@router.get("/public-key")
def public_key(services: ServicesDep) -> dict[str, Any]:
    """The store's Ed25519 public key (PEM), all an auditor needs to verify capture batches."""
    return {"pem": signing.store_public_key(services.store).decode()}


PublicKeyPem = Annotated[str, Field(min_length=1, max_length=1_000)]
KeyId = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class Rotation(Body):
    """A new public key and its signature over the rotation: the private key stays with the
    caller, so no replica or proxy ever sees it."""

    public_key: PublicKeyPem
    previous_key_id: KeyId | None
    proof: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


@router.get("/signing-keys")
def signing_keys(services: ServicesDep) -> list[dict[str, Any]]:
    """Every key the store has signed captures with, oldest first; the last is current."""
    return [key.to_dict() for key in signing.key_history(services.store)]


@router.post("/signing-keys", status_code=201)
def rotate_signing_key(body: Rotation, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """Make the sent key the store's current signing key (admins only, see permissions)."""
    request = RotationRequest(body.public_key, body.previous_key_id, body.proof)
    return signing.rotate(services.store, request, actor).to_dict()
