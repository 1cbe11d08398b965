"""PyTorch archives are loaded only when they unpickle nothing but tensors.

``torch.export.load`` falls back to unrestricted unpickling when a payload is more than
tensors; clew loads every pickled payload with ``weights_only=True`` first and refuses the
archive otherwise, so a ``.pt2`` carrying a code-running pickle never reaches that fallback.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import clew
from clew.errors import InvalidInputError
from clew.integrations import flavors

torch = pytest.importorskip("torch")

RAN = []


class Payload:
    """Unpickling this runs code (appends to RAN): what an attacker's archive would carry."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return RAN.append, ("payload ran",)


def exported(tmp_path: Path) -> Path:
    net = torch.nn.Linear(3, 1)
    program = torch.export.export(
        net.eval(), (torch.zeros(4, 3),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path / "net.pt2"
    torch.export.save(program, str(path))
    return path


def with_payload(path: Path, tmp_path: Path) -> Path:
    """A copy of the archive whose sample inputs are replaced by a code-running pickle."""
    buffer = io.BytesIO()
    torch.save({"inputs": Payload()}, buffer)
    poisoned = tmp_path / "poisoned.pt2"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(poisoned, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if "/data/sample_inputs/" in item.filename:
                data = buffer.getvalue()
            target.writestr(item, data)
    return poisoned


def test_an_exported_pt2_file_is_logged_loaded_and_predicts(client: clew.Client, tmp_path) -> None:
    path = exported(tmp_path)
    with client.start_run("torch", "train") as run:
        artifact = run.log_model(path, name="net")
    assert artifact.properties["flavor"]["flavor"] == "torch"
    assert artifact.properties["flavor"]["executes_code_on_load"] is False
    client.register_model(artifact, "net")
    loaded = client.load_model("net/1")
    assert loaded.predict(np.ones((5, 3), dtype=np.float32)).shape == (5, 1)


def test_an_archive_carrying_a_pickle_beyond_tensors_is_refused(
    client: clew.Client, tmp_path
) -> None:
    poisoned = with_payload(exported(tmp_path), tmp_path)
    with (
        client.start_run("torch", "train") as run,
        pytest.raises(InvalidInputError, match=r"poisoned.pt2 holds .*sample_inputs.* beyond"),
    ):
        run.log_model(poisoned, name="net")
    directory = tmp_path / "saved"
    directory.mkdir()
    (directory / "model.pt2").write_bytes(poisoned.read_bytes())
    (directory / flavors.MODEL_FILE).write_text('{"flavor": "torch"}')
    with pytest.raises(InvalidInputError, match="pickled objects beyond tensors"):
        flavors.load(directory)
    assert RAN == []


def test_a_module_without_an_example_and_a_pt_file_say_what_to_do(
    client: clew.Client, tmp_path
) -> None:
    net = torch.nn.Linear(3, 1)
    with (
        client.start_run("torch", "train") as run,
        pytest.raises(InvalidInputError, match=r"needs an input example .*input_example="),
    ):
        run.log_model(net, name="net")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    with client.start_run("torch", "train") as run:
        artifact = run.log_model(tmp_path / "weights.pt", name="weights")
    client.register_model(artifact, "weights")
    with pytest.raises(InvalidInputError, match=r"plain files .* torch.export .pt2 file"):
        client.load_model("weights/1").predict(np.ones((1, 3)))
