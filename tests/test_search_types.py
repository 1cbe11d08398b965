"""Typed filters: a comparison that cannot apply to a run's value is false for that run, a
malformed filter is refused in one sentence, and SQLite and PostgreSQL answer alike."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clew
from clew.errors import FilterSyntaxError, InvalidInputError
from clew.service.runs import search_runs
from clew.store.location import Store


def _names(found: object) -> list[str]:
    return found["name"].tolist()  # type: ignore[index]


@pytest.fixture
def shared(client: clew.Client) -> dict[str, str]:
    """Alice's and bob's runs in their own experiments; bob's lr is text."""
    specs = [
        ("alice", "a-fast", {"lr": 0.1, "priority": "3"}, {"team": "risk", "size": "12"}),
        ("alice", "a-slow", {"lr": 0.01, "priority": "high"}, {"team": "Risk", "size": "9"}),
        ("bob", "b-text", {"lr": "abc", "priority": "1e400"}, {"team": "growth", "size": "-"}),
    ]
    ids = {}
    for experiment, name, params, tags in specs:
        run = clew.start_run(experiment=experiment, name=name, capture_code=False)
        run.log_params(params)
        run.set_tags(tags)
        run.log_metric("auc", 0.5)
        run.end()
        ids[name] = run.id
    return ids


def test_a_text_param_never_compares_with_a_number(shared: dict[str, str]) -> None:
    assert _names(clew.search_runs("params.lr > 0.05")) == ["a-fast"]
    assert _names(clew.search_runs("params.lr > 0.05", experiments=["alice"])) == ["a-fast"]
    assert set(_names(clew.search_runs("params.lr < 1"))) == {"a-fast", "a-slow"}
    assert _names(clew.search_runs("params.lr >= 0", experiments=["bob"])) == []


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("tags.team < 5", set()),
        ("tags.size < 10", {"a-slow"}),
        ("tags.size >= 10 or tags.size <= -1", {"a-fast"}),
        ("params.priority <= 3", {"a-fast"}),
        ("params.priority > 1", {"a-fast"}),  # '1e400' is text, not a number past float's range
        ("params.model > 1e300", set()),
        ("run.start_time < 99999999999999999999", {"a-fast", "a-slow", "b-text"}),
        ("run.start_time > -99999999999999999999999", {"a-fast", "a-slow", "b-text"}),
        ("run.start_time < 9e18 and run.end_time > 1.5", {"a-fast", "a-slow", "b-text"}),
        ("params.lr < 99999999999999999999", {"a-fast", "a-slow"}),
        ("metrics.auc < 99999999999999999999", {"a-fast", "a-slow", "b-text"}),
        ("metrics.auc in (0.5, 99999999999999999999)", {"a-fast", "a-slow", "b-text"}),
        ("run.name > 5", set()),
        ("run.name = 5", set()),
        ("tags.team > 'risk'", set()),
        ("tags.team < 'a'", {"a-slow"}),  # byte order on both backends: 'R' < 'a'
        ("tags.team like 'risk'", {"a-fast"}),  # like is case-sensitive on both backends
        ("tags.team like 'R%'", {"a-slow"}),
        ("tags.team ilike 'RISK'", {"a-fast", "a-slow"}),
        ("params.priority in (3, 'high')", {"a-fast", "a-slow"}),
    ],
)
def test_comparisons_that_cannot_apply_are_false(
    shared: dict[str, str], filter_text: str, expected: set[str]
) -> None:
    assert set(_names(clew.search_runs(filter_text))) == expected


@pytest.mark.parametrize(
    ("filter_text", "names"),
    [
        ("params.model = 'r\x00f'", "NUL"),
        ("run.start_time > 'abc'", "run.start_time"),
        ("run.end_time <= '2024-01-01'", "run.end_time"),
        ("params.model > 1e400", "1e400"),
        ("metrics.auc < -1e400", "1e400"),
        ("metrics.auc in (1, 2e999)", "2e999"),
        ("run.start_time like '17%'", "like"),
        ("params.model = '\ud800'", "Unicode"),
        ("tags.team like 'a\\\\'", "escape"),
    ],
)
def test_malformed_filter_values_are_refused_in_one_sentence(
    shared: dict[str, str], filter_text: str, names: str
) -> None:
    # InvalidInputError: a server refuses a lone surrogate while decoding the JSON body
    with pytest.raises(InvalidInputError) as raised:
        clew.search_runs(filter_text)
    message = str(raised.value)
    assert names.lower() in message.lower() and message.endswith("."), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "order",
    [["params.\x00"], ["tags.`t\ud800`"]],
)
def test_malformed_order_by_is_refused(shared: dict[str, str], order: list[str]) -> None:
    with pytest.raises(InvalidInputError, match="order_by"):
        clew.search_runs(order_by=order)


