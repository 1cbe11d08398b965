"""``import clew`` is cheap, and every public name still imports as ``from clew import X``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
    for name in clew.__all__:
        assert getattr(clew, name) is not None, name
    assert clew.register_model is governance.register_model
    assert clew.trace is predictions.trace
    assert set(clew.__all__) <= set(dir(clew))


def test_all_lists_every_registry_capture_and_trace_function() -> None:
    assert set(governance.__all__) <= set(clew.__all__)
    assert set(predictions.__all__) <= set(clew.__all__)
    assert len(clew.__all__) == len(set(clew.__all__))


def test_star_import_gives_every_name_in_all() -> None:
    code = "from clew import *; print(sorted(n for n in dir() if not n.startswith('_')))"
    names = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    public = sorted(name for name in clew.__all__ if not name.startswith("_"))
    assert names.strip() == repr(public)


def test_an_embedded_client_does_not_load_the_http_client() -> None:
    code = "import sys, clew; clew.Client; print('httpx' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "False"


# --- a missing extra is one sentence and exit 1, not a traceback ------------------------------

BLOCK_AND_RUN = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # what a plain `pip install clew` lacks: importing it fails
from clew.cli.main import app
app(sys.argv[2:], prog_name="clew")
"""


def run_without(modules: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``clew ARGS`` in a fresh interpreter in which importing any of ``modules`` fails."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_AND_RUN, modules, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEW_")}
    return {**env, "CLEW_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


@pytest.mark.parametrize(
    ("blocked", "args", "sentence"),
    [
        ("fastapi", ["ui"], "clew ui needs the server extra: pip install 'clew[server]'"),
        ("jinja2", ["ui"], "clew ui needs the server extra: pip install 'clew[server]'"),
        ("uvicorn", ["server"], "clew server needs the server extra: pip install 'clew[server]'"),
        ("fastapi", ["serve", "churn@production"], "clew serve needs the server extra"),
        ("sklearn", ["demo"], "clew demo needs the sklearn extra: pip install 'clew[sklearn]'"),
    ],
)
def test_a_command_whose_extra_is_missing_names_the_pip_command(
    clean_env: dict[str, str], blocked: str, args: list[str], sentence: str
) -> None:
    result = run_without(blocked, *args, env=clean_env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: {sentence}"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_postgres_store_without_the_driver_names_the_postgres_extra(
    clean_env: dict[str, str],
) -> None:
    env = {**clean_env, "CLEW_URI": "postgresql://clew@127.0.0.1:1/clew"}
    result = run_without("psycopg", "runs", "list", env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: a PostgreSQL store needs the postgres extra: pip install 'clew[postgres]'"
    )


def test_an_s3_store_without_s3fs_names_the_s3_extra(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **clean_env,
        "CLEW_URI": f"sqlite:///{tmp_path / 'clew.db'}",
        "CLEW_ARTIFACTS": "s3://clew-bucket/blobs?endpoint_url=http://127.0.0.1:1",
    }
    result = run_without("s3fs", "runs", "list", env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: the object store s3://clew-bucket/blobs needs the s3 extra: pip install 'clew[s3]'"
    )


def test_loading_a_pickled_sklearn_model_without_sklearn_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from clew.integrations.sklearn_flavor import SklearnFlavor\n"
        "from clew.errors import MissingExtraError\n"
        "try:\n"
        "    SklearnFlavor().load(None, {})\n"
        "except MissingExtraError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == (
        "loading a scikit-learn model needs the sklearn extra: pip install 'clew[sklearn]'"
    ), result.stderr


# --- the core install alone: the SDK works, and every extra is explained --------------------

