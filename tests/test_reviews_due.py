"""A review due date set by a validator, on every backend (embedded, PostgreSQL + S3, remote).

The date is a real past day, not a mocked clock: the review is overdue at once, raised once as a
``review_overdue`` event naming who set the date and why, and a review afterwards puts the model
back on its tier's cadence.
"""

from __future__ import annotations

import pytest
from server_fixtures import AsUser
from test_findings import POLICY, _train

import clew
from clew.domain import findings as rules
from clew.errors import InvalidInputError, NotFoundError, PolicyError

PAST_DAY = "2026-01-02"


@pytest.fixture
def governed(client: clew.Client, as_user: AsUser) -> clew.Client:
    """credit/1 registered by alice under a policy whose validators are bob and carol."""
    alice = as_user("alice")
    alice.set_policy(POLICY)
    _train(alice)
    return alice


def test_a_past_due_date_makes_the_review_overdue_and_is_raised_once(
    governed: clew.Client, as_user: AsUser
) -> None:
    assert governed.review_status("credit").state == rules.NEVER_REVIEWED
    assert governed.raise_overdue_reviews() == []
    bob = as_user("bob")
    set_due = bob.set_review_due("credit", PAST_DAY, "backlog from the 2025 inventory")
    assert (set_due.kind, set_due.actor, set_due.version) == ("review_due", "bob", 1)
    status = governed.review_status("credit")
    assert status.state == rules.OVERDUE and status.to_dict()["next_due"] == PAST_DAY
    [event] = governed.raise_overdue_reviews()
    assert event.kind == "review_overdue" and event.model == "credit"
    assert f"credit's review was due {PAST_DAY} (never reviewed, set by bob: backlog" in (
        event.comment
    )
    assert governed.raise_overdue_reviews() == []  # once per due date
    later = "2026-02-01"
    bob.set_review_due("credit", later, "moved by the committee")
    [moved] = governed.raise_overdue_reviews()  # a new due date is a new overdue review
    assert moved.evidence["next_due_ms"] == rules.parse_due(later)
    as_user("carol").review_model("credit/1", "annual validation")
    after = governed.review_status("credit")
    assert after.state == rules.CURRENT and after.cadence_days == 180
    assert governed.raise_overdue_reviews() == []
    kinds = [e.kind for e in governed.model_history("credit")]
    assert kinds.count("review_overdue") == 2 and kinds.count("review_due") == 2


def test_setting_a_due_date_is_for_validators_and_needs_a_day_and_a_reason(
    governed: clew.Client, as_user: AsUser
) -> None:
    with pytest.raises(PolicyError, match="'erin' may not set the review due date of credit"):
        as_user("erin").set_review_due("credit", PAST_DAY, "mine")
    bob = as_user("bob")
    with pytest.raises(InvalidInputError, match="due date '31/12/2026' is not a date"):
        bob.set_review_due("credit", "31/12/2026", "bad day")
    with pytest.raises(InvalidInputError, match="needs the day \\(YYYY-MM-DD\\) and a reason"):
        bob.set_review_due("credit", PAST_DAY, "  ")
    with pytest.raises(NotFoundError):
        bob.set_review_due("nothing", PAST_DAY, "no such model")
    assert governed.review_status("credit").state == rules.NEVER_REVIEWED
    kinds = [e.kind for e in governed.model_history("credit")]
    assert "review_due" not in kinds
