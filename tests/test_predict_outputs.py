"""What ``LoadedModel.predict`` hands back: read-only predictions that are the record, lazy ids."""

from __future__ import annotations

import numpy as np
import pytest
from capture_support import iris, register_iris
from sklearn.linear_model import LogisticRegression

import clew
from clew.client.loaded_model import LoadedModel, PredictionIds
from clew.domain import ids


@pytest.fixture
def model(client: clew.Client):  # type: ignore[no-untyped-def]
    return register_iris(client)


class CachingModel:
    """A model that returns (and later overwrites) one buffer it keeps: clew must not freeze it."""

    def __init__(self, inner: LogisticRegression) -> None:
        self.inner = inner
        self.buffer = np.zeros(0, dtype=np.int64)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        self.buffer = np.resize(self.buffer, len(inputs))
        self.buffer[:] = self.inner.predict(inputs)
        return self.buffer


def test_returned_predictions_are_read_only_and_equal_the_captured_record(client, model) -> None:
    features, _ = iris()
    outputs, prediction_ids = model.predict_with_ids(features[:20])
    assert not outputs.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        outputs[0] = 99
    editable = outputs.copy()
    editable[0] = 99
    found = client.get_prediction(prediction_ids[0])
    assert found.verified, found.verification.reason
    assert found.output == int(outputs[0])


def test_predict_proba_outputs_are_read_only_too(client, model) -> None:
    features, _ = iris()
    probabilities, prediction_ids = model.predict_proba_with_ids(features[:5])
    assert not probabilities.flags.writeable
    found = client.get_prediction(prediction_ids[4])
    assert found.output == pytest.approx(probabilities[4].tolist())


def test_capture_off_leaves_predictions_writable(client, model) -> None:
    features, _ = iris()
    silent = LoadedModel(model.raw, model.version, client, capture=False)
    outputs = silent.predict(features[:5])
    outputs[0] = 7
    assert outputs[0] == 7


def test_a_buffer_the_model_keeps_is_copied_not_frozen(client, model) -> None:
    features, _ = iris()
    caching = LoadedModel(CachingModel(model.raw), model.version, client)
    outputs, prediction_ids = caching.predict_with_ids(features[:10])
    expected = outputs.copy()
    assert outputs.flags.writeable, "the model's own buffer must stay writable for its next call"
    caching.predict(features[100:110])
    found = client.get_prediction(prediction_ids[9])
    assert found.verified, found.verification.reason
    assert found.output == int(expected[9])


def test_prediction_ids_name_the_call_once_written_out(client, model) -> None:
    features, _ = iris()
    _, first = model.predict_with_ids(features[:3])
    _, second = model.predict_with_ids(features[:3])
    call = first.call
    assert ids.is_id(call)
    assert first.call is call, "written out once, the call's id is the same string every time"
    assert first.call < second.call
    assert list(first) == [f"{first.call}.{row}" for row in range(3)]
    assert first == PredictionIds(first.call, 3)
    client.flush_captures()
    assert client.get_prediction(second[2]).id == f"{second.call}.2"


def test_pending_ids_are_monotonic_and_written_once() -> None:
    pending = [ids.PendingId() for _ in range(1_000)]
    texts = [str(item) for item in pending]
    assert texts == sorted(texts) and len(set(texts)) == len(texts)
    assert all(ids.is_id(text) for text in texts)
    assert str(pending[0]) is texts[0]
