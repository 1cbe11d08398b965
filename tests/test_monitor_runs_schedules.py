"""Monitor schedules: the cron parser, storing schedules, running each due window once, catching
up after a restart, one runner at a time, and two real servers on one PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REMOTE, free_port
from server_fixtures import wait_until_ready
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, select

import clew
from clew.domain import cron
from clew.errors import InvalidInputError, NotFoundError
from clew.service import accounts, signing
from clew.service.monitor_schedules import MonitorScheduleService, runner_lock
from clew.store import schema
from clew.store.location import Store, open_store

HOUR_MS = 3_600_000


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_cron_fields_lists_ranges_and_steps() -> None:
    hourly = cron.parse("0 * * * *")
    assert list(hourly.fire_times(_ms("2026-01-01T10:30"), _ms("2026-01-01T13:00"))) == [
        _ms("2026-01-01T11:00"),
        _ms("2026-01-01T12:00"),
        _ms("2026-01-01T13:00"),
    ]
    every = cron.parse("*/20 9-10 * * 1-5")  # weekdays, 9:00-10:40 every 20 minutes
    monday = list(every.fire_times(_ms("2026-01-05T00:00"), _ms("2026-01-05T23:59")))
    assert len(monday) == 6 and monday[0] == _ms("2026-01-05T09:00")
    assert not list(every.fire_times(_ms("2026-01-03T00:00"), _ms("2026-01-04T23:59")))  # weekend
    assert cron.parse("0 0 * * 7").weekdays == frozenset({0})  # 7 is Sunday too
    assert cron.parse("15,45 * * * *").minutes == frozenset({15, 45})
    assert hourly.previous(_ms("2026-01-01T10:30")) == _ms("2026-01-01T10:00")


def test_cron_day_fields_match_either_when_both_are_restricted() -> None:
    either = cron.parse("0 0 1 * 1")  # the 1st of the month, and every Monday
    days = list(either.fire_times(_ms("2026-01-01T00:00") - 1, _ms("2026-01-31T23:59")))
    assert len(days) == 1 + 4  # Jan 1 (a Thursday) and the Mondays 5, 12, 19, 26


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("* * * *", "five fields"),
        ("60 * * * *", "minute field '60' is outside 0-59"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day of month"),
        ("*/0 * * * *", "step must be at least 1"),
        ("a * * * *", "not a number"),
        ("5-1 * * * *", "outside"),
        ("@hourly", "five fields"),
    ],
)
def test_a_cron_expression_that_does_not_parse_is_one_sentence(text: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match="does not parse") as caught:
        cron.parse(text)
    assert problem in str(caught.value)


def _deployed(client: clew.Client) -> None:
    features, target = make_classification(n_samples=300, n_features=4, random_state=2)
    with client.start_run("monitor", "train") as run:
        model = LogisticRegression(max_iter=500).fit(features, target)
        artifact = run.log_model(model, name="churn-lr")
    client.register_model(artifact, "churn")
    client.load_model("churn/1").predict_with_ids(features[:50])
    client.flush_captures()


def test_schedules_are_stored_listed_and_deleted(client: clew.Client) -> None:
    _deployed(client)
    item = client.schedule_monitor("churn/1", "0 * * * *", "1h")
    assert (item.target, item.cron, item.window_ms) == ("churn/1", "0 * * * *", HOUR_MS)
    assert client.schedule_monitor("churn/1", "0  *  * * *", "1h").id == item.id  # same one
    assert [s.id for s in client.monitor_schedules("churn")] == [item.id]
    with pytest.raises(InvalidInputError, match="does not parse"):
        client.schedule_monitor("churn/1", "every hour", "1h")
    with pytest.raises(InvalidInputError, match="not a duration"):
        client.schedule_monitor("churn/1", "0 * * * *", "an hour")
    with pytest.raises(NotFoundError):
        client.schedule_monitor("nothing@production", "0 * * * *", "1h")
    assert len(client.monitor_schedules()) == 1
    client.unschedule_monitor(item.id)
    assert client.monitor_schedules() == []
    with pytest.raises(NotFoundError, match="does not exist"):
        client.unschedule_monitor(item.id)


def test_due_windows_run_once_and_a_restart_catches_up(client: clew.Client, store: Store) -> None:
    _deployed(client)
    item = client.schedule_monitor("churn/1", "0 * * * *", "1h")
    service = MonitorScheduleService(store)
    later = item.created_ms + 3 * HOUR_MS
    first = service.run_due(later)
    # The hour complete when it was scheduled, then the three that closed since.
    assert len(first) == 4
    assert [run.window.end_ms - run.window.start_ms for run in first] == [HOUR_MS] * 4
    assert service.run_due(later) == []  # each window once
    # Down for two hours, then back: the missed windows run, nothing earlier again.
    caught_up = service.run_due(later + 2 * HOUR_MS)
    assert len(caught_up) == 2
    counted = client.monitor_runs("churn/1", limit=100)
    assert len(counted) == 6 and set(counted["attempt"]) == {0}


@pytest.mark.embedded_only
def test_only_one_runner_at_a_time(client: clew.Client) -> None:
    _deployed(client)
    client.schedule_monitor("churn/1", "* * * * *", "1m")
    store = client.store
    assert isinstance(store, Store)
    with runner_lock(store) as held:
        assert held
        assert MonitorScheduleService(store).run_due() == []  # another runner holds the lock
    assert MonitorScheduleService(store).run_due() != []


# --- two real servers on one PostgreSQL ---------------------------------------------------

LAUNCHER = "import typer; from clew.cli.server import server; typer.run(server)"


@pytest.fixture
def two_servers(postgres_url: str, s3_artifacts: str, tmp_path: Path) -> Iterator[Store]:
    """Two ``clew server`` processes on one store, each running schedules every 0.3 s."""
    store = open_store(postgres_url, s3_artifacts)
    accounts.create_user(store, "alice", "admin", actor="test-admin")
    key = tmp_path / "capture-key.pem"
    signing.create_key_file(key)
    environment = os.environ | {
        "CLEW_URI": postgres_url,
        "CLEW_ARTIFACTS": s3_artifacts,
        "CLEW_SIGNING_KEY": str(key),
        "CLEW_HOME": str(tmp_path / "replica-home"),
        "CLEW_MONITOR_INTERVAL": "0.3",
    }
    processes = []
    try:
        for number in range(2):
            port = free_port()
            log = (tmp_path / f"server-{number}.log").open("wb")
            process = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, "--port", str(port)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            wait_until_ready(f"http://127.0.0.1:{port}", process, time.monotonic() + 90)
        yield store
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        store.close()


@pytest.mark.postgres
@pytest.mark.s3
@pytest.mark.skipif(REMOTE, reason="starts its own servers")
def test_two_servers_run_each_scheduled_window_once(
    two_servers: Store, postgres_url: str, s3_artifacts: str
) -> None:
    client = clew.connect(postgres_url, s3_artifacts)
    _deployed(client)
    client.schedule_monitor("churn/1", "* * * * *", "1m")
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and _count(two_servers, schema.monitor_runs) < 2:
        time.sleep(0.5)
    time.sleep(2)  # several more ticks of both servers
    rows = _rows(two_servers)
    assert len(rows) >= 2, "the servers ran no scheduled window"
    assert len({row.window_key for row in rows}) == len(rows)
    assert {row.attempt for row in rows} == {0}
    # One lineage run per window: no server computed a window the other had run.
    monitoring = schema.runs.c.kind == "monitoring"
    assert _count(two_servers, schema.runs, monitoring) == len(rows)


def _count(store: Store, table: object, *where: object) -> int:
    with store.db.read() as connection:
        return int(
            connection.execute(select(func.count()).select_from(table).where(*where)).scalar()
        )


def _rows(store: Store) -> list:
    with store.db.read() as connection:
        return connection.execute(select(schema.monitor_runs)).all()
