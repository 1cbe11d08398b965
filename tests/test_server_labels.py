"""Labelling is scoped to the labelled predictions' model (issue 14): a contributor on one model
may not attach ground truth to another model's predictions.

A real ``clew server`` on its own store (SQLite, or PostgreSQL + S3 under
``CLEW_TEST_BACKEND=postgres-s3``); two models captured through it, two users over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from capture_support import iris
from server_fixtures import RunningServer
from sklearn.linear_model import LogisticRegression

import clew
from clew.service import accounts, ground_truth

pytest_plugins = ("server_fixtures",)


def _captured(client: clew.Client, name: str) -> list[str]:
    """Register a model called ``name`` through ``client``, predict five rows and flush: the
    prediction ids the server captured for it."""
    features, target = iris()
    with client.start_run("labels", f"train-{name}") as run:
        model = LogisticRegression(max_iter=500).fit(features, target)
        artifact = run.log_model(model, name=f"{name}-lr")
    client.register_model(artifact, name)
    _, prediction_ids = client.load_model(f"{name}/1").predict_with_ids(features[:5])
    assert client.flush_captures()["pending"] == 0
    return list(prediction_ids)


@pytest.fixture
def captured(server: RunningServer) -> Iterator[dict[str, list[str]]]:
    """Predictions of two models, ``churn`` and ``fraud``, captured by the contributor alice."""
    client = clew.connect(server.url, token=server.user("alice"))
    yield {name: _captured(client, name) for name in ("churn", "fraud")}
    client.close()


def _label(server: RunningServer, user: str, prediction_ids: list[str]) -> httpx.Response:
    with server.http(server.tokens[user]) as http:
        return http.post(
            "/api/v1/labels",
            json={"prediction_ids": prediction_ids, "labels": [1] * len(prediction_ids)},
        )


def test_a_contributor_on_one_model_labels_only_that_models_predictions(
    server: RunningServer, captured: dict[str, list[str]]
) -> None:
    server.user("sam", "viewer")
    accounts.grant(server.store, "sam", "churn", "contributor", actor="admin")
    own = _label(server, "sam", captured["churn"][:2])
    other = _label(server, "sam", captured["fraud"][:1])
    mixed = _label(server, "sam", [captured["churn"][2], captured["fraud"][1]])
    assert own.status_code == 201 and own.json() == {"count": 2}
    for refused in (other, mixed):
        assert refused.status_code == 403
        assert refused.json()["message"] == (
            "user 'sam' is a viewer on model 'fraud' and this needs the contributor role; ask "
            "an admin for access."
        )
    labelled = ground_truth.labels_for(server.store, captured["churn"] + captured["fraud"])
    assert labelled == {pid: 1 for pid in captured["churn"][:2]}  # nothing of the refused writes


def test_a_global_contributor_labels_every_model_and_a_viewer_none(
    server: RunningServer, captured: dict[str, list[str]]
) -> None:
    server.user("vic", "viewer")
    both = captured["churn"][:1] + captured["fraud"][:1]
    assert _label(server, "alice", both).status_code == 201
    refused = _label(server, "vic", captured["churn"][1:2])
    assert refused.status_code == 403
    assert "needs the contributor role" in refused.json()["message"]


def test_an_unknown_prediction_id_keeps_its_one_sentence_refusal(
    server: RunningServer, captured: dict[str, list[str]]
) -> None:
    server.user("sam", "viewer")
    accounts.grant(server.store, "sam", "churn", "contributor", actor="admin")
    call = captured["churn"][0].rsplit(".", 1)[0]
    for unknown in (f"{call}.999", "01ARZ3NDEKTSV4RRFFQ69G5FAV.0"):
        response = _label(server, "sam", [captured["churn"][0], unknown])
        assert response.status_code == 404
        assert response.json()["message"] == (
            f"prediction {unknown} was not captured in this store; label only ids returned by "
            "predict_with_ids (flush captures first if they are recent)."
        )
    malformed = _label(server, "sam", ["not an id"])
    assert malformed.status_code == 400
    assert "is not a valid ref (a prediction id looks like" in malformed.json()["message"]
    assert ground_truth.labels_for(server.store, captured["churn"]) == {}
