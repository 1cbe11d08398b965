"""A monitor run over "the last N" is pinned to the predictions it read: the same N with nothing
new is the same run, newer predictions make a new run of the newest N, and every check of a
run reads the same rows. Embedded, on PostgreSQL + S3 and through a server."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import clew


def _deployed(client: clew.Client) -> Any:
    """A classifier with a baseline and 300 captured predictions in three batches."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 600), "y": rng.normal(5, 2, 600)})
    with client.start_run("monitor", "train") as run:
        model = LogisticRegression().fit(frame, frame["x"] > 0)
        artifact = run.log_model(model, name="lastn-lr")
    client.register_model(artifact, "lastn")
    client.monitoring.create_baseline("lastn/1", frame)
    loaded = client.load_model("lastn/1")
    for start in (0, 100, 200):
        loaded.predict(frame.iloc[start : start + 100])
        client.flush_captures()
        time.sleep(0.005)  # batches a few milliseconds apart, as served traffic is
    return loaded, frame


def test_last_n_is_pinned_to_its_predictions_and_moves_only_when_new_ones_arrive(
    client: clew.Client,
) -> None:
    loaded, frame = _deployed(client)
    first = client.run_monitor("lastn/1", last=150)
    assert first.window.last_n == 150 and first.window.start_ms is not None
    assert [report.rows for report in first.reports] == [150, 150, 150]
    again = client.run_monitor("lastn/1", last=150)
    assert again.reused and again.id == first.id

    loaded.predict(frame.iloc[300:380])
    client.flush_captures()
    moved = client.run_monitor("lastn/1", last=150)
    assert not moved.reused and moved.id != first.id and moved.attempt == 0
    assert moved.window.start_ms is not None and first.window.start_ms is not None
    assert moved.window.start_ms > first.window.start_ms
    assert [report.rows for report in moved.reports] == [150, 150, 150]
    assert moved.window.key != first.window.key

    rerun = client.run_monitor("lastn/1", last=150, rerun=True)
    assert rerun.window == moved.window and rerun.attempt == 1


def test_a_different_n_is_a_different_run_and_more_than_captured_takes_all(
    client: clew.Client,
) -> None:
    _deployed(client)
    hundred = client.run_monitor("lastn/1", last=100)
    everything = client.run_monitor("lastn/1", last=10_000)
    assert hundred.id != everything.id
    assert hundred.reports[0].rows == 100 and everything.reports[0].rows == 300
    assert client.run_monitor("lastn/1", last=10_000).id == everything.id
