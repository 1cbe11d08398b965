"""``clew reproduce``: real git repositories with a tiny scikit-learn training script, trained in
a child process exactly as a user would, then re-run from the recorded commit, inputs and
command — bit-identical when training is deterministic, within tolerance when its seed is not
fixed — and refused, in one sentence, when the code or the data can no longer be recreated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_git
from tamper import corrupt_blob

import clew
from clew.client import provenance
from clew.domain import reproduction
from clew.errors import IntegrityError, ReproductionError
from clew.store.location import Store

TRAIN = """
    import sys

    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import clew

    frame = pd.read_csv("data/train.csv")
    features, labels = frame.drop(columns="label"), frame["label"]
    with clew.start_run(experiment="repro", name="train") as run:
        run.log_input("data/train.csv")
        if sys.argv[1:] == ["--forest"]:
            model = RandomForestClassifier(n_estimators=15, max_depth=3)  # seed not fixed
        else:
            model = LogisticRegression(max_iter={max_iter})
        model.fit(features, labels)
        run.log_metric("accuracy", float(model.score(features, labels)))
        run.log_model(model, name="iris-model")
    print(run.id)
"""


def _write_data(path: Path) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "label"})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository whose training script is committed and whose data is not (git-ignored)."""
    repo = tmp_path / "project"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(textwrap.dedent(TRAIN.format(max_iter=300)))
    (repo / ".gitignore").write_text("data/\n")
    run_git(repo, "add", "train.py", ".gitignore")
    run_git(repo, "commit", "-q", "-m", "training script")
    _write_data(repo / "data" / "train.csv")
    return repo