ROOT = Path(__file__).resolve().parents[1]
CORE_SCRIPT = """
import pathlib, sys
import clew
model = pathlib.Path(sys.argv[1])
model.write_bytes(b"weights")
with clew.start_run(experiment="core", name="train") as run:
    run.log_params({"n": 1})
    run.log_metric("auc", 0.9)
    artifact = run.log_model(model, name="core-model")
version = clew.register_model(artifact, "core")
extras = ("fastapi", "uvicorn", "jinja2", "sklearn", "s3fs", "psycopg", "duckdb")
upstream = clew.lineage.upstream(version.ref)
print(version.ref, len(clew.search_runs("metrics.auc > 0.5")), len(upstream.nodes))
print(sorted(name for name in extras if name in sys.modules))
"""


def uv_command() -> list[str]:
    """uv itself, or the copy scripts/test installs into the system Python."""
    found = shutil.which("uv")
    return [found] if found else [shutil.which("python3") or "python3", "-m", "uv"]


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding clew and its locked core dependencies only: what ``pip install clew``
    gives, without the extras or the dev group."""
    where = tmp_path_factory.mktemp("core")
    requirements, venv = where / "requirements.txt", where / "venv"
    uv, python = uv_command(), str(venv / "bin" / "python")
    export = ["export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-q"]
    steps = [
        [*uv, *export, "--project", str(ROOT), "-o", str(requirements)],
        [*uv, "venv", "-q", "--python", sys.executable, str(venv)],
        [*uv, "pip", "install", "-q", "--python", python, "-r", str(requirements)],
        [*uv, "pip", "install", "-q", "--no-deps", "--python", python, "-e", str(ROOT)],
    ]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=600)
    return venv / "bin" / "python"


@pytest.mark.slow
def test_the_core_install_runs_the_sdk_without_any_extra(
    core_python: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(core_python), "-c", CORE_SCRIPT, str(tmp_path / "model.bin")],
        capture_output=True,
        text=True,
        env=clean_env,
        cwd=tmp_path,  # outside any git repository: no code artifact in the lineage
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["core/1 1 3", "[]"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "sentence"),
    [
        ("ui", "error: clew ui needs the server extra: pip install 'clew[server]'"),
        ("demo", "error: clew demo needs the sklearn extra: pip install 'clew[sklearn]'"),
    ],
)
def test_the_core_install_explains_a_missing_extra_in_one_sentence(
    core_python: Path, clean_env: dict[str, str], command: str, sentence: str
) -> None:
    result = subprocess.run(
        [str(core_python.parent / "clew"), command],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=300,
    )
    assert (result.returncode, result.stderr.strip()) == (1, sentence)


# --- what a user's type checker sees: real types, not Any --------------------------------------

USER_SCRIPT = """
import datetime as dt

import clew


def publish(artifact: clew.ArtifactRecord, prediction_id: str) -> str:
    version = clew.register_model(artifact, "churn")
    reveal_type(version)
    reveal_type(clew.approve(version, "checked"))
    reveal_type(clew.alias_at("churn", "production", dt.datetime.now(dt.UTC)))
    reveal_type(clew.load_model(version))
    reveal_type(clew.trace(prediction_id))
    reveal_type(clew.get_prediction(prediction_id))
    reveal_type(clew.lineage.upstream(version.ref))
    reveal_type(clew.connect())
    reveal_type(clew.__version__)
    with clew.start_run("churn") as run:
        reveal_type(run)
    return version.ref
"""
# Class names without their modules, which other changes may move (``Trace`` to clew.domain).
REVEALED = [
    "VersionRecord",
    "RegistryEvent",
    "VersionRecord | None",
    "LoadedModel",
    "Trace",
    "CapturedPrediction",
    "LineageResult",
    "Client",
    "str",
    "ActiveRun",
]


@pytest.mark.slow
def test_mypy_strict_sees_the_real_type_of_every_public_call(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    options = ["--strict", "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache")]
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", *options, "--no-error-summary", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    revealed = [
        re.sub(r"[\w.]+\.(\w+)", r"\1", line.split('Revealed type is "', 1)[1].rstrip('"'))
        for line in checked.stdout.splitlines()
        if "Revealed type is" in line
    ]
    problems = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert problems == [], checked.stdout
    assert revealed == REVEALED, checked.stdout
