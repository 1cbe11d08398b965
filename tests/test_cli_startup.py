"""``clew --help`` imports no command module; each command imports only what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


_CONNECTED = """
import json, sys
import clew
clew.connect({uri!r})
print(json.dumps(sorted(sys.modules)))
"""
# What opening an embedded store must not load: frames, the migration tool, the HTTP client
# and server, models. (numpy and pyarrow still come with the capture client; see
# docs/benchmarks.md, "Start-up".)
NOT_ON_CONNECT = ("pandas", "alembic", "httpx", "uvicorn", "fastapi", "sklearn", "sqlalchemy.orm")


@pytest.mark.embedded_only
@pytest.mark.sqlite_only  # a store file in `home`: the fixture made it
def test_connecting_to_an_existing_embedded_store_imports_nothing_it_does_not_use(
    client: object, home: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CONNECTED.format(uri=str(home))],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "CLEW_URI"},
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    heavy = sorted(name for name in NOT_ON_CONNECT if name in loaded)
    assert not heavy, f"clew.connect() imported {heavy}"


@pytest.mark.embedded_only
@pytest.mark.sqlite_only
def test_a_version_status_imports_no_frames_and_no_migrations(client: object, home: Path) -> None:
    """``clew status M/1`` answers from records: pandas and alembic stay unloaded."""
    script = _IMPORTED.format(args=["status", "M/1"])
    env = {**os.environ, "CLEW_HOME": str(home)}
    env.pop("CLEW_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "clew" in loaded
    heavy = sorted(loaded & {"pandas", "alembic", "httpx", "uvicorn", "fastapi", "sklearn"})
    assert not heavy, f"clew status imported {heavy}"
