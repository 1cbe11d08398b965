"""search_runs: the filter language, ordering, limits, the DataFrame shape and bad filters."""

from __future__ import annotations

import contextlib
import warnings

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import FilterSyntaxError, InvalidInputError, UnknownKeyWarning
from clew.service import search


@pytest.fixture
def runs(client: clew.Client) -> dict[str, str]:
    """Four finished runs and one failed one with distinct params, metrics and tags."""
    specs = [
        ("rf-1", "rf", 0.91, 0.20, "risk", "FINISHED"),
        ("rf-2", "rf", 0.75, 0.40, "risk", "FINISHED"),
        ("xgb-1", "xgb", 0.88, 0.25, "growth", "FINISHED"),
        ("lr-1", "lr", 0.60, 0.90, "growth", "FINISHED"),
        ("broken", "rf", 0.10, 2.00, "risk", "FAILED"),
    ]
    ids = {}
    for name, model, auc, loss, team, status in specs:
        run = clew.start_run(experiment="churn", name=name, capture_code=False)
        run.log_params({"model": model, "n_estimators": 100 if model == "rf" else 50})
        run.log_metrics({"auc": auc, "loss": loss})
        run.set_tags({"team": team, "data set": "v1"})
        run.end(status)
        ids[name] = run.id
    other = clew.start_run(experiment="other", name="elsewhere", capture_code=False)
    other.log_metric("auc", 0.99)
    other.end()
    ids["elsewhere"] = other.id
    return ids


def _names(frame: pd.DataFrame) -> list[str]:
    return frame["name"].tolist()


def test_results_are_a_dataframe_with_prefixed_columns(runs: dict[str, str]) -> None:
    found = clew.search_runs("params.model = 'rf' and metrics.auc > 0.8")
    assert isinstance(found, pd.DataFrame)
    assert _names(found) == ["rf-1"]
    row = found.iloc[0]
    assert row["run_id"] == runs["rf-1"]
    assert row["params.model"] == "rf"
    assert row["params.n_estimators"] == "100"
    assert row["metrics.auc"] == 0.91
    assert row["tags.team"] == "risk"
    assert row["status"] == "FINISHED"
    for column in ("experiment", "kind", "user", "start_time", "end_time", "parent_id"):
        assert column in found.columns


def test_empty_result_still_has_the_base_columns(runs: dict[str, str]) -> None:
    found = clew.search_runs("metrics.auc > 5")
    assert found.empty
    assert {"run_id", "name", "status"} <= set(found.columns)


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("metrics.auc > 0.8 and params.model = 'rf' and tags.team = 'risk'", {"rf-1"}),
        ("metrics.auc >= 0.88", {"rf-1", "xgb-1", "elsewhere"}),
        ("metrics.loss < 0.3 or tags.team = 'growth'", {"rf-1", "xgb-1", "lr-1"}),
        (
            "(params.model = 'rf' or params.model = 'lr') and metrics.auc < 0.8",
            {"rf-2", "lr-1", "broken"},
        ),
        (
            "params.model = 'rf' and (metrics.auc > 0.9 or attributes.status = 'FAILED')",
            {"rf-1", "broken"},
        ),
        ("params.model != 'rf' and attributes.experiment = 'churn'", {"xgb-1", "lr-1"}),
        ("params.model <> 'rf' and run.experiment = 'churn'", {"xgb-1", "lr-1"}),
        ("params.model in ('xgb', 'lr')", {"xgb-1", "lr-1"}),
        ("params.model not in ('rf', 'lr')", {"xgb-1"}),
        ("attributes.name like 'rf-%'", {"rf-1", "rf-2"}),
        ("run.name ILIKE 'XGB%'", {"xgb-1"}),
        ("tags.team like 'gro%'", {"xgb-1", "lr-1"}),
        ("params.n_estimators > 60", {"rf-1", "rf-2", "broken"}),
        ("params.model is null", {"elsewhere"}),
        ("tags.team is not null and metrics.auc > 0.85", {"rf-1", "xgb-1"}),
        ("tags.`data set` = 'v1' and metrics.auc > 0.85", {"rf-1", "xgb-1"}),
        ("tags.\"data set\" = 'v1' and metrics.loss > 1", {"broken"}),
        ("metrics.auc = 0.6", {"lr-1"}),
        ("metrics.auc in (0.6, 0.75)", {"lr-1", "rf-2"}),
        ('attributes.status = "FAILED"', {"broken"}),
        ("metrics.loss > 1e-1 AND metrics.loss < .3", {"rf-1", "xgb-1"}),
        ("attributes.kind = 'training' and metrics.auc > -1 and params.model = 'lr'", {"lr-1"}),
    ],
)
def test_filter_language(runs: dict[str, str], filter_text: str, expected: set[str]) -> None:
    assert set(_names(clew.search_runs(filter_text))) == expected


def test_filter_by_run_id_and_parent(runs: dict[str, str]) -> None:
    found = clew.search_runs(f"attributes.run_id = '{runs['lr-1']}'")
    assert _names(found) == ["lr-1"]
    assert len(clew.search_runs("attributes.parent_id is null")) == 6


