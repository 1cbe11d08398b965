"""OpenLineage out: clew's runs sent through openlineage-python's HTTP transport to a consumer
(here a second, real ``clew server``, which takes the standard's events)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from server_fixtures import RunningServer, serve

import clew
from clew.domain.openlineage import run_id_for, uuid_for
from clew.errors import InvalidInputError, ServerUnavailableError
from clew.store.location import open_store


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    # A store of its own (a SQLite directory) on every backend: under postgres-s3 the test
    # database is the producer's, and a consumer sharing it would already hold the run.
    for running in serve(open_store(tmp_path / "consumer"), tmp_path / "consumer"):
        yield running, running.user("marquez")


def test_a_finished_run_arrives_as_start_and_complete_with_its_datasets(
    client: clew.Client, consumer: tuple[RunningServer, str]
) -> None:
    running, token = consumer
    with client.start_run(experiment="churn", name="prep", kind="processing") as run:
        run.log_input(pd.DataFrame({"tenure": [1, 5]}), name="churn-raw")
        run.log_output(pd.DataFrame({"tenure": [0.1, 0.5]}), name="churn-train")
    assert client.openlineage.emit(run.id, running.url, api_key=token) == 2

    downstream = clew.Client(running.url, token=token)
    arrived = downstream.get_run(run.id)
    assert run_id_for(uuid_for(run.id)) == run.id
    assert (arrived.status, arrived.name, arrived.experiment) == ("FINISHED", "churn.prep", "clew")
    kept = arrived.properties["openlineage"]
    assert kept["events"] == {"START": 1, "COMPLETE": 1}
    assert kept["producer"] == "https://github.com/clew-ml/clew"
    names = downstream.lineage.upstream(f"run:{run.id}", max_depth=1).to_pandas()["source_name"]
    assert "dataset-churn-raw" in set(names)  # with the run's code and environment
    made = downstream.lineage.downstream(f"run:{run.id}", max_depth=1).far_nodes("dataset")
    facets = made["properties"].iloc[0]["openlineage"]["facets"]
    assert facets["version"]["datasetVersion"].startswith("sha256:")
    assert client.openlineage.emit(run.id, running.url, api_key=token) == 2
    assert downstream.get_run(run.id).properties["openlineage"]["events"]["COMPLETE"] == 2
    downstream.close()


def test_a_running_run_sends_only_its_start(
    client: clew.Client, consumer: tuple[RunningServer, str]
) -> None:
    running, token = consumer
    run = client.start_run(experiment="churn", name="long")
    assert client.openlineage.emit(run.id, running.url, api_key=token) == 1
    run.end()
    downstream = clew.Client(running.url, token=token)
    assert downstream.get_run(run.id).status == "RUNNING"
    downstream.close()


def test_a_refusing_or_absent_consumer_is_one_sentence(
    client: clew.Client, consumer: tuple[RunningServer, str]
) -> None:
    running, _ = consumer
    with client.start_run(experiment="churn", name="prep") as run:
        pass
    with pytest.raises(InvalidInputError, match=r"refused run .* \(401: "):
        client.openlineage.emit(run.id, running.url, api_key="not-a-token")
    with pytest.raises(ServerUnavailableError, match="could not be reached"):
        client.openlineage.emit(run.id, "http://127.0.0.1:9", api_key="x")
