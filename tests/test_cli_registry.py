"""The governed-registry commands: models, versions, decisions, promotion, policy, trace, audit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tamper import corrupt_blob, execute_sql
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.provenance import refresh
from clew.store.location import Store

runner = CliRunner(env={"COLUMNS": "200"})
POLICY = """\
roles:
  validators: [bob]
approvals:
  roles: [validators]
  required: 1
production:
  evidence:
    metrics: ["auc >= 0.8"]
"""


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def as_json(*args: str) -> object:
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result: object, contains: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert contains in lines[0]
    assert "Traceback" not in result.output


def train_run(auc: float = 0.9) -> str:
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
    with clew.start_run(experiment="churn", name="train") as run:
        run.log_input(frame, name="churn-train")
        run.log_metric("auc", auc)
        run.log_model(LogisticRegression().fit(frame[["x"]], frame["y"]), name="churn-lr")
    return run.id


def as_user(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    monkeypatch.setenv("CLEW_USER", user)


@pytest.fixture
def registered(client: clew.Client) -> str:
    """churn/1 registered by alice from a training run, with the policy above in force."""
    run_id = train_run()
    result = invoke("register", f"run:{run_id}", "churn", "-d", "first try", "-f", "json")
    assert result.exit_code == 0, result.output
    clew.set_policy(POLICY)
    return json.loads(result.stdout)["ref"]


def test_register_prints_the_version(client: clew.Client) -> None:
    run_id = train_run()
    result = invoke("register", run_id, "churn")
    assert result.exit_code == 0, result.output
    assert "registered churn/1" in result.stdout
    data = as_json("register", f"run:{run_id}", "churn")
    assert data["ref"] == "churn/2" and data["run_id"] == run_id
    assert data["digest"].startswith("sha256:")


def test_register_errors_are_one_line(client: clew.Client) -> None:
    assert_one_line_error(invoke("register", "run:01J00000000000000000000000", "churn"), "run")
    with clew.start_run(experiment="x") as run:
        run.log_metric("a", 1.0)
    assert_one_line_error(invoke("register", f"run:{run.id}", "churn"), run.id)


def test_models_list_and_show(registered: str) -> None:
    assert "churn" in invoke("models", "list").stdout
    listed = as_json("models", "list")["models"]
    assert [m["name"] for m in listed] == ["churn"]
    assert set(listed[0]) >= {"name", "owner", "latest_version", "status", "aliases"}

    shown = as_json("models", "show", "churn")
    assert set(shown) == {"model", "versions", "history"}
    assert shown["model"]["name"] == "churn"
    assert [v["version"] for v in shown["versions"]] == [1]
    assert shown["history"][0]["kind"] == "registered"
    table = invoke("models", "show", "churn")
    assert "churn/1" not in table.stderr and "registered" in table.stdout


def test_models_list_empty(client: clew.Client) -> None:
    assert "no models registered" in invoke("models", "list").stdout
    assert as_json("models", "list") == {"models": []}


def test_unknown_model_is_one_line(client: clew.Client) -> None:
    assert_one_line_error(invoke("models", "show", "nope"), "nope")
    assert_one_line_error(invoke("versions", "nope"), "nope")
    assert_one_line_error(invoke("approve", "nope/1", "-m", "ok"), "nope")
    assert_one_line_error(invoke("status", "not a ref"), "use one of")


def test_versions_lists_status(registered: str) -> None:
    versions = as_json("versions", "churn")["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "pending")]
    assert {"ref", "approvals", "aliases", "created_by", "digest"} <= set(versions[0])


def test_self_approval_and_wrong_role_are_refused(
    registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line_error(invoke("approve", registered, "-m", "mine, fine"), "alice")
    as_user(monkeypatch, "carol")
    assert_one_line_error(invoke("approve", registered, "-m", "looks ok"), "validators")
    assert as_json("status", registered)["approvals"] == 0


def test_approve_needs_a_comment(registered: str) -> None:
    result = invoke("approve", registered)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_approve_promote_rollback(registered: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(invoke("promote", registered, "production"), "approval")

    as_user(monkeypatch, "bob")
    approved = as_json("approve", registered, "-m", "validated", "-e", "dataset:churn-train")
    assert approved["kind"] == "approved" and approved["actor"] == "bob"
    status = as_json("status", registered)
    assert status["approved"] is True and status["meets_production_policy"] is True
    assert "allowed" in invoke("status", registered).stdout

    promoted = invoke("promote", registered, "production", "-m", "go live")
    assert promoted.exit_code == 0, promoted.output
    assert "churn@production -> churn/1" in promoted.stdout

    as_user(monkeypatch, "alice")
    second = as_json("register", f"run:{train_run()}", "churn")["ref"]
    as_user(monkeypatch, "bob")
    invoke("approve", second, "-m", "validated")
    moved = as_json("promote", second, "production")
    assert (moved["version"], moved["from_version"]) == (2, 1)

    back = as_json("rollback", "churn", "production", "-m", "regression")
    assert back["version"] == 1 and back["alias"] == "production"
    assert clew.get_version("churn@production").version == 1
    history = as_json("models", "history", "churn", "--alias", "production")["history"]
    assert [h["version"] for h in history] == [1, 2, 1]
    # Versions are integers as docs/cli.md shows them, never 2.0 (a DataFrame's float column
    # holding the first move's missing from_version once made them so).
    assert [repr(h["from_version"]) for h in history] == ["2", "1", "None"]
    assert_one_line_error(invoke("rollback", "churn", "staging"), "staging")


def test_reject_revoke_archive(registered: str, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, "bob")
    rejected = invoke("reject", registered, "-m", "leaks the label")
    assert rejected.exit_code == 0 and "rejected churn/1 by bob" in rejected.stdout
    assert_one_line_error(invoke("promote", registered, "staging"), "reject")

    as_user(monkeypatch, "alice")
    second = as_json("register", f"run:{train_run()}", "churn")["ref"]
    as_user(monkeypatch, "bob")
    invoke("approve", second, "-m", "ok")
    assert as_json("revoke", second, "-m", "bias found")["kind"] == "revoked"
    assert_one_line_error(invoke("promote", second, "production"), "revoked")

    as_user(monkeypatch, "alice")
    third = as_json("register", f"run:{train_run()}", "churn")["ref"]
    assert as_json("archive", third, "-m", "superseded")["kind"] == "archived"
    assert_one_line_error(invoke("promote", third, "staging"), "archived")


def test_policy_set_show_and_bad_policy(client: clew.Client, tmp_path: Path) -> None:
    assert as_json("policy", "show")["default"] is True
    good = tmp_path / "policy.yaml"
    good.write_text(POLICY)
    result = invoke("policy", "set", str(good))
    assert result.exit_code == 0 and "policy v1 is in force" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("approvals: [unclosed\n")
    assert_one_line_error(invoke("policy", "set", str(bad)), "YAML")
    shown = as_json("policy", "show")
    assert shown["version"] == 1 and shown["rules"]["roles"] == {"validators": ["bob"]}
    assert "validators" in invoke("policy", "show").stdout

    missing = invoke("policy", "set", str(tmp_path / "absent.yaml"))
    assert missing.exit_code == 2


def test_a_misspelt_alias_needs_new_alias(registered: str, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, "bob")
    invoke("approve", registered, "-m", "validated")
    assert invoke("promote", registered, "production").exit_code == 0
    as_user(monkeypatch, "alice")
    second = as_json("register", f"run:{train_run()}", "churn")["ref"]
    assert_one_line_error(invoke("promote", second, "prodution"), "nearest: production")
    assert_one_line_error(invoke("promote", second, "canary"), "--new-alias")
    created = invoke("promote", second, "canary", "--new-alias")
    assert created.exit_code == 0, created.output
    assert "churn@canary -> churn/2" in created.stdout


@pytest.fixture
def served(registered: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    as_user(monkeypatch, "bob")
    clew.approve(registered, "validated")
    clew.promote(registered, "production")
    model = clew.load_model("churn@production")
    _, prediction_ids = model.predict_with_ids(pd.DataFrame({"x": [0.5, 2.5]}))
    clew.flush_captures()
    return list(prediction_ids)


def test_trace_table_and_json(git_repo: Path, served: list[str]) -> None:
    """In a git repository every step is checked: exit 0, outcome verified."""
    result = invoke("trace", served[1])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"trace of prediction {served[1]}" in out
    assert "approved by bob" in out and "churn/1" in out and "dataset:churn-train" in out
    assert "all 6 steps verified" in out

    data = as_json("trace", f"prediction:{served[0]}")
    assert set(data) == {"prediction_id", "outcome", "verified", "steps"}
    assert data["outcome"] == "verified" and data["verified"] is True
    kinds = [step["kind"] for step in data["steps"]]
    assert kinds[:4] == ["prediction", "model_version", "approvals", "training_run"]
    keys = {"kind", "title", "outcome", "verified", "reason", "details"}
    assert all(keys <= set(s) for s in data["steps"])
    assert {step["outcome"] for step in data["steps"]} == {"verified"}


@pytest.fixture
def outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is no git repository, so runs capture no code revision."""
    directory = tmp_path / "not-a-repo"
    directory.mkdir()
    monkeypatch.chdir(directory)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    refresh()
    return directory


