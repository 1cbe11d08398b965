"""Large NumPy inputs are guarded, not copied: a caller changing one after predict is caught.

The writer withholds the inputs of a call whose array changed before its batch was written
(never signing inputs the model did not see), lists the call in the signed batch header, counts
the rows, warns once, and copies that version's inputs from then on.
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.connection import Connection

import numpy as np
import pytest
from capture_support import iris, register_iris
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client import input_guard
from clew.client.loaded_model import LoadedModel
from clew.service import capture_verification


@pytest.fixture
def model(client: clew.Client) -> LoadedModel:
    return register_iris(client)


def large_batch(seed: int = 0) -> np.ndarray:
    """Iris rows, shuffled, to 3,000 x 4 floats (96 kB): above ``input_guard.MIN_BYTES``."""
    features, _ = iris()
    rows = np.random.default_rng(seed).integers(0, len(features), 3000)
    batch = np.ascontiguousarray(features[rows])
    assert batch.nbytes >= input_guard.MIN_BYTES
    return batch


def features_of(row: np.ndarray) -> dict[str, float]:
    return {f"f{j}": float(value) for j, value in enumerate(row)}


def test_an_unchanged_large_input_is_captured_exactly_without_a_copy(client, model) -> None:
    batch = large_batch()
    _, ids = model.predict_with_ids(batch)
    stats = client.flush_captures()
    assert stats["captured"] == 3000 and stats["inputs_changed"] == 0
    for row in (0, 1234, 2999):
        found = client.get_prediction(ids[row])
        assert found.verified, found.verification.reason
        assert found.inputs == features_of(batch[row])
        assert "inputs_changed" not in found.header


def test_an_input_changed_after_predict_is_withheld_listed_and_warned_about(
    client, model, caplog
) -> None:
    batch = large_batch()
    outputs, ids = model.predict_with_ids(batch)
    batch *= 2.0  # normalised in place after predicting: not what the model saw
    with caplog.at_level(logging.WARNING, logger="clew.capture"):
        stats = client.flush_captures()
    assert stats["captured"] == 3000 and stats["inputs_changed"] == 3000
    found = client.get_prediction(ids[7])
    assert found.verified, found.verification.reason
    assert found.inputs is None and found.output == int(outputs[7])
    assert found.header["inputs_changed"] == [ids.call]
    [warning] = [r for r in caplog.records if r.name == "clew.capture"]
    assert ids.call in warning.getMessage() and "copy_inputs" in warning.getMessage()


def test_after_a_change_the_version_copies_its_inputs(client, model) -> None:
    first = large_batch(1)
    model.predict(first)
    first[:] = 0.0
    client.flush_captures()
    later = large_batch(2)
    kept = later.copy()
    _, ids = model.predict_with_ids(later)
    later[:] = -1.0  # copied at predict time now, so the record keeps what the model saw
    stats = client.flush_captures()
    assert stats["inputs_changed"] == 3000  # the first call only
    found = client.get_prediction(ids[5])
    assert found.inputs == features_of(kept[5])
    assert "inputs_changed" not in found.header


def test_a_reused_buffer_withholds_every_call_but_the_one_it_still_holds(client, model) -> None:
    buffer = np.empty((3000, 4))
    chunks = [large_batch(seed) for seed in range(3)]
    call_ids = []
    for chunk in chunks:
        buffer[:] = chunk
        call_ids.append(model.predict_with_ids(buffer)[1])
    client.flush_captures()
    assert client.get_prediction(call_ids[0][10]).inputs is None
    assert client.get_prediction(call_ids[1][10]).inputs is None
    last = client.get_prediction(call_ids[2][10])
    assert last.inputs == features_of(chunks[2][10])
    assert sorted(last.header["inputs_changed"]) == sorted([call_ids[0].call, call_ids[1].call])


def test_editing_one_column_in_place_is_caught(client, model) -> None:
    batch = large_batch()
    _, ids = model.predict_with_ids(batch)
    batch[:, 2] *= 10.0  # every sampled position could have missed it if they were strided
    assert client.flush_captures()["inputs_changed"] == 3000
    assert client.get_prediction(ids[0]).inputs is None


class _ScalesInPlace:
    """A model that edits its input while predicting, as ``StandardScaler(copy=False)`` does."""

    def __init__(self, model: object) -> None:
        self.model = model

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        inputs *= 0.5
        return self.model.predict(inputs)  # type: ignore[attr-defined]


def test_a_model_that_edits_its_input_while_predicting_is_not_blamed(client, model) -> None:
    scaling = LoadedModel(_ScalesInPlace(model.raw), model.version, client)
    batch = large_batch()
    _, ids = scaling.predict_with_ids(batch)
    stats = client.flush_captures()
    assert stats["inputs_changed"] == 0, "guarded after the model ran, like a copy would be"
    assert client.get_prediction(ids[4]).inputs == features_of(batch[4])


def test_copy_inputs_true_keeps_a_private_copy_from_the_first_call(client, model) -> None:
    model.copy_inputs = True
    batch = large_batch()
    kept = batch.copy()
    _, ids = model.predict_with_ids(batch)
    batch[:] = 9.0
    stats = client.flush_captures()
    assert stats["inputs_changed"] == 0
    assert client.get_prediction(ids[3]).inputs == features_of(kept[3])


def test_a_shape_changed_in_place_counts_as_changed(client, model) -> None:
    batch = large_batch()
    _, ids = model.predict_with_ids(batch)
    batch.shape = (6000, 2)
    assert client.flush_captures()["inputs_changed"] == 3000
    assert client.get_prediction(ids[0]).inputs is None


@pytest.mark.backend_independent
def test_the_guard_compares_elements_bitwise() -> None:
    array = np.full((100_000,), np.nan)
    guard = input_guard.guard(array)
    assert input_guard.unchanged(guard, array), "NaN that stays NaN is unchanged"
    array[:] = 1.0
    assert not input_guard.unchanged(guard, array)
    ints = np.arange(20_000, dtype=np.int64)
    guard = input_guard.guard(ints)
    positions = guard[2]
    ints[positions[100]] += 1  # one sampled element
    assert not input_guard.unchanged(guard, ints)


def _predict_in_child(model: LoadedModel, results: Connection) -> None:
    features, _ = iris()
    _, ids = model.predict_with_ids(features)
    results.send((ids.call, model._client.flush_captures()["captured"]))


def test_a_forked_child_captures_with_its_own_writer_and_its_own_ids(client, model) -> None:
    features, _ = iris()
    model.predict(features)
    client.flush_captures()  # the parent's writer thread is running when the child forks
    _, queued_ids = model.predict_with_ids(features)  # still queued at the fork: the parent's
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_predict_in_child, args=(model, sending))
    child.start()
    assert receiving.poll(60), "the child never reported"
    call, captured = receiving.recv()
    child.join(60)
    assert child.exitcode == 0
    assert captured == 2 * len(features), "the child wrote its own call, not its parent's queue"
    assert call != queued_ids.call
    client.flush_captures()  # the parent's writer still works: the child left its sockets alone
    assert sum(batch.count for batch in capture_verification.all_batches(client.store)) == 3 * len(
        features
    )
    found = client.get_prediction(f"{call}.3")
    assert found.verified, found.verification.reason
    assert client.get_prediction(queued_ids[3]).verified


def test_trace_says_why_a_prediction_has_no_inputs(client, model) -> None:
    batch = large_batch()
    _, ids = model.predict_with_ids(batch)
    batch[:] = 0.0
    client.flush_captures()
    step = client.trace(ids[0]).step("prediction")
    assert step.verified and step.details["inputs_withheld"] is True
    assert client.get_prediction(ids[0]).to_dict()["inputs_withheld"] is True
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["trace", ids[0]])
    assert result.exit_code == 0, result.output
    assert "inputs not captured: the input array was changed after predict" in result.output
