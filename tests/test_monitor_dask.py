"""Checks on a Dask cluster: a real ``distributed.LocalCluster`` whose workers open the capture
files themselves (a local store's directory, or SeaweedFS S3), and whose results equal the local
engine's exactly: the same statistics, the same figures, the same violations."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port
from sklearn.dummy import DummyClassifier
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.remote_monitoring import RemoteMonitoring
from clew.domain.monitoring import CheckReport, Window
from clew.errors import InvalidInputError, NotFoundError
from clew.service import monitoring_partitions
from clew.service.monitoring_partitions import CaptureSource, Slice, summarise_file

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.embedded_only  # the cluster reads the store this process opened

COLOURS = np.array(["red", "green", "blue", "violet"])


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows) + int(shift * 10),
            "income": rng.lognormal(10 + shift, 0.5, rows),
            "colour": COLOURS[
                rng.choice(4, rows, p=[0.4, 0.3, 0.2 - shift / 10, 0.1 + shift / 10])
            ],
        }
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """Two single-threaded workers in this process, on TCP so an address reaches them too."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        dashboard_address=":0",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def dask_client(cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    with distributed.Client(cluster, set_as_default=False) as connected:
        yield connected


@pytest.fixture(params=["local", "s3"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[clew.Client]:
    """A served model version with a baseline and six capture batches, its captures in the
    store's directory or on SeaweedFS S3."""
    artifacts = request.getfixturevalue("s3_artifacts") if request.param == "s3" else None
    client = clew.connect(str(tmp_path / "store"), artifacts=artifacts)
    train = frame(2_000, seed=1)
    model = DummyClassifier().fit(train, train["age"] > 50)
    with client.start_run("shop", "train") as run:
        artifact = run.log_model(model, name="shop-model")
    client.register_model(artifact, "shop")
    client.monitoring.create_baseline("shop/1", train)
    loaded = client.load_model("shop/1")
    for seed in range(6):
        batch = frame(700, seed=10 + seed, shift=0.6 if seed >= 3 else 0.0)
        loaded.predict(batch)
        client.flush_captures()
    yield client
    client.close()


def _same(left: list[CheckReport], right: list[CheckReport]) -> None:
    assert [r.to_dict() for r in left] == [r.to_dict() for r in right]


def test_a_cluster_gives_the_local_engines_statistics_and_violations_exactly(
    served: clew.Client, dask_client: distributed.Client, cluster: distributed.LocalCluster
) -> None:
    local = served.monitoring.check("shop/1")
    before = cluster.scheduler.transition_counter
    distributed_ = served.monitoring.check("shop/1", scheduler=dask_client)
    assert cluster.scheduler.transition_counter > before  # the workers did the reading
    _same(local, distributed_)
    assert local[0].rows == 4_200
    assert "income" in {v.feature_name for v in distributed_[1].violations}
    drift = distributed_[1].metrics["features"]
    assert set(drift) == {"age", "income", "colour"}
    assert drift["income"]["ks"] > 0.1 and drift["income"]["drifted"] is True


def test_last_n_and_time_windows_cut_the_same_rows_on_the_cluster(
    served: clew.Client, dask_client: distributed.Client
) -> None:
    """A last-N window ends mid-file (the oldest file's tail) and a time window prunes row
    groups: the workers cut exactly what this process cuts."""
    monitoring = served.monitoring
    newest = monitoring.check("shop/1", last_n=1_000)
    _same(newest, monitoring.check("shop/1", last_n=1_000, scheduler=dask_client))
    assert newest[0].rows == 1_000
    far_future = 4_102_444_800_000  # 2100-01-01
    _same(
        monitoring.check("shop/1", start=0, end=far_future),
        monitoring.check("shop/1", start=0, end=far_future, scheduler=dask_client),
    )


def test_a_scheduler_address_works_and_an_unreachable_one_is_one_sentence(
    served: clew.Client,
    cluster: distributed.LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = cluster.scheduler_address
    assert address.startswith("tcp://")
    _same(
        [served.monitoring.check_drift("shop/1")],
        [served.monitoring.check_drift("shop/1", scheduler=address)],
    )
    monkeypatch.setenv(monitoring_partitions.SCHEDULER_ENV, address)
    before = cluster.scheduler.transition_counter
    from_environment = served.monitoring.check_data_quality("shop/1")
    assert cluster.scheduler.transition_counter > before  # the operator's cluster did it
    monkeypatch.delenv(monitoring_partitions.SCHEDULER_ENV)
    _same([from_environment], [served.monitoring.check_data_quality("shop/1")])
    monkeypatch.setattr(monitoring_partitions, "CONNECT_SECONDS", 1)
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(InvalidInputError, match=r"^no Dask scheduler answered at tcp://") as error:
        served.monitoring.check("shop/1", scheduler=nowhere)
    assert "\n" not in str(error.value)


def test_a_worker_needs_only_the_capture_source_and_the_file_names(
    served: clew.Client, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What goes to a worker pickles small and names no store: the files' root (and fsspec
    options), a file name, the window and the baseline's statistics."""
    service = served._service.monitoring
    source = service.capture_source()
    on_s3 = request.node.callspec.params["served"] == "s3"
    assert source.root.startswith("s3://") is on_s3
    assert source.root.endswith("/captures") and "secret" not in repr(source.options).lower()
    assert pickle.loads(pickle.dumps(source)) == source
    baseline = service.get_baseline("shop/1")
    window = Window("shop", 1)
    part = service.slices(window)[0]
    seen = summarise_file(source, part, window, baseline.stats, None)
    assert seen is not None and seen.stats.rows == 700
    assert len(pickle.dumps(seen)) < 50_000
    missing = CaptureSource(str(tmp_path / "elsewhere"))
    with pytest.raises(NotFoundError, match="missing where the Dask worker looked"):
        summarise_file(missing, Slice(part.path), window, baseline.stats, None)


def test_a_client_of_a_server_cannot_name_a_scheduler() -> None:
    """A Dask scheduler answers with pickles the caller runs: only the server's operator may
    point a server at one (CLEW_MONITOR_DASK_SCHEDULER), never a request."""
    remote = RemoteMonitoring(transport=None, registry=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="CLEW_MONITOR_DASK_SCHEDULER"):
        remote.check_all(Window("shop", 1), "tcp://attacker:8786")


@pytest.mark.parametrize("served", ["local"], indirect=True)  # the S3 path is the SDK's
def test_the_command_line_checks_on_a_cluster_and_names_a_dead_one(
    served: clew.Client, cluster: distributed.LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    check = ["monitor", "check", "shop/1", "--last", "2000", "--format", "json"]
    local = runner.invoke(app, check)
    spread = runner.invoke(app, [*check, "--dask-scheduler", cluster.scheduler_address])
    assert local.exit_code == 0 and spread.exit_code == 0, spread.output
    assert json.loads(spread.stdout) == json.loads(local.stdout)
    monkeypatch.setattr(monitoring_partitions, "CONNECT_SECONDS", 1)
    dead = runner.invoke(app, [*check, "--dask-scheduler", f"tcp://127.0.0.1:{free_port()}"])
    assert dead.exit_code not in (0, 3)
    assert "no Dask scheduler answered" in dead.output and "Traceback" not in dead.output
    assert len(dead.output.strip().splitlines()) == 1
