"""A run's writes are batched: start and end are its only commits, yet nothing the docs
promise is lost and every read shows what was logged (docs/runs.md, "Params, tags and metrics
are queued")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event

import clew
from clew.errors import ConflictError, RunFinishedError
from clew.service import audit
from clew.store.location import Store


def _run_actions(store: Store, run_id: str) -> list[str]:
    return [entry.action for entry in audit.entries(store, f"run:{run_id}", newest_first=False)]


@pytest.fixture
def commits(client: clew.Client) -> Iterator[list[str]]:
    """Every transaction the embedded store commits while the test runs."""
    seen: list[str] = []
    engine = client.store.db.engine

    def note(_connection: object) -> None:
        seen.append("commit")

    event.listen(engine, "commit", note)
    yield seen
    event.remove(engine, "commit", note)


@pytest.mark.embedded_only
def test_a_short_run_costs_two_commits_whatever_it_logged(
    client: clew.Client, store: Store, commits: list[str]
) -> None:
    with client.start_run(experiment="batched", name="warm"):
        pass  # the first run records code and environment; later runs reuse them
    commits.clear()
    with client.start_run(experiment="batched", name="short") as run:
        run.log_params({f"p{i}": i for i in range(10)})
        run.set_tags({"team": "risk"})
        run.log_metrics({f"m{i}": i / 10 for i in range(5)})
    assert len(commits) == 2
    assert _run_actions(store, run.id) == ["run.create", "run.end"]
    found = client.get_run(run.id)
    assert found.params == {f"p{i}": str(i) for i in range(10)}
    assert found.tags == {"team": "risk"}
    assert found.metrics == {f"m{i}": i / 10 for i in range(5)}


def test_reads_during_a_run_show_what_was_logged(client: clew.Client) -> None:
    with client.start_run(experiment="reads") as run:
        run.log_params({"model": "rf"})
        run.set_tag("team", "risk")
        run.log_metric("auc", 0.9)
        seen = client.get_run(run.id)
        assert (seen.params, seen.tags, seen.metrics) == (
            {"model": "rf"},
            {"team": "risk"},
            {"auc": 0.9},
        )
        run.set_tag("team", "fraud")  # a later tag replaces the queued one
        found = client.search_runs("params.model = 'rf' and tags.team = 'fraud'")
        assert list(found["run_id"]) == [run.id]
    assert client.get_run(run.id).tags == {"team": "fraud"}


def test_a_changed_param_is_refused_at_the_call(client: clew.Client) -> None:
    with client.start_run(experiment="immutable", params={"seed": 1}) as run:
        run.log_params({"depth": 3})
        run.log_params({"depth": 3})  # the same value again is a no-op
        with pytest.raises(ConflictError, match=r"'depth' .* is already '3'"):
            run.log_params({"depth": 4, "lr": 0.1})
        with pytest.raises(ConflictError, match=r"'seed' .* is already '1'"):
            run.log_param("seed", 2)
    assert client.get_run(run.id).params == {"seed": "1", "depth": "3"}


def test_a_param_another_client_set_meanwhile_is_refused_once_then_the_run_ends(
    client: clew.Client,
) -> None:
    """Whether the background writer met the conflict first or not, the caller hears of it."""
    run = client.start_run(experiment="raced")
    other = clew.Client(client.uri)
    other._service.runs.log_params(run.id, {"depth": 4}, "bob")
    run.log_params({"depth": 3})  # this client has not seen the other's param
    run.set_tag("team", "risk")
    run.log_metric("loss", 0.5)
    time.sleep(0.5)  # let the background writer meet the conflict (it must keep the param)
    with pytest.raises(ConflictError, match=r"'depth' .* is already '4'"):
        run.end()
    assert client.get_run(run.id).status == "RUNNING"  # nothing was half-written
    run.end()  # the conflicting param cannot be written; everything else is
    ended = client.get_run(run.id)
    assert (ended.status, ended.params, ended.tags, ended.metrics) == (
        "FINISHED",
        {"depth": "4"},
        {"team": "risk"},
        {"loss": 0.5},
    )
    other.close()


def test_an_ended_run_refuses_params_and_tags(client: clew.Client) -> None:
    run = client.start_run(experiment="closed")
    run.end()
    for call in (lambda: run.log_params({"a": 1}), lambda: run.set_tags({"t": "v"})):
        with pytest.raises(RunFinishedError, match=run.id):
            call()


_CHILD = textwrap.dedent(
    """
    import sys, time
    import clew
    run = clew.start_run(experiment="killed")
    run.log_params({"model": "rf", "depth": 3})
    run.set_tags({"team": "risk"})
    run.log_metrics({"auc": 0.9, "loss": 0.1})
    if sys.argv[1] == "flush":
        run.flush()
    else:
        run.end()
    print(run.id, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("point", ["flush", "end"])
def test_a_killed_process_keeps_everything_logged_before_its_flush_or_end(
    client: clew.Client, point: str
) -> None:
    """kill -9 right after ``flush()`` or ``end()`` returned: all of it is in the store."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, point],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    found = client.get_run(run_id)
    assert (found.status, found.params, found.tags, found.metrics) == (
        "RUNNING" if point == "flush" else "FINISHED",
        {"model": "rf", "depth": "3"},
        {"team": "risk"},
        {"auc": 0.9, "loss": 0.1},
    )
