"""``import clew`` is cheap, and every public name still imports as ``from clew import X``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import clew
from clew.client import governance, predictions

# Touches no store: the embedded pass runs it, the backend and remote passes would repeat it.
pytestmark = pytest.mark.backend_independent

HEAVY = ("pandas", "pyarrow", "httpx", "sklearn", "sqlalchemy", "clew.client.capture_queue")


def test_import_clew_loads_no_heavy_module() -> None:
    code = f"import sys, clew; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_every_public_name_imports_from_clew() -> None:
    names = [*clew.__all__, *governance.__all__, *predictions.__all__]
    for name in names:
        assert getattr(clew, name) is not None, name
    assert clew.register_model is governance.register_model
    assert clew.trace is predictions.trace
    assert set(names) <= set(dir(clew))


def test_an_embedded_client_does_not_load_the_http_client() -> None:
    code = "import sys, clew; clew.Client; print('httpx' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "False"
