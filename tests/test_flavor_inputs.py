"""Inputs are checked against the version's signature before the model sees them: missing,
extra and wrongly typed columns are refused in one sentence naming them, in-process and
through ``clew serve`` alike, and nothing of a refused call is captured."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from capture_support import iris
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from test_flavor_lifecycle import serving

import clew
from clew.client.loaded_model import LoadedModel
from clew.errors import InvalidInputError


def customers() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 120),
            "income": rng.normal(50.0, 10.0, 120),
            "plan": rng.choice(["basic", "plus", "pro"], 120),
        }
    )
    return frame, (frame["income"] > 50).astype(np.int64).to_numpy()


@pytest.fixture
def frame_model(client: clew.Client) -> LoadedModel:
    """A pipeline fitted on a DataFrame with a text column; the example types its signature."""
    frame, target = customers()
    encode = make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression(max_iter=500)).fit(frame, target)
    with client.start_run("inputs", "train") as run:
        artifact = run.log_model(model, name="churn-pipeline", input_example=frame.head(3))
    client.register_model(artifact, "churn")
    return client.load_model("churn/1")


@pytest.fixture
def array_model(client: clew.Client) -> LoadedModel:
    features, target = iris()
    model = LogisticRegression(max_iter=500).fit(features, target)
    with client.start_run("inputs", "train") as run:
        artifact = run.log_model(model, name="iris-lr", input_example=features[:3])
    client.register_model(artifact, "iris")
    return client.load_model("iris/1")


def test_the_signature_is_typed_from_the_example(frame_model: LoadedModel) -> None:
    assert frame_model.version.signature["inputs"] == [
        {"name": "age", "type": "int64"},
        {"name": "income", "type": "double"},
        {"name": "plan", "type": "string"},
    ]
    assert frame_model.version.signature["outputs"] == [{"name": None, "type": "int64"}]


def test_missing_and_extra_columns_are_named(client: clew.Client, frame_model) -> None:
    frame, _ = customers()
    before = client.capture_stats()["submitted"]
    with pytest.raises(InvalidInputError, match=r"churn/1 lack plan; send exactly the columns"):
        frame_model.predict(frame.drop(columns=["plan"]))
    with pytest.raises(InvalidInputError, match=r"have unexpected region, zip; send exactly"):
        frame_model.predict(frame.assign(zip="12345", region="north"))
    with pytest.raises(InvalidInputError, match=r"lack income and have unexpected salary"):
        frame_model.predict(frame.rename(columns={"income": "salary"}))
    assert client.capture_stats()["submitted"] == before  # nothing of a refused call is kept


def test_wrongly_typed_columns_are_named(frame_model: LoadedModel) -> None:
    frame, _ = customers()
    with pytest.raises(
        InvalidInputError, match=r"wrong type in income \(number\): got (str|object)"
    ):
        frame_model.predict(frame.assign(income="high"))
    with pytest.raises(InvalidInputError, match=r"wrong type in plan \(text\)"):
        frame_model.predict(frame.assign(plan=3))
    mixed = frame.astype({"age": object})
    mixed.loc[5, "age"] = "forty"
    with pytest.raises(InvalidInputError, match=r"wrong type in age \(number\)"):
        frame_model.predict(mixed)


def test_columns_in_another_order_are_put_in_the_models_order(frame_model) -> None:
    frame, _ = customers()
    shuffled = frame[["plan", "income", "age"]]
    np.testing.assert_array_equal(frame_model.predict(shuffled), frame_model.raw.predict(frame))
    nullable = frame.astype({"age": "Int64", "plan": "string"})
    np.testing.assert_array_equal(frame_model.predict(nullable), frame_model.raw.predict(frame))


def test_arrays_of_the_wrong_width_shape_or_type_are_refused(array_model: LoadedModel) -> None:
    features, _ = iris()
    with pytest.raises(InvalidInputError, match=r"iris/1 have 3 columns; the model takes 4\."):
        array_model.predict(features[:, :3])
    with pytest.raises(InvalidInputError, match=r"1-D array of shape \(4,\); pass rows"):
        array_model.predict(features[0])
    text = features[:5].astype(str)
    text[2, 1] = "n/a"
    with pytest.raises(InvalidInputError, match=r"wrong type in column 1 \(number\)"):
        array_model.predict(text)
    assert len(array_model.predict(features[:5].astype(np.float32))) == 5


def test_serve_refuses_wrong_columns_with_the_same_sentence(frame_model: LoadedModel) -> None:
    frame, _ = customers()
    rows = frame.head(2).to_dict("records")
    with serving(frame_model) as url:
        missing = httpx.post(
            f"{url}/predict", json={"inputs": [{"age": 30, "income": 4.0}]}, timeout=30
        )
        typed = httpx.post(
            f"{url}/predict",
            json={"inputs": [{**rows[0], "income": "lots"}]},
            timeout=30,
        )
        fine = httpx.post(f"{url}/predict", json={"inputs": rows}, timeout=30)
    assert missing.status_code == 422 and "churn/1 lack plan" in missing.json()["message"]
    assert typed.status_code == 422 and "wrong type in income" in typed.json()["message"]
    assert fine.status_code == 200 and len(fine.json()["outputs"]) == 2


def test_a_directory_logged_as_files_says_it_cannot_predict(client: clew.Client, tmp_path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\0" * 16)
    with client.start_run("inputs", "train") as run:
        artifact = run.log_model(tmp_path / "model", name="opaque")
    client.register_model(artifact, "opaque")
    loaded = client.load_model("opaque/1")
    assert not loaded.can_predict
    with pytest.raises(InvalidInputError, match=r"opaque/1 was logged as plain files .* cannot"):
        loaded.predict(np.zeros((2, 2)))


def test_an_invalid_onnx_file_is_refused_when_logged(client: clew.Client, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    with (
        client.start_run("inputs", "train") as run,
        pytest.raises(InvalidInputError, match=r"broken.onnx is not a valid ONNX model"),
    ):
        run.log_model(bad, name="broken")
