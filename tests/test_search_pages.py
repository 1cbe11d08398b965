"""Cursor pagination of run search: pages in order, nothing repeated or skipped, tokens bound
to their search — on the embedded store, PostgreSQL and through the server alike."""

from __future__ import annotations

import json

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
