"""The monitoring values every check shares: windows, violations and SageMaker's report shape."""

from __future__ import annotations

import json

import pytest

from clew.domain.monitoring import CheckReport, Violation, Window
from clew.errors import InvalidInputError


def test_a_window_that_ends_before_it_starts_is_refused_in_one_sentence() -> None:
    with pytest.raises(InvalidInputError, match="must end after it starts"):
        Window("churn", 1, start_ms=2_000, end_ms=1_000)


def test_last_n_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="positive count"):
        Window("churn", 1, last_n=0)


def test_window_keys_tell_windows_apart_and_repeat_for_the_same_window() -> None:
    first = Window("churn", 1, start_ms=0, end_ms=3_600_000)
    assert first.key == Window("churn", 1, start_ms=0, end_ms=3_600_000).key
    assert first.key != Window("churn", 1, start_ms=3_600_000, end_ms=7_200_000).key
    assert first.key != Window("churn", 2, start_ms=0, end_ms=3_600_000).key
    assert Window("churn", 1, last_n=10).key != Window("churn", 1, last_n=11).key


def test_an_unknown_check_type_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="Unknown constraint check type"):
        Violation("age", "drift", "too far")


def test_a_report_speaks_sagemakers_constraint_violations_shape() -> None:
    violation = Violation("age", "baseline_drift_check", "PSI 0.31 > 0.2", 0.31, 0.2)
    report = CheckReport(
        "drift", Window("churn", 1, last_n=100), 100, {"psi": {"age": 0.31}}, (violation,)
    )
    assert not report.passed
    assert report.constraint_violations() == {
        "violations": [
            {
                "feature_name": "age",
                "constraint_check_type": "baseline_drift_check",
                "description": "PSI 0.31 > 0.2",
            }
        ]
    }
    richer = json.loads(json.dumps(report.to_dict()))
    assert richer["violations"][0]["observed"] == 0.31
    assert richer["window"]["last_n"] == 100
    assert CheckReport("drift", Window("churn", 1, last_n=1), 1).passed
