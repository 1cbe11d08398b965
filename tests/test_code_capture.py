"""Automatic capture on every run: git state (real repositories), remote permalinks without
credentials, command line, environment, seeds — and "which models came from commit X"."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sklearn
from conftest import run_git
from sqlalchemy import func, select

import clew
from clew.client import provenance
from clew.errors import InvalidInputError
from clew.integrations import git
from clew.store import schema


def _code(client: clew.Client, run_id: str) -> clew.ArtifactRecord:
    record = client.get_run(run_id)
    assert record.code_artifact_id is not None
    return client._service.artifacts.get(record.code_artifact_id)


def test_clean_checkout_is_captured(client: clew.Client, git_repo: Path) -> None:
    with clew.start_run(experiment="code") as run:
        pass
    code = _code(client, run.id)
    commit = run_git(git_repo, "rev-parse", "HEAD")
    assert (code.type, code.name) == ("code", "churn")
    assert code.properties["commit"] == commit
    assert code.properties["branch"] == "main"
    assert code.properties["dirty"] is False
    assert code.properties["diff_digest"] is None
    assert code.properties["remote"] == "https://github.com/acme/churn.git"
    assert code.properties["permalink"] == f"https://github.com/acme/churn/tree/{commit}"
    assert "token123" not in str(code.properties)


def test_dirty_checkout_stores_the_diff_as_a_blob(client: clew.Client, git_repo: Path) -> None:
    with clew.start_run(experiment="code") as clean:
        pass
    (git_repo / "train.py").write_text("print('training with a tweak')\n")
    provenance.refresh()
    with clew.start_run(experiment="code") as dirty:
        pass
    before, after = _code(client, clean.id), _code(client, dirty.id)
    assert after.properties["dirty"] is True
    assert after.properties["commit"] == before.properties["commit"]
    assert after.digest != before.digest
    diff = client.store.blobs.read_bytes(after.properties["diff_digest"])
    assert b"+print('training with a tweak')" in diff
    assert after.properties["diff_digest"] == "sha256:" + hashlib.sha256(diff).hexdigest()


def test_detached_head_has_no_branch(client: clew.Client, git_repo: Path) -> None:
    run_git(git_repo, "checkout", "-q", "--detach")
    with clew.start_run(experiment="code") as run:
        pass
    assert _code(client, run.id).properties["branch"] is None


def test_outside_a_repository_nothing_is_captured(
    client: clew.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    monkeypatch.chdir(plain)
    provenance.refresh()
    with clew.start_run(experiment="code") as run:
        pass
    record = client.get_run(run.id)
    assert record.code_artifact_id is None
    assert record.environment_artifact_id is not None


def test_environment_and_command_line_are_captured(client: clew.Client) -> None:
    with clew.start_run(experiment="env") as run:
        pass
    record = client.get_run(run.id)
    environment = client._service.artifacts.get(record.environment_artifact_id)
    assert environment.type == "environment"
    facts = environment.properties
    assert facts["python"] == platform.python_version()
    assert facts["platform"] == platform.platform()
    assert facts["libraries"]["scikit-learn"] == sklearn.__version__
    assert facts["libraries"]["numpy"] == np.__version__
    assert "torch" not in facts["libraries"] or facts["libraries"]["torch"]
    assert client.store.blobs.verify(environment.digest)
    assert record.command == provenance.command_line()


def test_script_run_gets_a_permalink_to_the_script_and_its_command(
    git_repo: Path, tmp_path: Path
) -> None:
    (git_repo / "train.py").write_text(
        textwrap.dedent(
            """
            import clew
            with clew.start_run(experiment="script") as run:
                clew.seed(7)
            print(run.id)
            """
        )
    )
    run_git(git_repo, "commit", "-q", "-am", "use clew")
    commit = run_git(git_repo, "rev-parse", "HEAD")
    home = tmp_path / "script-home"
    env = {k: v for k, v in os.environ.items() if k != "CLEW_URI"}
    result = subprocess.run(
        [sys.executable, "train.py", "--epochs", "3"],
        cwd=git_repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "CLEW_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    client = clew.Client(str(home))
    record = client.get_run(run_id)
    code = client._service.artifacts.get(record.code_artifact_id)
    client.close()
    assert record.command == "train.py --epochs 3"
    assert record.params == {"seed": "7"}
    assert code.properties["script"] == "train.py"
    assert code.properties["permalink"] == f"https://github.com/acme/churn/blob/{commit}/train.py"


def test_seed_seeds_libraries_and_is_recorded(client: clew.Client) -> None:
    assert clew.seed(1234) == 1234
    first = (random.random(), np.random.rand())
    clew.seed(1234)
    assert (random.random(), np.random.rand()) == first
    with clew.start_run(experiment="seeded") as run:
        clew.seed(99)
    record = clew.get_run(run.id)
    assert record.seed == 1234  # the seed in force when the run started
    assert record.params == {"seed": "99"}  # and the one set during it
    with pytest.raises(InvalidInputError):
        clew.seed(-1)


def test_which_models_came_from_commit_x(client: clew.Client, git_repo: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with clew.start_run(experiment="code", name="train-a") as first:
        first.log_model(model, name="churn-a")
    with clew.start_run(experiment="code", name="train-b") as second:
        second.log_model(model, name="churn-b")
    (git_repo / "other.py").write_text("x = 1\n")
    run_git(git_repo, "add", "other.py")
    run_git(git_repo, "commit", "-q", "-m", "second commit")
    provenance.refresh()
    with clew.start_run(experiment="code", name="train-c") as later:
        later.log_model(model, name="churn-c")
    old_code = _code(client, first.id)
    models = clew.lineage.downstream(f"code:churn@{old_code.digest}", types=["model"]).to_pandas()
    assert sorted(models["destination_name"]) == ["churn-a", "churn-b"]
    assert set(models["depth"]) == {2}


@pytest.mark.parametrize(
    ("remote", "cleaned", "link"),
    [
        (
            "https://token123@github.com/acme/churn.git",
            "https://github.com/acme/churn.git",
            "https://github.com/acme/churn/blob/abc123/src/train.py",
        ),
        (
            "https://user:secret@gitlab.example.com:8443/group/sub/churn.git",
            "https://gitlab.example.com:8443/group/sub/churn.git",
            "https://gitlab.example.com/group/sub/churn/-/blob/abc123/src/train.py",
        ),
        (
            "git@bitbucket.org:acme/churn.git",
            "bitbucket.org:acme/churn.git",
            "https://bitbucket.org/acme/churn/src/abc123/src/train.py",
        ),
        (
            "ssh://git@github.com/acme/churn.git",
            "ssh://github.com/acme/churn.git",
            "https://github.com/acme/churn/blob/abc123/src/train.py",
        ),
        (
            "https://oauth2:tok@git.internal.example/ml/churn.git",
            "https://git.internal.example/ml/churn.git",
            "https://git.internal.example/ml/churn.git",
        ),
        ("/srv/git/churn.git", "/srv/git/churn.git", "/srv/git/churn.git"),
    ],
)
def test_remotes_are_cleaned_and_linked(remote: str, cleaned: str, link: str) -> None:
    assert git.clean_remote(remote) == cleaned
    assert git.permalink(git.clean_remote(remote), "abc123", "src/train.py") == link


def test_permalinks_without_a_script_point_at_the_tree() -> None:
    assert (
        git.permalink("https://github.com/a/b.git", "c0", None) == "https://github.com/a/b/tree/c0"
    )
    assert git.permalink("git@gitlab.com:a/b.git", "c0", None) == "https://gitlab.com/a/b/-/tree/c0"
    assert (
        git.permalink("https://bitbucket.org/a/b", "c0", None) == "https://bitbucket.org/a/b/src/c0"
    )
    assert git.permalink(None, "c0", None) is None
    assert git.clean_remote(None) is None


def test_capture_is_recorded_once_per_process(client: clew.Client, git_repo: Path) -> None:
    with clew.start_run(experiment="code") as one:
        pass
    with clew.start_run(experiment="code") as two:
        pass
    first, second = client.get_run(one.id), client.get_run(two.id)
    assert first.code_artifact_id == second.code_artifact_id
    assert first.environment_artifact_id == second.environment_artifact_id
    artifacts = schema.artifacts
    query = select(func.count()).select_from(artifacts).where(artifacts.c.type == "code")
    with client.store.db.read() as connection:
        assert connection.execute(query).scalar_one() == 1