def test_order_by_and_max_results(runs: dict[str, str]) -> None:
    by_auc = clew.search_runs(order_by=["metrics.auc DESC"], experiments=["churn"])
    assert _names(by_auc) == ["rf-1", "xgb-1", "rf-2", "lr-1", "broken"]
    by_loss = clew.search_runs("params.model = 'rf'", order_by=["metrics.loss"])
    assert _names(by_loss) == ["rf-1", "rf-2", "broken"]
    by_name = clew.search_runs(order_by=["name ASC"], max_results=2)
    assert _names(by_name) == ["broken", "elsewhere"]
    newest = clew.search_runs(max_results=1)
    assert _names(newest) == ["elsewhere"]
    by_param = clew.search_runs(
        order_by=["params.model desc", "metrics.auc desc"], experiments=["churn"]
    )
    assert _names(by_param) == ["xgb-1", "rf-1", "rf-2", "broken", "lr-1"]


def test_experiments_scope_the_search(runs: dict[str, str]) -> None:
    assert _names(clew.search_runs("metrics.auc > 0.95", experiments=["other"])) == ["elsewhere"]
    assert clew.search_runs("metrics.auc > 0.95", experiments=["churn"]).empty
    assert clew.search_runs(experiments=[]).empty


def test_active_runs_are_flushed_before_searching(client: clew.Client) -> None:
    with clew.start_run(experiment="live") as run:
        run.log_metric("auc", 0.97)
        found = clew.search_runs("metrics.auc > 0.9")
        assert found["run_id"].tolist() == [run.id]


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.auc >",
        "metrics.auc > 0.8 and",
        "auc > 0.8",
        "metrics.auc >> 0.8",
        "metrics.auc > 'high'",
        "metrics.auc like '0.%'",
        "params.model = rf",
        "(params.model = 'rf'",
        "params.model = 'rf')",
        "params.model in 'rf'",
        "params.model in ('rf'",
        "params.model is 'rf'",
        "widgets.x = 1",
        "attributes.colour = 'red'",
        "params.model = 'rf' xor metrics.auc > 1",
        "metrics.auc > 0.8 ;",
        "params.model = 'unterminated",
    ],
)
def test_bad_filters_raise_one_sentence(runs: dict[str, str], bad: str) -> None:
    with pytest.raises(FilterSyntaxError) as raised:
        clew.search_runs(bad)
    message = str(raised.value)
    assert message.endswith(".")
    assert "metrics.auc > 0.8" in message  # shows how to write a clause


@pytest.mark.parametrize("order", [["metrics.auc sideways"], ["widgets.x"], ["colour"], [""]])
def test_bad_order_by_is_refused(runs: dict[str, str], order: list[str]) -> None:
    with pytest.raises(FilterSyntaxError):
        clew.search_runs(order_by=order)


@pytest.mark.parametrize("limit", [0, -1, 1_000_001, "10"])
def test_bad_max_results_is_refused(client: clew.Client, limit: object) -> None:
    with pytest.raises(InvalidInputError, match="max_results"):
        clew.search_runs(max_results=limit)  # type: ignore[arg-type]


_pieces = st.sampled_from(
    [
        "metrics.auc",
        "params.model",
        "tags.team",
        "attributes.status",
        "run.name",
        "tags.`a b`",
        'tags."x"',
        "=",
        "!=",
        "<>",
        "<",
        ">=",
        "like",
        "ilike",
        "in",
        "not",
        "is",
        "null",
        "and",
        "or",
        "(",
        ")",
        ",",
        "'rf'",
        '"q"',
        "0.5",
        "-3",
        "1e3",
        "`",
        "'",
        '"',
        ";",
        "\\",
        "metrics.",
        ".x",
        "é",
        "\x00",
        " ",
    ]
)


@pytest.mark.backend_independent
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pieces, max_size=12).map(" ".join) | st.text(max_size=60))
def test_filter_compiler_only_ever_raises_filter_syntax_error(text: str) -> None:
    with contextlib.suppress(FilterSyntaxError):
        search.compile_filter(text)


# No deadline: each example is a real query, through a server in the remote passes, on a busy box.
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_pieces, max_size=10).map(" ".join))
def test_any_parsable_filter_runs_against_a_real_store(client: clew.Client, text: str) -> None:
    try:
        found = clew.search_runs(text)
    except FilterSyntaxError:
        return
    assert isinstance(found, pd.DataFrame)


def test_a_key_no_run_has_warns_naming_the_nearest_keys(runs: dict[str, str]) -> None:
    with pytest.warns(UnknownKeyWarning) as caught:
        found = clew.search_runs("metrics.acu > 0.8 and params.modle = 'rf'")
    assert found.empty
    messages = [str(warning.message) for warning in caught]
    assert any("metric 'acu'" in m and "nearest: auc" in m for m in messages), messages
    assert any("param 'modle'" in m and "nearest: model" in m for m in messages), messages


def test_keys_some_run_has_do_not_warn(runs: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownKeyWarning)
        found = clew.search_runs("metrics.auc > 0.8 and params.model = 'rf' and tags.team = 'risk'")
    assert set(found["run_id"]) == {runs["rf-1"]}


def test_cli_search_prints_the_warning_on_stderr(runs: dict[str, str]) -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["runs", "search", "metrics.acu > 0.8"])
    assert result.exit_code == 0, result.output
    assert "metric 'acu'" in result.stderr and "nearest: auc" in result.stderr
    assert "no runs" in result.stdout