def test_trace_exits_3_when_a_step_is_not_checkable(outside_git: Path, served: list[str]) -> None:
    """Outside a git repository no code revision is captured: not checkable, not failed."""
    result = invoke("trace", served[0])
    assert result.exit_code == 3, result.output
    assert "1 step not checkable" in result.stdout and "✗" not in result.stdout
    data = json.loads(invoke("trace", served[0], "--format", "json").stdout)
    assert data["outcome"] == "not_checkable" and data["verified"] is False
    run = data["steps"][3]
    assert run["outcome"] == "not_checkable" and "no code revision" in run["reason"]


def test_trace_exits_1_when_a_step_failed(git_repo: Path, served: list[str], store: Store) -> None:
    model = clew.get_version("churn/1")
    pickle_digest = store.blobs.read_manifest(model.digest)["model.pkl"]
    corrupt_blob(store.blobs, pickle_digest)
    result = invoke("trace", served[0], "--format", "json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["outcome"] == "failed" and data["steps"][1]["outcome"] == "failed"
    assert pickle_digest in data["steps"][1]["reason"]
    assert "1 of 6 steps failed" in invoke("trace", served[0]).stdout


def test_trace_unknown_prediction_is_one_line(served: list[str]) -> None:
    unknown = served[0].rsplit(".", 1)[0] + ".99"
    assert_one_line_error(invoke("trace", unknown), unknown)


def test_audit_log_and_filters(registered: str) -> None:
    entries = as_json("audit", "log", "--limit", "3")["entries"]
    assert len(entries) == 3
    assert entries[0]["seq"] > entries[1]["seq"] > entries[2]["seq"]
    assert set(entries[0]) == {
        "seq",
        "time",
        "actor",
        "action",
        "target",
        "request_id",
        "payload_digest",
        "prev_hash",
        "hash",
    }
    about = as_json("audit", "log", "--target", registered)["entries"]
    assert [e["action"] for e in about] == ["model.register"]
    assert "model.register" in invoke("audit", "log", "--action", "model.").stdout
    assert as_json("audit", "log", "--actor", "nobody") == {"entries": []}


def test_audit_verify_finds_an_edited_entry(served: list[str]) -> None:
    result = invoke("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "chain is intact" in result.stdout
    ok = as_json("audit", "verify")
    assert ok["ok"] is True and ok["batches_checked"] >= 1

    execute_sql(clew.get_client().store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    clew.get_client().close()
    from clew.client.default import reset

    reset()
    broken = invoke("audit", "verify")
    assert broken.exit_code == 1
    assert broken.stderr.strip().startswith("error: the audit chain is broken at entry #3")
    data = json.loads(invoke("audit", "verify", "-f", "json").stdout)
    assert data["ok"] is False and data["first_break"]["seq"] == 3


def test_serve_unknown_or_unapproved_ref_is_one_line(
    registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line_error(invoke("serve", "nope@production"), "nope")
    as_user(monkeypatch, "bob")
    clew.reject(registered, "leaks the label")
    assert_one_line_error(invoke("serve", registered), "reject")


def test_serve_answers_and_captures(served: list[str], home: Path) -> None:
    """A real `clew serve` process: /health, /predict with ids, then trace one after shutdown."""
    port = free_port()
    environment = {**os.environ, "CLEW_HOME": str(home), "CLEW_USER": "ops"}
    command = [str(Path(sys.executable).with_name("clew")), "serve", "churn@production"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_for_json(f"{base}/health", process)
        assert health["model"] == "churn/1"
        request = urllib.request.Request(
            f"{base}/predict",
            data=json.dumps({"inputs": [{"x": 0.1}, {"x": 2.9}]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    finally:
        process.send_signal(signal.SIGINT)
        log = process.communicate(timeout=60)[0]
    assert answer["model"] == "churn/1" and len(answer["prediction_ids"]) == 2
    assert "serving churn/1" in log
    trace = json.loads(invoke("trace", answer["prediction_ids"][1], "-f", "json").stdout)
    assert trace["steps"][0]["outcome"] == "verified"
    assert trace["steps"][0]["details"]["inputs"] == {"x": 2.9}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_json(url: str, process: subprocess.Popen[str]) -> dict:
    """Poll until the server answers; a loaded machine may take a while to import."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"clew serve exited early: {process.communicate()[0]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.3)
    pytest.fail("clew serve did not answer within 180 s")
