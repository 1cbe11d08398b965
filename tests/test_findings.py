"""Validation findings and model reviews (SR 11-7) on a real store with real models.

A validator records findings against a version; an unresolved high one blocks promotion with
one sentence naming it until a validator (not the registrant) closes or accepts it; the owner
may only mark it remediated. Reviews follow the policy's cadence by risk tier, overdue ones are
raised once as registry events (what webhooks deliver), and a new version trained on other
data or code needs revalidation. Runs embedded, on PostgreSQL + S3 and through a server.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from server_fixtures import AsUser
from sklearn.linear_model import LogisticRegression

import clew
from clew.domain import findings as rules
from clew.errors import InvalidInputError, NotFoundError, PolicyError, PolicySyntaxError
from clew.service import reviews as review_service

POLICY = """
roles:
  validators: [bob, carol]
approvals:
  roles: [validators]
reviews:
  high: 180d
  default: 52w
"""


def _train(client: clew.Client, seed: int = 0, name: str = "credit") -> None:
    """Register the next version of ``name`` from a small model trained on data of ``seed``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    target = (frame["a"] > 0).astype(int)
    with client.start_run("credit", "train") as run:
        run.log_input(frame, name="applications")
        model = LogisticRegression(max_iter=200).fit(frame, target)
        artifact = run.log_model(model, name="credit-lr")
    client.register_model(artifact, name, owner="dave", risk_tier="high")


@pytest.fixture
def governed(client: clew.Client, as_user: AsUser) -> clew.Client:
    """credit/1 registered by alice under a policy whose validators are bob and carol."""
    alice = as_user("alice")
    alice.set_policy(POLICY)
    _train(alice)
    return alice


def test_an_open_high_finding_blocks_promotion_until_a_validator_closes_it(
    governed: clew.Client, as_user: AsUser
) -> None:
    bob = as_user("bob")
    bob.approve("credit/1", "validated")
    found = bob.add_finding(
        "credit/1",
        "high",
        "Back-test on the 2020 stress period was not run",
        remediation="Run the stress back-test and attach it",
        due="2027-03-31",
    )
    assert found.status == "open" and found.owner == "dave" and found.ref == "credit/1"
    with pytest.raises(PolicyError, match=rf"unresolved high finding {found.id} \(Back-test"):
        bob.promote("credit/1", "production")
    status = bob.version_status("credit/1")
    assert not status["meets_production_policy"]
    assert any(found.id in reason for reason in status["reasons"])

    dave = as_user("dave", "contributor")
    remediated = dave.update_finding(found.id, "stress back-test attached", status="remediated")
    assert remediated.status == "remediated" and remediated.updated_by == "dave"
    with pytest.raises(PolicyError, match="unresolved high finding"):
        as_user("bob").promote("credit/1", "production")

    closed = as_user("carol").update_finding(found.id, "back-test reviewed", status="closed")
    assert closed.status == "closed" and closed.note == "back-test reviewed"
    assert as_user("bob").promote("credit/1", "production").alias == "production"


def test_low_findings_do_not_block_and_lists_filter_by_status(
    governed: clew.Client, as_user: AsUser
) -> None:
    bob = as_user("bob")
    low = bob.add_finding("credit/1", "low", "Documentation of feature c is thin")
    high = bob.add_finding("credit/1", "high", "No out-of-time test")
    bob.update_finding(high.id, "risk accepted by the model risk committee", status="accepted")
    bob.approve("credit/1", "validated")
    bob.promote("credit/1", "production")
    frame = bob.findings("credit", status="unresolved")
    assert list(frame["id"]) == [low.id]
    assert set(bob.findings("credit")["id"]) == {low.id, high.id}
    assert list(bob.findings("credit", status="accepted")["status"]) == ["accepted"]


def test_only_validators_record_or_close_findings_and_never_the_registrant(
    governed: clew.Client, as_user: AsUser
) -> None:
    erin = as_user("erin")
    with pytest.raises(PolicyError, match=r"'erin' may not record a finding on credit/1"):
        erin.add_finding("credit/1", "high", "I think it is wrong")
    found = as_user("bob").add_finding("credit/1", "medium", "Calibration drifts above 0.9")
    dave = as_user("dave", "contributor")
    with pytest.raises(PolicyError, match=r"may not change finding|needs the approver role"):
        dave.update_finding(found.id, "done, trust me", status="closed")
    alice = as_user("alice")
    alice.set_policy(POLICY.replace("[bob, carol]", "[alice, bob, carol]"))
    with pytest.raises(PolicyError, match=r"'alice' registered credit/1 .*separation of duties"):
        alice.update_finding(found.id, "fine", status="accepted")
    assert as_user("bob").get_finding(found.id).status == "open"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"severity": "severe"}, "severity 'severe' is not one of low, medium, high"),
        ({"due": "next friday"}, "due date 'next friday' is not a date; write it as YYYY-MM-DD"),
        ({"description": "  "}, "a finding needs a description"),
    ],
)
def test_bad_findings_are_one_sentence_and_write_nothing(
    governed: clew.Client, as_user: AsUser, options: dict[str, str], message: str
) -> None:
    bob = as_user("bob")
    arguments = {"severity": "high", "description": "fine", **options}
    with pytest.raises(InvalidInputError, match=message):
        bob.add_finding(
            "credit/1", arguments.pop("severity"), arguments.pop("description"), **arguments
        )
    assert bob.findings("credit").empty


