"""Prediction capture through LoadedModel: ids, Parquet layout, sampling, drops, labels."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from capture_support import iris, register_iris

import clew
from clew.domain.captures import header_of
from clew.errors import InvalidInputError, InvalidRefError, NotFoundError
from clew.service import audit, capture_verification
from clew.store.captures import LocalCaptureFiles


@pytest.fixture
def model(client: clew.Client):  # type: ignore[no-untyped-def]
    return register_iris(client)


def test_predict_with_ids_names_every_row_and_captures_it(client, model) -> None:
    features, _ = iris()
    outputs, ids = model.predict_with_ids(features)
    assert len(ids) == len(features) == len(outputs)
    assert ids[0].endswith(".0") and ids[-1].endswith(f".{len(features) - 1}")
    assert len({i.split(".")[0] for i in ids}) == 1
    assert model.last_prediction_ids == list(ids)
    stats = client.flush_captures()
    assert stats["captured"] == len(features) and stats["dropped"] == stats["failed"] == 0
    found = client.get_prediction(ids[42])
    assert found.verified, found.verification.reason
    assert found.output == int(outputs[42])
    assert found.inputs == {f"f{j}": features[42, j] for j in range(4)}
    assert (found.model, found.version, found.model_digest) == ("iris", 1, model.version.digest)


def test_plain_predict_is_captured_too_and_ids_differ_per_call(client, model) -> None:
    features, _ = iris()
    model.predict(features[:3])
    first = model.last_prediction_ids
    model.predict(features[3:5])
    assert first is not None and model.last_prediction_ids is not None
    assert first.call != model.last_prediction_ids.call
    client.flush_captures()
    assert client.get_prediction(f"prediction:{first[2]}").verified


def test_predict_proba_outputs_are_captured_as_lists(client, model) -> None:
    features, _ = iris()
    probabilities, ids = model.predict_proba_with_ids(features[:5])
    found = client.get_prediction(ids[1])
    assert found.verified
    assert found.method == "predict_proba"
    assert found.output == pytest.approx(list(probabilities[1]))


def test_dataframe_inputs_with_text_columns_verify(client) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"city": ["paris", "lyon", "nice", "lyon"] * 10, "age": np.arange(40) % 7 + 20.5}
    )
    target = (frame["age"] > 23).astype(int)
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        __import__("sklearn.linear_model", fromlist=["LogisticRegression"]).LogisticRegression(),
    ).fit(frame, target)
    with client.start_run("cities", "train") as run:
        artifact = run.log_model(pipeline, name="cities")
    from clew.client.loaded_model import LoadedModel
    from clew.service.registry import RegistryService

    version = RegistryService(client.store).register("cities", f"artifact:{artifact.id}", "alice")
    loaded = LoadedModel(pipeline, version, client)
    _, ids = loaded.predict_with_ids(frame)
    found = client.get_prediction(ids[2])
    assert found.verified, found.verification.reason
    assert found.inputs == {"city": "nice", "age": frame["age"][2]}


def test_files_are_partitioned_by_model_version_and_date_and_recorded(client, model) -> None:
    features, _ = iris()
    model.predict(features)
    client.flush_captures()
    files = client.store.capture_files
    [batch] = capture_verification.all_batches(client.store)
    assert re.fullmatch(r"model=iris/version=1/date=\d{4}-\d\d-\d\d/\w{26}\.parquet", batch.path)
    assert files.exists(batch.path.removesuffix(".parquet") + ".merkle")
    table = files.read_batch(batch.path)
    assert {"prediction_id", "time", "inputs", "output", "leaf", "model_digest"} <= set(
        table.column_names
    )
    assert table.num_rows == batch.count == 150
    # rows are hashed 32 to a leaf: 150 rows make leaves 0..4, the last one holding 22 rows
    assert header_of(table)["leaf_rows"] == 32
    assert table.column("leaf").to_pylist() == [row // 32 for row in range(150)]
    entries = audit.entries(client.store, target="iris/1")
    assert any(entry.action == "capture.batch" for entry in entries)


@pytest.mark.sqlite_only
def test_duckdb_reads_the_local_capture_directory_by_partition(client, model) -> None:
    model.predict(iris()[0])
    client.flush_captures()
    counted = duckdb.sql(
        f"select count(*), min(version) from read_parquet('{client.store.captures}/**/*.parquet',"
        " hive_partitioning=true)"
    ).fetchone()
    assert counted == (150, 1)


def test_input_sampling_keeps_outputs_and_nulls_unsampled_inputs(client, model) -> None:
    features, _ = iris()
    model.input_sampling = 0.0
    _, none_kept = model.predict_with_ids(features[:20])
    model.input_sampling = 0.5
    _, half_kept = model.predict_with_ids(features)
    client.flush_captures()
    assert client.get_prediction(none_kept[0]).inputs is None
    kept = [client.get_prediction(half_kept[i]) for i in range(0, 150, 10)]
    assert all(found.verified for found in kept)
    present = sum(found.inputs is not None for found in kept)
    assert 0 < present < len(kept)
    with pytest.raises(InvalidInputError):
        model.input_sampling = 1.5


def test_full_queue_drops_are_counted_and_prediction_still_works(client, model) -> None:
    features, _ = iris()
    client.configure_capture(max_queued_rows=200, flush_seconds=60)
    outputs = [model.predict(features) for _ in range(3)]
    assert all(len(out) == 150 for out in outputs)
    stats = client.flush_captures()
    assert stats["submitted"] == 450
    assert stats["dropped"] == 300 and stats["captured"] == 150


def test_writer_failures_never_reach_predict(client, model, tmp_path: Path) -> None:
    features, _ = iris()
    blocker = tmp_path / "captures"
    blocker.write_text("not a directory")
    client.store.capture_files = LocalCaptureFiles(blocker)
    outputs, ids = model.predict_with_ids(features)
    assert len(outputs) == 150
    stats = client.flush_captures()
    assert stats["failed"] == 150 and stats["captured"] == 0
    assert "Error" in (stats["last_error"] or "")
    with pytest.raises(NotFoundError):
        client.get_prediction(ids[0])


def test_uncapturable_inputs_are_counted_not_raised(client, model) -> None:
    class Scalar:
        def predict(self, inputs):  # type: ignore[no-untyped-def]
            return np.zeros(2)

    model.raw = Scalar()
    assert list(model.predict(np.zeros((2, 2, 2)))) == [0.0, 0.0]
    stats = client.flush_captures()
    assert stats["failed"] == 2 and "cannot be captured" in stats["last_error"]


def test_queued_predictions_are_written_at_interpreter_exit(tmp_path: Path, home: Path) -> None:
    script = tmp_path / "predict.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import clew\n"
        "from capture_support import iris, register_iris\n"
        f"client = clew.connect({str(home)!r})\n"
        "client.configure_capture(flush_seconds=600)\n"
        "model = register_iris(client)\n"
        "_, ids = model.predict_with_ids(iris()[0])\n"
        "print(ids[7])\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    prediction_id = result.stdout.strip()
    client = clew.connect(str(home))
    found = client.get_prediction(prediction_id)
    assert found.verified and found.id == prediction_id


def test_labels_attach_by_prediction_id_and_can_be_corrected(client, model) -> None:
    features, target = iris()
    _, ids = model.predict_with_ids(features)
    assert client.log_labels(list(ids[:10]), list(target[:10])) == 10
    assert client.get_labels([ids[3]]) == {ids[3]: int(target[3])}
    client.log_labels([ids[3]], ["corrected"])
    found = client.get_prediction(ids[3])
    assert found.labelled and found.label == "corrected"
    assert client.get_labels([ids[50]]) == {}
    actions = [entry.action for entry in audit.entries(client.store)]
    assert actions.count("labels.log") == 2


def test_labels_refuse_unknown_ids_and_length_mismatch(client, model) -> None:
    features, _ = iris()
    _, ids = model.predict_with_ids(features[:5])
    with pytest.raises(NotFoundError, match="was not captured"):
        client.log_labels([f"{ids.call}.99"], [1])
    with pytest.raises(InvalidInputError, match="one label per id"):
        client.log_labels([ids[0], ids[1]], [1])
    with pytest.raises(InvalidRefError):
        client.log_labels(["not-an-id"], [1])
    assert client.get_labels(list(ids)) == {}


def test_unknown_prediction_id_is_one_clear_sentence(client, model) -> None:
    with pytest.raises(NotFoundError) as raised:
        client.get_prediction("01JAAAAAAAAAAAAAAAAAAAAAAA.3")
    message = str(raised.value)
    assert "01JAAAAAAAAAAAAAAAAAAAAAAA.3" in message and message.count(". ") == 0
    with pytest.raises(InvalidRefError, match="prediction id"):
        client.get_prediction("prediction:nope")


def test_module_functions_use_the_default_client(client, model) -> None:
    features, _ = iris()
    _, ids = model.predict_with_ids(features[:2])
    assert clew.flush_captures()["captured"] == 2
    assert clew.get_prediction(ids[0]).verified
    assert clew.capture_stats()["batches"] == 1
    assert clew.public_key().startswith("-----BEGIN PUBLIC KEY-----")
    assert json.dumps(clew.get_prediction(ids[1]).to_dict(), default=str)


def test_caller_reusing_its_arrays_does_not_change_what_was_captured(client, model) -> None:
    features, _ = iris()
    model.predict(features)
    client.flush_captures()  # the writer has prepared its copy arena by now
    batch = features.copy()
    outputs, ids = model.predict_with_ids(batch)
    expected = batch[7].copy()
    batch[:] = -1.0
    found = client.get_prediction(ids[7])
    assert found.verified, found.verification.reason
    assert found.inputs == {f"f{j}": expected[j] for j in range(4)}
    assert found.output == int(outputs[7])


def test_small_inputs_are_copied_whatever_copy_inputs_says(client, model) -> None:
    features, _ = iris()  # 4.8 kB: below the size worth guarding instead of copying
    model.copy_inputs = False
    batch = features.copy()
    _, ids = model.predict_with_ids(batch)
    batch[3] = 7.0
    found = client.get_prediction(ids[3])
    assert found.verified, found.verification.reason
    assert found.inputs == {f"f{j}": features[3, j] for j in range(4)}
