"""Experiment runs: the context manager, params, tags, nesting, status and finished runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import clew
from clew.errors import (
    ClewError,
    ConflictError,
    InvalidInputError,
    NameConflictError,
    NotFoundError,
    RunFinishedError,
)
from clew.service import audit
from clew.store.location import Store


def test_start_run_records_a_finished_run(client: clew.Client) -> None:
    with clew.start_run(experiment="churn", name="train", kind="training") as run:
        assert clew.active_run() is run
        run.log_params({"model": "rf", "n_estimators": 200})
        run.set_tags({"team": "risk"})
        run.log_metric("auc", 0.91)
    assert clew.active_run() is None
    record = clew.get_run(run.id)
    assert (record.experiment, record.name, record.kind) == ("churn", "train", "training")
    assert record.status == "FINISHED" and run.status == "FINISHED"
    assert record.params == {"model": "rf", "n_estimators": "200"}
    assert record.tags == {"team": "risk"}
    assert record.metrics == {"auc": 0.91}
    assert record.user == "alice"
    assert record.end_ms is not None and record.end_ms >= record.start_ms
    assert record.to_dict()["end_time"].endswith("Z")


def test_module_functions_log_to_the_active_run(client: clew.Client) -> None:
    with clew.start_run(experiment="module") as run:
        clew.log_param("lr", 0.1)
        clew.log_params({"depth": 3})
        clew.log_metric("loss", 0.5)
        clew.log_metrics({"acc": 0.8})
        clew.set_tag("stage", "dev")
        clew.set_tags({"owner": "alice"})
    record = clew.get_run(run.id)
    assert record.params == {"lr": "0.1", "depth": "3"}
    assert record.metrics == {"loss": 0.5, "acc": 0.8}
    assert record.tags == {"stage": "dev", "owner": "alice"}


def test_module_functions_without_an_active_run_say_what_to_do(client: clew.Client) -> None:
    with pytest.raises(ClewError, match="start_run"):
        clew.log_metric("loss", 1.0)


def test_params_can_be_relogged_with_the_same_value_only(client: clew.Client) -> None:
    with clew.start_run(experiment="params") as run:
        run.log_param("model", "rf")
        run.log_param("model", "rf")
        with pytest.raises(ConflictError, match="'model'") as raised:
            run.log_param("model", "xgb")
        assert "'rf'" in str(raised.value) and "'xgb'" in str(raised.value)
    assert clew.get_run(run.id).params == {"model": "rf"}


def test_params_given_at_start_are_immutable_too(client: clew.Client) -> None:
    with clew.start_run(experiment="params", params={"seed": 1}, tags={"t": "x"}) as run:
        with pytest.raises(ConflictError):
            run.log_params({"seed": 2})
        run.set_tag("t", "y")
    record = clew.get_run(run.id)
    assert record.params == {"seed": "1"}
    assert record.tags == {"t": "y"}


def test_param_and_key_validation(client: clew.Client) -> None:
    with clew.start_run(experiment="params") as run:
        with pytest.raises(InvalidInputError, match="6000"):
            run.log_param("huge", "x" * 6001)
        for bad_key in ("", "k" * 251, 3):
            with pytest.raises(InvalidInputError):
                run.log_param(bad_key, 1)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            run.set_tag("", "v")
    assert clew.get_run(run.id).params == {}


def test_nested_runs_pick_the_active_parent(client: clew.Client) -> None:
    with clew.start_run(experiment="search", name="sweep") as parent:
        with clew.start_run(experiment="search", name="trial-1", nested=True) as child:
            assert clew.active_run() is child
        with clew.start_run(experiment="search", name="trial-2", parent=parent) as explicit:
            pass
        assert clew.active_run() is parent
    assert clew.get_run(child.id).parent_id == parent.id
    assert clew.get_run(explicit.id).parent_id == parent.id
    assert clew.get_run(parent.id).parent_id is None
    children = clew.search_runs(f"attributes.parent_id = '{parent.id}'")
    assert set(children["run_id"]) == {child.id, explicit.id}


def test_nested_without_a_parent_is_refused(client: clew.Client) -> None:
    with pytest.raises(InvalidInputError, match="nested=True"):
        clew.start_run(experiment="x", nested=True)


def test_a_child_of_a_finished_run_is_refused(client: clew.Client) -> None:
    with clew.start_run(experiment="x") as parent:
        pass
    with pytest.raises(RunFinishedError):
        clew.start_run(experiment="x", parent=parent.id)


def test_exception_marks_the_run_failed_and_propagates(client: clew.Client) -> None:
    with pytest.raises(ZeroDivisionError), clew.start_run(experiment="fail") as run:
        run.log_metric("loss", 1.0)
        _ = 1 / 0
    record = clew.get_run(run.id)
    assert record.status == "FAILED"
    assert record.metrics == {"loss": 1.0}


def test_keyboard_interrupt_marks_the_run_killed(client: clew.Client) -> None:
    with pytest.raises(KeyboardInterrupt), clew.start_run(experiment="kill") as run:
        raise KeyboardInterrupt
    assert clew.get_run(run.id).status == "KILLED"


def test_logging_to_a_finished_run_is_refused(client: clew.Client) -> None:
    with clew.start_run(experiment="done") as run:
        pass
    calls = [
        lambda: run.log_param("a", 1),
        lambda: run.log_metric("m", 1.0),
        lambda: run.log_metrics({"m": 1.0}),
        lambda: run.set_tag("t", "v"),
        lambda: run.log_input("s3://bucket/data.csv", name="late"),
    ]
    for call in calls:
        with pytest.raises(RunFinishedError, match=run.id):
            call()
    run.end()  # ending twice is a no-op
    assert clew.get_run(run.id).status == "FINISHED"


def test_a_run_ended_elsewhere_refuses_writes_from_this_client(
    client: clew.Client, home: Path
) -> None:
    run = clew.start_run(experiment="shared")
    other = clew.Client(client.uri)
    other._service.runs.end_run(run.id, "KILLED", "bob")
    run.log_param("late", 1)  # queued: the store is asked at the next flush or the end
    with pytest.raises(RunFinishedError, match="KILLED"):
        run.flush()
    with pytest.raises(RunFinishedError, match="KILLED"):
        run.end()  # the queued param may not vanish silently
    assert other.get_run(run.id).params == {}
    client._metrics.discard(run.id)  # accepting the loss explicitly
    run.end()
    assert run.info.status == "KILLED"
    other.close()


def test_end_with_an_explicit_status(client: clew.Client) -> None:
    run = clew.start_run(experiment="manual")
    run.end("FAILED")
    assert clew.get_run(run.id).status == "FAILED"
    with pytest.raises(InvalidInputError, match="final status"):
        client._service.runs.end_run(run.id, "RUNNING", "alice")


def test_unknown_run_is_not_found(client: clew.Client) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        clew.get_run("01J9ZX5Q8W4T3V2N1M0K9H8G7F")


def test_bad_names_are_refused(client: clew.Client) -> None:
    with pytest.raises(ClewError):
        clew.start_run(experiment="has space")
    with pytest.raises(ClewError):
        clew.start_run(experiment="ok", kind="Not A Kind")
    with pytest.raises(InvalidInputError):
        clew.start_run(experiment="ok", name="x" * 201)


def test_every_run_write_is_in_the_audit_chain(client: clew.Client, store: Store) -> None:
    with clew.start_run(experiment="audited") as run:
        run.log_param("a", 1)
        run.set_tag("t", "v")
        run.log_metric("m", 1.0)
    entries = audit.entries(store, f"run:{run.id}", newest_first=False)
    actions = [entry.action for entry in entries]
    assert actions == ["run.create", "run.end"]  # params and tags are written with the end
    ended = clew.get_run(run.id)
    assert (ended.params, ended.tags) == ({"a": "1"}, {"t": "v"})
    with clew.start_run(experiment="audited") as flushed:
        flushed.log_param("a", 1)
        flushed.set_tag("t", "v")
        flushed.flush()
    entries = audit.entries(store, f"run:{flushed.id}", newest_first=False)
    actions = [entry.action for entry in entries]
    assert actions == ["run.create", "run.log_params", "run.set_tags", "run.end"]


def test_open_run_is_finished_at_interpreter_exit_or_failed_after_a_crash(
    client: clew.Client,
) -> None:
    """The child processes inherit this test's store (CLEW_HOME, CLEW_URI or the server)."""
    script = textwrap.dedent(
        """
        import sys
        import clew
        run = clew.start_run(experiment="exit")
        run.log_metric("loss", 0.5)
        print(run.id, flush=True)
        if sys.argv[1] == "crash":
            raise RuntimeError("boom")
        """
    )
    statuses = {}
    for mode in ("clean", "crash"):
        result = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
        statuses[mode] = client.get_run(result.stdout.strip()).status
    assert statuses == {"clean": "FINISHED", "crash": "FAILED"}


def test_a_look_alike_experiment_name_is_refused_naming_the_existing_one(
    client: clew.Client,
) -> None:
    with client.start_run("Churn-Study", "first"):
        pass
    with pytest.raises(NameConflictError, match="the existing experiment 'Churn-Study'"):
        client.start_run("churn-study", "second")
    with client.start_run("Churn-Study", "third"):
        pass
    assert sorted(client.search_runs(experiments=["Churn-Study"])["name"]) == ["first", "third"]