def train(repo: Path, *arguments: str) -> str:
    """Run the training script as a user would; the run id it printed."""
    done = subprocess.run(
        [sys.executable, "train.py", *arguments],
        cwd=repo,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_deterministic_training_reproduces_bit_identical(
    client: clew.Client, project: Path
) -> None:
    """The verdict, the signature, the lineage link and the policy evidence, from one re-run."""
    client.set_policy("production: {evidence: {reports: [reproduction]}}")
    version = client.register_model(train(project), "iris")
    assert any("reproduction" in r for r in client.version_status("iris/1")["reasons"])
    steps: list[str] = []
    report = client.reproduce(
        "iris/1", repository=project, progress=lambda step, _message: steps.append(step)
    )
    assert report.verdict == reproduction.BIT_IDENTICAL
    assert report.name == reproduction.REPORT_NAME
    assert report.body["model_digest"] == version.digest
    assert report.body["findings"]["reproduced_digest"] == version.digest
    [data] = report.body["findings"]["inputs"]
    assert (data["path"], data["status"]) == ("data/train.csv", "restored from the store")
    assert steps[0] == "plan" and steps[-1] == "report" and "run" in steps
    assert run_git(project, "worktree", "list").count("\n") == 0  # the worktree is gone
    assert not any("reproduction" in r for r in client.version_status("iris/1")["reasons"])

    stored = client._service.artifacts.get(report.artifact_id)
    document = json.loads(client.store.blobs.read_bytes(stored.digest))
    public = client.public_key().encode()
    assert reproduction.verify_report(document, public)
    document["report"]["verdict"] = reproduction.NOT_REPRODUCED
    assert not reproduction.verify_report(document, public)
    upstream = client.lineage.upstream(f"artifact:{report.artifact_id}", max_depth=1)
    assert upstream.to_pandas()["source_name"].tolist() == ["iris-model"]


def test_training_without_a_fixed_seed_reproduces_within_tolerance(
    client: clew.Client, project: Path
) -> None:
    client.register_model(train(project, "--forest"), "iris")
    report = client.reproduce(
        "iris/1",
        repository=project,
        tolerance=0.1,
        holdout=str(project / "data" / "train.csv"),
        min_agreement=0.8,
    )
    findings = report.body["findings"]
    assert findings["reproduced_digest"] != report.body["model_digest"]
    assert report.verdict == reproduction.WITHIN_TOLERANCE, report.body["reasons"]
    assert findings["holdout_rows"] == 150 and findings["agreement"] >= 0.8
    assert any("within 0.1" in reason for reason in report.body["reasons"])


def test_findings_beyond_tolerance_are_a_failed_report_that_is_no_evidence(
    client: clew.Client, project: Path
) -> None:
    client.set_policy("production: {evidence: {reports: [reproduction]}}")
    client.register_model(train(project), "iris")
    findings = {"reproduced_digest": "sha256:" + "0" * 64, "metrics": {"accuracy": 0.2}}
    report = client._service.reproductions.record(
        "iris/1", {**findings, "tolerance": 0.05}, client.actor
    )
    assert (report.verdict, report.name) == (
        reproduction.NOT_REPRODUCED,
        reproduction.FAILED_REPORT_NAME,
    )
    assert any("beyond 0.05" in reason for reason in report.body["reasons"]), report.body["reasons"]
    reasons = client.version_status("iris/1")["reasons"]
    assert any("required report 'reproduction' is missing" in reason for reason in reasons)
    with pytest.raises(clew.errors.InvalidInputError, match="unknown field"):
        client._service.reproductions.record("iris/1", {"verdict": "bit-identical"}, client.actor)
    with pytest.raises(clew.errors.InvalidInputError, match="agreement 2 must be"):
        client._service.reproductions.record("iris/1", {"agreement": 2}, client.actor)


def test_a_dirty_run_reproduces_from_its_kept_diff(client: clew.Client, project: Path) -> None:
    (project / "train.py").write_text(textwrap.dedent(TRAIN.format(max_iter=500)))
    provenance.refresh()
    client.register_model(train(project), "iris")
    run_git(project, "checkout", "--", "train.py")  # the change is gone from the clone
    report = client.reproduce("iris/1", repository=project)
    assert report.verdict == reproduction.BIT_IDENTICAL


def test_a_dirty_run_whose_diff_was_not_kept_is_refused(
    client: clew.Client, project: Path, store: Store
) -> None:
    (project / "train.py").write_text(textwrap.dedent(TRAIN.format(max_iter=500)))
    client.register_model(train(project), "iris")
    run = client.get_run(client.get_version("iris/1").run_id or "")
    code = client._service.artifacts.get(run.code_artifact_id or "")
    store.blobs.delete(code.properties["diff_digest"])
    with pytest.raises(ReproductionError, match="uncommitted changes whose diff was not kept"):
        client.reproduce("iris/1", repository=project)
    assert (
        "report" not in client.lineage.downstream("iris/1").to_pandas()["destination_type"].tolist()
    )


def test_a_commit_gone_from_the_repository_is_refused(client: clew.Client, project: Path) -> None:
    run_git(project, "checkout", "-q", "-b", "experiment")
    (project / "train.py").write_text(textwrap.dedent(TRAIN.format(max_iter=400)))
    run_git(project, "commit", "-q", "-am", "try more iterations")
    client.register_model(train(project), "iris")
    run_git(project, "checkout", "-q", "main")
    run_git(project, "branch", "-q", "-D", "experiment")
    run_git(project, "reflog", "expire", "--expire=now", "--all")
    run_git(project, "gc", "-q", "--prune=now")
    with pytest.raises(ReproductionError, match=r"commit \w{12} is not in the repository"):
        client.reproduce("iris/1", repository=project)


@pytest.mark.tampers
def test_a_tampered_input_blob_is_refused(client: clew.Client, project: Path, store: Store) -> None:
    client.register_model(train(project), "iris")
    data = client.get_run(client.get_version("iris/1").run_id or "").tags[reproduction.INPUTS_TAG]
    corrupt_blob(store.blobs, json.loads(data)["data/train.csv"])
    with pytest.raises(IntegrityError, match=r"input dataset:train\.csv was not restored"):
        client.reproduce("iris/1", repository=project)
    assert run_git(project, "worktree", "list").count("\n") == 0


def test_not_a_repository_and_bad_numbers_are_one_sentence(
    client: clew.Client, project: Path, tmp_path: Path
) -> None:
    client.register_model(train(project), "iris")
    with pytest.raises(ReproductionError, match="is not a git repository"):
        client.reproduce("iris/1", repository=tmp_path / "elsewhere")
    with pytest.raises(clew.errors.InvalidInputError, match="tolerance -1 must be"):
        client.reproduce("iris/1", repository=project, tolerance=-1)


def test_a_run_records_how_it_was_started_and_where_it_read_its_inputs(
    client: clew.Client, git_repo: Path
) -> None:
    (git_repo / "data").mkdir()
    (git_repo / "data" / "rows.csv").write_text("a,b\n1,2\n")
    outside = git_repo.parent / "outside.csv"
    outside.write_text("a\n3\n")
    with client.start_run("invocation") as run:
        read = run.log_input(Path("data/rows.csv"))
        far = run.log_input(str(outside))
    record = client.get_run(run.id)
    invocation = record.properties["invocation"]
    assert invocation["cwd"] == "." and invocation["in_repository"] is True
    assert invocation["argv"][1:] == sys.argv[1:]
    assert json.loads(record.tags[reproduction.INPUTS_TAG]) == {
        "data/rows.csv": read.digest,
        str(outside.resolve()): far.digest,
    }


@pytest.mark.slow
def test_build_env_reruns_in_a_venv_with_the_recorded_versions(
    client: clew.Client, project: Path
) -> None:
    client.register_model(train(project), "iris")
    report = client.reproduce("iris/1", repository=project, build_env=True)
    findings = report.body["findings"]
    assert findings["built_environment"] is True
    assert findings["environment_differences"] == []
    assert report.verdict == reproduction.BIT_IDENTICAL
