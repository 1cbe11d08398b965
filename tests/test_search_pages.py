"""Cursor pagination of run search: pages in order, nothing repeated or skipped, tokens bound
to their search — on the embedded store, PostgreSQL and through the server alike."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import InvalidInputError

RUNS = 23
ORDERINGS = [
    None,
    ["metrics.auc DESC"],
    ["metrics.auc ASC", "params.model DESC"],
    ["params.model", "start_time"],
    ["name DESC"],
    ["tags.team DESC", "metrics.auc"],
]


@pytest.fixture
def runs(client: clew.Client) -> list[str]:
    """Runs with tied metrics, params missing on some runs (the NULL group sorts last) and
    text that differs only in case, so every tie-break and NULL branch of a token is used."""
    ids = []
    for i in range(RUNS):
        with client.start_run(experiment="pages", name=f"run-{i % 7}", capture_code=False) as run:
            if i % 5:
                run.log_metric("auc", round(0.5 + (i % 4) / 10, 2))
            if i % 3:
                run.log_params({"model": ["rf", "RF", "gbm", "é"][i % 4]})
            if i % 2:
                run.set_tags({"team": f"t{i % 3}"})
        ids.append(run.id)
    return ids


def _all_pages(client: clew.Client, order_by: list[str] | None, size: int) -> list[str]:
    seen: list[str] = []
    token = None
    for _ in range(RUNS + 1):
        page = client.search_runs_page(
            "attributes.status = 'FINISHED'", order_by, size, page_token=token
        )
        assert len(page.runs) <= size
        seen.extend(page.runs["run_id"].tolist())
        token = page.next_page_token
        if token is None:
            return seen
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("order_by", ORDERINGS, ids=lambda o: " ".join(o or ["default"]))
@pytest.mark.parametrize("size", [1, 4, RUNS])
def test_pages_concatenate_to_the_whole_search(
    client: clew.Client, runs: list[str], order_by: list[str] | None, size: int
) -> None:
    whole = client.search_runs("attributes.status = 'FINISHED'", order_by)["run_id"].tolist()
    assert sorted(whole) == sorted(runs)
    assert _all_pages(client, order_by, size) == whole


def test_record_pages_are_the_frame_pages(client: clew.Client, runs: list[str]) -> None:
    """``search_run_records`` (what the CLI lists runs with, without pandas) pages exactly as
    ``search_runs_page`` does."""
    framed = client.search_runs_page(None, ["metrics.auc DESC"], 5)
    recorded = client.search_run_records(None, ["metrics.auc DESC"], 5)
    assert [run.id for run in recorded.runs] == framed.runs["run_id"].tolist()
    assert recorded.next_page_token == framed.next_page_token
    rest = client.search_run_records(None, ["metrics.auc DESC"], RUNS, None, framed.next_page_token)
    assert sorted(run.id for run in recorded.runs + rest.runs) == sorted(runs)


def test_the_last_page_has_no_token_and_an_exact_fit_needs_no_empty_page(
    client: clew.Client, runs: list[str]
) -> None:
    assert client.search_runs_page(max_results=RUNS).next_page_token is None
    first = client.search_runs_page(max_results=RUNS - 1)
    assert first.next_page_token is not None
    last = client.search_runs_page(max_results=RUNS - 1, page_token=first.next_page_token)
    assert len(last.runs) == 1 and last.next_page_token is None


def test_runs_logged_while_paging_do_not_shift_later_pages(
    client: clew.Client, runs: list[str]
) -> None:
    first = client.search_runs_page(max_results=10)
    with client.start_run(experiment="pages", name="late", capture_code=False):
        pass
    rest = client.search_runs_page(max_results=RUNS, page_token=first.next_page_token)
    paged = first.runs["run_id"].tolist() + rest.runs["run_id"].tolist()
    assert sorted(paged) == sorted(runs)


def test_a_token_from_another_search_is_refused(client: clew.Client, runs: list[str]) -> None:
    token = client.search_runs_page(order_by=["metrics.auc DESC"], max_results=5).next_page_token
    with pytest.raises(InvalidInputError) as raised:
        client.search_runs_page(order_by=["metrics.auc ASC"], max_results=5, page_token=token)
    assert str(raised.value) == (
        "the page token belongs to a search with a different filter, ordering or experiments; "
        "run the search again without a page token."
    )


@pytest.mark.parametrize("token", ["not-a-token!", "e30", "eyJxdWVyeSI6MX0", "x" * 30_000])
def test_a_malformed_token_is_one_sentence(
    client: clew.Client, runs: list[str], token: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        client.search_runs_page(max_results=5, page_token=token)
    message = str(raised.value)
    assert "page token" in message and message.endswith("without a page token."), message


def test_the_cli_pages_with_the_token_it_prints(client: clew.Client, runs: list[str]) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["runs", "search", "attributes.status = 'FINISHED'", "-n", "20"])
    assert first.exit_code == 0, first.output
    hint = first.stderr.strip().splitlines()[-1]
    assert hint.startswith("more runs: repeat the command with --page-token ")
    token = hint.rsplit(" ", 1)[-1]
    search = ["runs", "search", "attributes.status = 'FINISHED'", "-n", "20"]
    second = runner.invoke(app, [*search, "--page-token", token, "-f", "json"])
    assert second.exit_code == 0, second.output
    body = json.loads(second.stdout)
    assert len(body["runs"]) == RUNS - 20 and body["next_page_token"] is None


MODELS = ["rf", "gbm", "lr", "rf", "rf", "svm"]
RARE = 12  # the one "knn" run; its auc sits mid-range, far from either end of the index


@pytest.fixture
def scored(client: clew.Client) -> pd.DataFrame:
    """Runs with 25 auc values, most shared by two runs (ties), some runs without auc, and one
    run of a rare model whose auc is in the middle of the range."""
    for i in range(60):
        with client.start_run(experiment="scored", name=f"s{i}", capture_code=False) as run:
            if i % 7:
                run.log_metric("auc", 0.5 + (i % 25) / 50)
            run.log_params({"model": "knn" if i == RARE else MODELS[i % 6]})
    return client.search_runs(max_results=1000)


def _expected(frame: pd.DataFrame, keep: Any, descending: bool) -> list[str]:
    """The order clew promises, computed here from the runs themselves: auc (missing last),
    then newest first, then run id, newest first."""
    rows = [row for row in frame.to_dict("records") if keep(row)]
    newest = sorted(rows, key=lambda row: (row["start_time"], row["run_id"]), reverse=True)
    present = [row for row in newest if not pd.isna(row.get("metrics.auc"))]
    missing = [row for row in newest if pd.isna(row.get("metrics.auc"))]
    present.sort(key=lambda row: row["metrics.auc"], reverse=descending)
    return [row["run_id"] for row in present + missing]


def _auc(row: dict[str, Any], missing: float) -> float:
    value = row.get("metrics.auc")
    return missing if value is None or pd.isna(value) else float(value)


FILTERS: list[tuple[str | None, Any]] = [
    (None, lambda row: True),
    ("metrics.auc > 0.7", lambda row: _auc(row, 0) > 0.7),
    (
        "metrics.auc >= 0.6 and metrics.auc < 0.9 and params.model = 'rf'",
        lambda row: 0.6 <= _auc(row, 0) < 0.9 and row["params.model"] == "rf",
    ),
    (
        "metrics.auc < 0.65 or params.model = 'svm'",
        lambda row: _auc(row, 1) < 0.65 or row["params.model"] == "svm",
    ),
    ("(metrics.auc = 0.74)", lambda row: _auc(row, 0) == 0.74),
    ("params.model = 'knn'", lambda row: row["params.model"] == "knn"),
    ("metrics.auc is null", lambda row: pd.isna(row.get("metrics.auc"))),
]


def _paged(client: clew.Client, filter_text: str | None, order: list[str], size: int) -> list[str]:
    seen: list[str] = []
    token = None
    while True:
        page = client.search_runs_page(filter_text, order, size, page_token=token)
        seen.extend(page.runs["run_id"])
        token = page.next_page_token
        if token is None:
            return seen


@pytest.mark.parametrize("filter_text,keep", FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_ordering_by_a_metric_gives_the_promised_order_on_every_path(
    client: clew.Client, scored: pd.DataFrame, filter_text: str | None, keep: Any
) -> None:
    """Small pages make the bounded index walk give up on rare filters (the generic plan
    answers), large ones let it finish; pages cross from runs with auc to runs without."""
    for descending in (True, False):
        order = ["metrics.auc DESC" if descending else "metrics.auc"]
        expected = _expected(scored, keep, descending)
        assert expected, filter_text
        for size in (1, 3, 100):
            assert _paged(client, filter_text, order, size) == expected, (descending, size)
