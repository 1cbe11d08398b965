"""DVC import: a real DVC project (``dvc init``, two stages, ``dvc repro``) made here with the
real ``dvc`` command, brought into clew as runs; after another ``dvc repro`` only what changed
is added."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import NotFoundError
from clew.store import schema
from clew.store.location import Store

DVC = str(Path(sys.executable).parent / "dvc")
PIPELINE = """\
stages:
  prepare:
    cmd: python -c "open('prepared.csv','w').write(open('data.csv').read().upper())"
    deps: [data.csv]
    outs: [prepared.csv]
  train:
    cmd: python train.py
    deps: [prepared.csv]
    params: [train.lr, train.epochs]
    outs: [model.txt]
"""


def sh(cwd: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def count_runs(store: Store) -> int:
    with store.db.read() as connection:
        return int(connection.execute(select(func.count()).select_from(schema.runs)).scalar())


TRAIN = """\
import yaml

lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
open("model.txt", "w").write(f"{lr}\\n" + open("prepared.csv").read())
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project, run once (every `dvc` command takes seconds); each test gets a copy."""
    return make_project(tmp_path_factory.mktemp("dvc"))


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / template.name, symlinks=True))


def make_project(parent: Path) -> Path:
    root = parent / "churn-pipeline"
    root.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "ds@example.com")
    sh(root, "git", "config", "user.name", "Data Scientist")
    sh(root, DVC, "init", "-q")
    (root / "data.csv").write_text("tenure,churned\n1,1\n9,0\n")
    (root / "params.yaml").write_text("train:\n  lr: 0.1\n  epochs: 5\n")
    (root / "dvc.yaml").write_text(PIPELINE)
    (root / "train.py").write_text(TRAIN)
    sh(root, DVC, "repro", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "first pipeline run")
    return root


def test_stages_become_runs_with_params_commit_and_sha256_from_the_cache(
    client: clew.Client, project: Path
) -> None:
    result = client.imports.dvc(project)
    assert (result.imported, result.already) == (2, 0)
    assert result.notes == []
    commit = sh(project, "git", "rev-parse", "HEAD").strip()
    train = client.get_run(result.runs["train"])
    assert (train.name, train.status, train.experiment) == ("train", "FINISHED", "churn-pipeline")
    assert train.params == {"train.lr": "0.1", "train.epochs": "5"}
    assert train.properties["dvc"]["commit"] == commit
    model = client.lineage.downstream(f"run:{train.id}", max_depth=1).far_nodes("file")
    assert model["digest"].tolist() == [sha256(project / "model.txt")]
    properties = model["properties"].iloc[0]["dvc"]
    assert properties["md5"] == hashlib.md5((project / "model.txt").read_bytes()).hexdigest()
    assert properties["by_reference"] is False
    thread = client.lineage.upstream(f"run:{train.id}", max_depth=3).to_pandas()
    assert {"prepare", "data.csv"} <= set(thread["source_name"])


def test_a_second_import_after_dvc_repro_adds_only_the_changed_stage(
    client: clew.Client, store: Store, project: Path
) -> None:
    first = client.imports.dvc(project)
    assert client.imports.dvc(project).imported == 0
    assert count_runs(store) == 2
    (project / "params.yaml").write_text("train:\n  lr: 0.2\n  epochs: 5\n")
    sh(project, DVC, "repro", "-q")
    again = client.imports.dvc(project)
    assert (again.imported, again.already) == (1, 1)
    assert again.runs["prepare"] == first.runs["prepare"]
    assert again.runs["train"] != first.runs["train"]
    assert client.get_run(again.runs["train"]).params["train.lr"] == "0.2"
    assert count_runs(store) == 3


def test_an_output_missing_from_the_cache_is_recorded_by_reference_and_said_so(
    client: clew.Client, project: Path
) -> None:
    shutil.rmtree(project / ".dvc" / "cache")
    (project / "model.txt").write_text("edited by hand\n")
    result = client.imports.dvc(project)
    assert len(result.notes) == 1
    assert "model.txt" in result.notes[0] and "recorded by reference" in result.notes[0]
    train = client.get_run(result.runs["train"])
    model = client.lineage.downstream(f"run:{train.id}", max_depth=1).far_nodes("file")
    assert model["properties"].iloc[0]["dvc"]["by_reference"] is True


def test_a_directory_that_is_not_a_dvc_project_gets_one_sentence(
    client: clew.Client, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match=r"has no dvc.yaml; point at a DVC project"):
        client.imports.dvc(tmp_path)
    result = CliRunner().invoke(app, ["import", "dvc", str(tmp_path)])
    assert result.exit_code != 0 and "has no dvc.yaml" in result.output
    assert "Traceback" not in result.output


def test_the_cli_imports_a_project(client: clew.Client, project: Path) -> None:
    result = CliRunner().invoke(app, ["import", "dvc", str(project)])
    assert result.exit_code == 0, result.output
    assert "imported 2 stages" in result.output
