"""Helpers shared by the capture, trace and audit tests: a registered, loaded iris model."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import clew
from clew.client.loaded_model import LoadedModel
from clew.service import capture_verification
from clew.service.registry import RegistryService


def iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return features, target


def register_iris(client: clew.Client, name: str = "iris") -> LoadedModel:
    """Train on iris inside a run, log the model, register it and wrap it for inference."""
    features, target = iris()
    with client.start_run("iris", "train") as run:
        run.log_params({"max_iter": 500})
        model = LogisticRegression(max_iter=500).fit(features, target)
        run.log_metric("accuracy", float(model.score(features, target)))
        artifact = run.log_model(model, name=f"{name}-lr")
    version = RegistryService(client.store).register(name, f"artifact:{artifact.id}", "alice")
    return LoadedModel(model, version, client)


def register_iris_remotely(client: clew.Client) -> LoadedModel:
    """``register_iris`` for a client of a server: every step through the client's API."""
    features, target = iris()
    with client.start_run("iris", "train") as run:
        model = LogisticRegression(max_iter=500).fit(features, target)
        artifact = run.log_model(model, name="iris-lr")
    client.register_model(artifact, "iris")
    return client.load_model("iris/1")


@contextmanager
def editable_batch(client: clew.Client) -> Iterator[Path]:
    """A local copy of the store's one capture batch file; what the test writes to it is put
    back in its place when the block ends (a directory or S3, whichever the store uses)."""
    files = client.store.capture_files
    [batch] = capture_verification.all_batches(client.store)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "batch.parquet"
        with files.local_copy(batch.path) as stored:
            shutil.copyfile(stored, path)
        yield path
        files.put_file(batch.path, path)
