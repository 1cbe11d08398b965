"""Search bounds a caller cannot exceed: filter size and complexity, and max_results."""

from __future__ import annotations

import pytest

import clew
from clew.errors import FilterSyntaxError, InvalidInputError
from clew.service.runs import MAX_RESULTS
from clew.service.search import MAX_CLAUSES, MAX_DEPTH, MAX_FILTER_LENGTH, MAX_LIST_VALUES


@pytest.fixture
def one_run(client: clew.Client) -> str:
    with clew.start_run(experiment="bounds", name="only", capture_code=False) as run:
        run.log_params({"model": "rf"})
    return run.id


def _refused(text: str, names: str) -> None:
    with pytest.raises(FilterSyntaxError) as raised:
        clew.search_runs(text)
    message = str(raised.value)
    assert names in message and message.endswith("."), message


def test_a_filter_with_too_many_comparisons_is_refused(one_run: str) -> None:
    text = " or ".join(f"params.model ilike '%{i}%'" for i in range(MAX_CLAUSES + 1))
    _refused(text, f"{MAX_CLAUSES} comparisons")
    allowed = " or ".join(f"params.model ilike '%{i}%'" for i in range(MAX_CLAUSES - 1))
    assert clew.search_runs(allowed + " or params.model = 'rf'")["run_id"].tolist() == [one_run]


def test_deeply_nested_parentheses_are_refused(one_run: str) -> None:
    depth = 400
    _refused("(" * depth + "params.model = 'rf'" + ")" * depth, f"{MAX_DEPTH} levels")
    shallow = "(" * MAX_DEPTH + "params.model = 'rf'" + ")" * MAX_DEPTH
    assert clew.search_runs(shallow)["run_id"].tolist() == [one_run]


def test_a_long_in_list_is_refused(one_run: str) -> None:
    values = ", ".join(f"'{i}'" for i in range(MAX_LIST_VALUES + 1))
    _refused(f"params.model in ({values})", f"{MAX_LIST_VALUES} values")


def test_a_filter_longer_than_the_limit_is_refused(one_run: str) -> None:
    text = "params.model = '" + "x" * MAX_FILTER_LENGTH + "'"
    with pytest.raises(InvalidInputError, match="filter"):
        clew.search_runs(text)


def test_max_results_has_a_cap(one_run: str) -> None:
    with pytest.raises(InvalidInputError, match="max_results"):
        clew.search_runs(max_results=MAX_RESULTS + 1)
    assert len(clew.search_runs(max_results=MAX_RESULTS)) == 1