def test_updating_a_missing_finding_or_changing_nothing_is_refused(
    governed: clew.Client, as_user: AsUser
) -> None:
    bob = as_user("bob")
    with pytest.raises(NotFoundError, match="no finding 'nope'; list them with"):
        bob.update_finding("nope", "x", status="closed")
    found = bob.add_finding("credit/1", "low", "x")
    with pytest.raises(InvalidInputError, match="nothing to change"):
        bob.update_finding(found.id, "just a note")
    with pytest.raises(InvalidInputError, match="note saying why"):
        bob.update_finding(found.id, " ", status="closed")
    with pytest.raises(InvalidInputError, match="finding status 'done'"):
        bob.update_finding(found.id, "x", status="done")
    assert bob.get_finding(found.id).status == "open"


def test_findings_are_in_the_audit_trail(governed: clew.Client, as_user: AsUser) -> None:
    bob = as_user("bob")
    found = bob.add_finding("credit/1", "medium", "Thin evidence")
    bob.update_finding(found.id, "evidence added", status="closed")
    log = bob.audit_log("credit/1", action="finding.")
    assert [entry.action for entry in log] == ["finding.update", "finding.add"]
    assert log[0].actor == "bob"


def test_review_cadence_by_risk_tier_and_as_of_dates(
    governed: clew.Client, as_user: AsUser
) -> None:
    status = governed.review_status("credit")
    assert status.state == rules.NEVER_REVIEWED and status.cadence_days == 180
    assert status.risk_tier == "high" and status.last_review is None
    assert governed.review_status("credit", as_of="2999-01-01").state == rules.OVERDUE
    review = as_user("bob").review_model("credit/1", "initial validation")
    after = governed.review_status("credit")
    assert after.state == rules.CURRENT and after.last_review == review
    assert after.next_due_ms == review.reviewed_ms + 180 * rules.DAY_MS
    frame = governed.review_statuses()
    assert list(frame["model"]) == ["credit"] and list(frame["state"]) == ["current"]
    assert list(frame["last_reviewed_by"]) == ["bob"]


def test_the_registrant_and_non_validators_may_not_review(
    governed: clew.Client, as_user: AsUser
) -> None:
    with pytest.raises(PolicyError, match="'erin' may not review credit/1"):
        as_user("erin").review_model("credit/1", "looks fine")
    alice = as_user("alice")
    alice.set_policy(POLICY.replace("[bob, carol]", "[alice, bob]"))
    with pytest.raises(PolicyError, match="'alice' registered credit/1 and may not review it"):
        alice.review_model("credit/1", "mine is fine")
    with pytest.raises(InvalidInputError, match="a review needs a comment"):
        as_user("bob").review_model("credit/1", "")
    assert governed.reviews("credit") == []


def test_overdue_reviews_are_raised_once_per_due_date_as_events(
    governed: clew.Client, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert governed.raise_overdue_reviews() == []
    later = review_service.now_ms() + 181 * rules.DAY_MS
    monkeypatch.setattr(review_service, "now_ms", lambda: later)
    [event] = governed.raise_overdue_reviews()
    assert event.kind == "review_overdue" and event.model == "credit"
    assert "never reviewed, every 180 days for risk tier high" in event.comment
    assert governed.raise_overdue_reviews() == []
    kinds = [e.kind for e in governed.model_history("credit")]
    assert kinds.count("review_overdue") == 1


def test_a_new_version_on_new_data_needs_revalidation(
    governed: clew.Client, as_user: AsUser
) -> None:
    as_user("bob").review_model("credit/1", "initial validation")
    _train(as_user("alice"), seed=1)
    status = governed.review_status("credit")
    assert status.state == rules.REVALIDATION_REQUIRED and status.latest_version == 2
    [change] = status.material_changes
    assert change.startswith("dataset:applications changed from sha256:")
    assert "in credit/1 to" in change and change.endswith("in credit/2")
    as_user("bob").review_model("credit/2", "revalidated on the new data")
    assert governed.review_status("credit").state == rules.CURRENT


def test_a_same_data_retrain_is_not_a_material_change(
    governed: clew.Client, as_user: AsUser
) -> None:
    as_user("bob").review_model("credit/1", "initial validation")
    _train(as_user("alice"), seed=0)
    assert governed.review_status("credit").material_changes == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("reviews: [high]", "reviews must be a mapping"),
        ("reviews: {high: soon}", "reviews.high is 'soon'; write a whole number of days"),
        ("reviews: {high: 0d}", "reviews.high is '0d'"),
    ],
)
def test_a_bad_reviews_section_is_refused_and_the_policy_stays(
    client: clew.Client, section: str, message: str
) -> None:
    with pytest.raises(PolicySyntaxError, match=message):
        client.set_policy(section)
    assert client.get_policy()["version"] == 0