def test_a_malformed_experiment_name_is_refused(shared: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError, match="experiment"):
        clew.search_runs("params.lr > 0", experiments=["ali\x00ce"])


# --- SQLite and PostgreSQL agree --------------------------------------------------------------

_TEXTS = [
    "abc", "0.05", "1e400", "1e-400", "-3", " 5", "5 ", "1.", ".5", "+2", "-0", "007", "NaN",
    "inf", "Infinity", "1_000", "0x10", "١٢", "É", "é", "B", "a", "%", "_", "\\", "10", "9", "",
    "1e999", "9" * 120, "risk", "Risk", "r%k", "1e-300", "1e300", "2e300", "0e5",
]  # fmt: skip
_NUMBERS = [0.5, -1.0, 0.0, float("inf"), float("-inf"), float("nan"), 1e300, 1e-300, 3.0, 10.0]


def _seed(client: clew.Client, rows: list[tuple[str, str, str, float]]) -> None:
    """The same runs, in the same order and with distinct start times, in ``client``'s store."""
    for index, (experiment, param, tag, metric) in enumerate(rows):
        run = client.start_run(experiment=experiment, name=f"r{index:02d}", capture_code=False)
        run.log_params({"p": param, "q": str(index)})
        run.set_tags({"t": tag})
        run.log_metric("m", metric)
        run.end("FINISHED" if index % 3 else "FAILED")
        time.sleep(0.003)


@pytest.fixture
def two_stores(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Store, Store]]:
    monkeypatch.delenv("CLEW_URI", raising=False)
    monkeypatch.setenv("CLEW_HOME", str(tmp_path / "fuzz-home"))
    sqlite = clew.connect(str(tmp_path / "sqlite-store"))
    postgres = clew.connect(postgres_url, artifacts=str(tmp_path / "pg-blobs"))
    rows = [
        (f"e{i % 2}", _TEXTS[i % len(_TEXTS)], _TEXTS[(i * 7) % len(_TEXTS)], _NUMBERS[i % 10])
        for i in range(len(_TEXTS) + 3)
    ]
    for opened in (sqlite, postgres):
        _seed(opened, rows)
    assert isinstance(sqlite.store, Store) and isinstance(postgres.store, Store)
    yield sqlite.store, postgres.store
    sqlite.close()
    postgres.close()


_literal = (
    st.sampled_from(_TEXTS).map(lambda t: "'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'")
    | st.sampled_from(["0", "1", "-3", "0.05", "1e300", "1e-300", "9e18", "99999999999999999999"])
    | st.sampled_from(["1e400", "'\x00'", "1.", ".5", "-0"])
)
_field = st.sampled_from(
    ["params.p", "params.q", "tags.t", "metrics.m", "run.name", "run.start_time", "run.status",
     "attributes.experiment", "run.end_time", "params.missing"]
)  # fmt: skip
_op = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "like", "ilike"])


def _clause(field: str, op: str, value: str) -> str:
    return f"{field} {op} {value}"


_simple = (
    st.builds(_clause, _field, _op, _literal)
    | st.builds(lambda f, v: f"{f} in ({', '.join(v)})", _field, st.lists(_literal, min_size=1))
    | st.builds(lambda f, n: f"{f} is {n}null", _field, st.sampled_from(["", "not "]))
)
_filter = st.recursive(
    _simple,
    lambda inner: st.builds(
        lambda a, word, b: f"({a} {word} {b})", inner, st.sampled_from(["and", "or"]), inner
    ),
    max_leaves=6,
)
_order = st.lists(
    st.sampled_from(["params.p", "tags.t", "metrics.m", "run.name", "run.status"]).flatmap(
        lambda f: st.sampled_from([f, f"{f} DESC", f"{f} ASC"])
    ),
    max_size=2,
)


def _answer(store: Store, text: str, order: list[str]) -> list[str] | str:
    try:
        return [run.name for run in search_runs(store, text, order or None, 100)]
    except FilterSyntaxError as error:
        return f"refused: {error}"


@pytest.mark.backend_independent
@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_filter, order=_order)
def test_sqlite_and_postgres_agree_on_every_filter(
    two_stores: tuple[Store, Store], text: str, order: list[str]
) -> None:
    sqlite, postgres = two_stores
    assert _answer(sqlite, text, order) == _answer(postgres, text, order), text
