"""``clew --help`` imports no command module; each command imports only what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer.main

from clew.cli.lazy import LazyGroup
from clew.cli.main import COMMANDS, app

HEAVY = ("pandas", "numpy", "pyarrow", "sqlalchemy", "httpx", "uvicorn", "fastapi", "sklearn")
_IMPORTED = """
import json, sys
from clew.cli.main import app
try:
    app({args!r})
except SystemExit:
    pass
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}})))
"""


def _imported_by(args: list[str]) -> set[str]:
    """The top-level packages a fresh interpreter has imported after ``clew ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED.format(args=args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_root_help_and_version_import_nothing_heavy() -> None:
    for args in (["--help"], ["--version"]):
        heavy = _imported_by(args) & set(HEAVY)
        assert not heavy, f"clew {' '.join(args)} imported {sorted(heavy)}"


def test_every_listed_help_line_is_the_commands_own() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    for name, command in group.load_all().items():
        own = " ".join((command.help or "").split("\n\n")[0].split())
        assert COMMANDS[name].help == own, f"clew --help lists {name} with another help line"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_loads_and_shows_its_help(name: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: clew " + name in " ".join(result.output.split())


# A small thread in a store of its own: one run, one registered version, one captured prediction.
_THREAD = """
import clew
from sklearn.linear_model import LogisticRegression
client = clew.connect()
with client.start_run(experiment="startup", name="fit") as run:
    run.log_params({"C": 1.0})
    run.log_metric("auc", 0.9)
    run.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "model")
client.register_model(run, "M")
model = client.load_model("M/1")
model.predict([[0.5]])
ids = model.last_prediction_ids
client.flush_captures()
print(list(ids)[0])
"""
_RAN = """
import json, sys
from clew.cli.main import app
code = 0
try:
    app({args!r})
except SystemExit as stop:
    code = stop.code or 0
print(json.dumps([code, sorted(sys.modules)]))
"""
# Never needed to read an embedded store: the migration tool, the ORM, PostgreSQL's dialect
# (a SQLite store's schema declares nothing that loads it), the HTTP client and server, the
# model's framework.
NEVER = (
    "alembic",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql",
    "httpx",
    "uvicorn",
    "fastapi",
    "sklearn",
    "clew.server",
)
# Services a registry read does not call: built (and imported) only when used.
UNUSED_SERVICES = (
    "clew.service.monitoring_checks",
    "clew.service.model_quality",
    "clew.service.exports",
    "clew.service.mlflow_import",
    "clew.service.baselines",
)
FRAMES = ("pandas", "numpy", "pyarrow")


@pytest.fixture(scope="module")
def thread_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """The environment of a store holding ``_THREAD``, and its prediction id."""
    env = {**os.environ, "CLEW_HOME": str(tmp_path_factory.mktemp("startup") / "store")}
    env.pop("CLEW_URI", None)
    made = subprocess.run(
        [sys.executable, "-c", _THREAD], capture_output=True, text=True, check=True, env=env
    )
    return env, made.stdout.strip().splitlines()[-1]


def _ran(args: list[str], env: dict[str, str]) -> set[str]:
    """The modules a fresh interpreter holds after ``clew ARGS`` succeeded."""
    done = subprocess.run(
        [sys.executable, "-c", _RAN.format(args=args)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    code, modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, f"clew {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return set(modules)


# (command, modules it must not import besides NEVER)
SIMPLE = {
    "status": (["status", "M/1"], (*FRAMES, "cryptography", *UNUSED_SERVICES)),
    "versions": (["versions", "M"], (*FRAMES, "cryptography", *UNUSED_SERVICES)),
    "models list": (["models", "list"], (*FRAMES, "cryptography", *UNUSED_SERVICES)),
    "models show": (["models", "show", "M"], (*FRAMES, "cryptography", *UNUSED_SERVICES)),
    "models history": (["models", "history", "M"], (*FRAMES, "cryptography", *UNUSED_SERVICES)),
    "runs list": (["runs", "list"], (*FRAMES, "cryptography", "yaml", *UNUSED_SERVICES)),
    "runs search": (
        ["runs", "search", "metrics.auc > 0.5"],
        (*FRAMES, "cryptography", "yaml", *UNUSED_SERVICES),
    ),
    "trace": (["trace", "PREDICTION"], UNUSED_SERVICES),
}


@pytest.mark.embedded_only
@pytest.mark.sqlite_only  # a store of its own, in a directory
@pytest.mark.parametrize("name", sorted(SIMPLE))
def test_a_simple_command_imports_only_what_it_uses(
    name: str, thread_home: tuple[dict[str, str], str]
) -> None:
    """Each simple read answers (exit 0) without loading what it never calls: the registry
    reads and the run listings draw their tables from the SDK's ``*_records`` calls, so none of
    them imports pandas (or the numpy and pyarrow it brings); none of them loads the monitoring
    services, signatures' crypto, migrations, the ORM, the server or the model's framework."""
    env, prediction = thread_home
    args, forbidden = SIMPLE[name]
    loaded = _ran([prediction if arg == "PREDICTION" else arg for arg in args], env)
    heavy = sorted(
        module
        for module in (*NEVER, *forbidden)
        if module in loaded or any(name.startswith(module + ".") for name in loaded)
    )
    assert not heavy, f"clew {' '.join(args)} imported {heavy}"


_CONNECTED = """
import json, sys
import clew
clew.connect({uri!r})
print(json.dumps(sorted(sys.modules)))
"""
# What opening an embedded store must not load: frames and arrays, the capture machinery, the
# YAML reader, signatures' crypto, the model flavors' plugin manager, the migration tool, the
# HTTP client and server, models, and the services nobody has asked for yet.
NOT_ON_CONNECT = (
    *NEVER,
    *FRAMES,
    "yaml",
    "cryptography",
    "pluggy",
    "clew.integrations.flavors",
    "clew.client.capture_queue",
    *UNUSED_SERVICES,
    "clew.service.registry",
    "clew.service.lineage",
)


@pytest.mark.embedded_only
@pytest.mark.sqlite_only
def test_connecting_to_an_existing_embedded_store_imports_nothing_it_does_not_use(
    thread_home: tuple[dict[str, str], str],
) -> None:
    env, _ = thread_home
    done = subprocess.run(
        [sys.executable, "-c", _CONNECTED.format(uri=env["CLEW_HOME"])],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    heavy = sorted(name for name in NOT_ON_CONNECT if name in loaded)
    assert not heavy, f"clew.connect() imported {heavy}"
