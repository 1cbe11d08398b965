"""Metric series: steps, NaN/inf stored faithfully, bad values refused at the call, and the
background batcher's guarantees (flush at run end and at interpreter exit)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import select

import clew
from clew.errors import InvalidInputError, RunFinishedError
from clew.store import schema
from clew.store.location import Store


def _points(store: Store, run_id: str, key: str) -> list[tuple[int, float | None]]:
    """The stored rows themselves, straight from the store's database (SQLite or PostgreSQL)."""
    table = schema.metrics
    query = (
        select(table.c.step, table.c.value)
        .where(table.c.run_id == run_id, table.c.key == key)
        .order_by(table.c.step)
    )
    with store.db.read() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_default_step_counts_up_per_key(client: clew.Client, store: Store) -> None:
    with clew.start_run(experiment="steps") as run:
        for value in (0.9, 0.7, 0.5):
            run.log_metric("loss", value)
        run.log_metric("acc", 0.1)
        run.log_metric("acc", 0.2, step=10)
        run.log_metric("acc", 0.3)
    assert _points(store, run.id, "loss") == [(0, 0.9), (1, 0.7), (2, 0.5)]
    assert _points(store, run.id, "acc") == [(0, 0.1), (10, 0.2), (11, 0.3)]
    history = client.metric_history(run.id, "loss")
    assert list(history.columns) == ["step", "value", "timestamp"]
    assert history["value"].tolist() == [0.9, 0.7, 0.5]


def test_latest_value_is_the_highest_step(client: clew.Client) -> None:
    with clew.start_run(experiment="latest") as run:
        run.log_metric("loss", 0.1, step=5)
        run.log_metric("loss", 0.9, step=1)
        run.flush()
        run.log_metric("loss", 0.8, step=2)
    assert clew.get_run(run.id).metrics == {"loss": 0.1}


def test_nan_and_infinities_are_stored_faithfully(client: clew.Client, store: Store) -> None:
    with clew.start_run(experiment="special") as run:
        run.log_metric("x", math.nan)
        run.log_metric("x", math.inf)
        run.log_metric("x", -math.inf)
        run.log_metric("x", np.float32(1.5))
        run.log_metric("x", np.int64(7))
        run.log_metric("x", 3)
        run.log_metric("last_nan", float("nan"))
    assert _points(store, run.id, "x") == [
        (0, None),
        (1, math.inf),
        (2, -math.inf),
        (3, 1.5),
        (4, 7.0),
        (5, 3.0),
    ]
    values = client.metric_history(run.id, "x")["value"].tolist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.5, 7.0, 3.0]
    metrics = clew.get_run(run.id).metrics
    assert math.isnan(metrics["last_nan"]) and metrics["x"] == 3.0


@pytest.mark.parametrize("bad", ["0.5", None, True, [1.0], Decimal("1.5"), 1j, np.bool_(True)])
def test_non_numeric_metrics_are_refused_at_the_call(client: clew.Client, bad: object) -> None:
    with clew.start_run(experiment="bad") as run:
        with pytest.raises(InvalidInputError, match="metrics must be numbers"):
            run.log_metric("m", bad)  # type: ignore[arg-type]
        run.log_metric("m", 1.0)
    assert clew.get_run(run.id).metrics == {"m": 1.0}


def test_bad_steps_keys_and_huge_ints_are_refused_at_the_call(client: clew.Client) -> None:
    with clew.start_run(experiment="bad") as run:
        with pytest.raises(InvalidInputError, match="step"):
            run.log_metric("m", 1.0, step="1")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="step"):
            run.log_metric("m", 1.0, step=1.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="timestamp"):
            run.log_metric("m", 1.0, timestamp="now")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="too large"):
            run.log_metric("m", 10**400)
        with pytest.raises(InvalidInputError):
            run.log_metric("", 1.0)
        run.log_metric("m", 2.0, step=np.int32(4))
    assert client.metric_history(run.id, "m")["step"].tolist() == [4]


def test_log_metrics_shares_one_step(client: clew.Client, store: Store) -> None:
    with clew.start_run(experiment="batch") as run:
        run.log_metrics({"a": 1.0, "b": 2.0}, step=3)
    assert _points(store, run.id, "a") == [(3, 1.0)]
    assert _points(store, run.id, "b") == [(3, 2.0)]


def test_points_are_written_in_the_background_without_ending_the_run(
    client: clew.Client, store: Store
) -> None:
    import time

    run = clew.start_run(experiment="background")
    for step in range(1000):
        run.log_metric("loss", step / 1000)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_points(store, run.id, "loss")) < 1000:
        time.sleep(0.05)
    assert len(_points(store, run.id, "loss")) == 1000
    run.end()


def test_a_failed_background_write_is_raised_at_end_and_points_are_kept(
    client: clew.Client, store: Store
) -> None:
    run = clew.start_run(experiment="lost")
    run.log_metric("loss", 1.0)
    client._service.runs.end_run(run.id, "KILLED", "bob")
    with pytest.raises(RunFinishedError):
        run.end()
    run.flush()  # the point is kept for the end that failed: a retried end sends it again
    assert _points(store, run.id, "loss") == []
    # So ending again fails the same way until the loss is accepted explicitly.
    with pytest.raises(RunFinishedError, match="already ended"):
        run.end()
    client._metrics.discard(run.id)
    run.end()
    assert run.info.status == "KILLED"


_EXIT_SCRIPT = textwrap.dedent(
    """
    import clew

    run = clew.start_run(experiment="exit", capture_code=False)
    for step in range(100_000):
        run.log_metric("loss", 1.0 / (step + 1))
    print(run.id, flush=True)
    """
)


def test_every_point_is_flushed_at_interpreter_exit(client: clew.Client, store: Store) -> None:
    """The child process inherits this test's store (CLEW_HOME, CLEW_URI or the server)."""
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    points = _points(store, run_id, "loss")
    assert (len(points), len({step for step, _ in points})) == (100_000, 100_000)
    assert client.get_run(run_id).status == "FINISHED"
