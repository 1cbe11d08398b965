"""The one ref parser: every accepted form, round trips, and the errors for everything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import clew
from clew.domain import refs
from clew.domain.refs import (
    ArtifactRef,
    ContextRef,
    ModelAliasRef,
    ModelVersionRef,
    PredictionRef,
    RunRef,
)
from clew.errors import InvalidRefError, NotFoundError

RUN_ID = "01J9ZX5Q8W4T3V2N1M0K9H8G7F"
HEX = "ab12cd34" * 8


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn@production", ModelAliasRef("churn", "production")),
        ("churn/3", ModelVersionRef("churn", 3)),
        ("model:churn/3", ModelVersionRef("churn", 3)),
        ("model:churn@staging", ModelAliasRef("churn", "staging")),
        (f"run:{RUN_ID}", RunRef(RUN_ID)),
        (f"run:{RUN_ID.lower()}", RunRef(RUN_ID)),
        (f"artifact:{RUN_ID}", ArtifactRef(artifact_id=RUN_ID)),
        ("dataset:churn-train", ArtifactRef(type="dataset", name="churn-train")),
        (
            "dataset:churn-train@sha256:ab12cd34",
            ArtifactRef(type="dataset", name="churn-train", digest_prefix="ab12cd34"),
        ),
        (f"sha256:{HEX}", ArtifactRef(digest_prefix=HEX)),
        ("sha256:ab12cd34", ArtifactRef(digest_prefix="ab12cd34")),
        ("experiment:churn", ContextRef("experiment", "churn")),
        ("project:risk", ContextRef("project", "risk")),
        ("pipeline:nightly", ContextRef("pipeline", "nightly")),
        (f"prediction:{RUN_ID}.42", PredictionRef(f"{RUN_ID}.42")),
        ("  churn/12  ", ModelVersionRef("churn", 12)),
    ],
)
def test_every_accepted_form_parses(text: str, expected: refs.Ref) -> None:
    assert refs.parse(text) == expected


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "churn",
        "churn/0",
        "churn/-1",
        "churn/x",
        "churn@",
        "@prod",
        "run:nope",
        "artifact:123",
        "sha256:xyz",
        "sha256:ab12",
        "sha256:ABCDEF12",
        "dataset:",
        "dataset:bad name",
        "dataset:x@sha256:12",
        "prediction:abc",
        "experiment:-bad",
        "a/b/c/d",
    ],
)
def test_wrong_syntax_lists_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidRefError) as raised:
        refs.parse(text)
    message = str(raised.value)
    assert "churn@production" in message and "run:<id>" in message and "sha256:<hex>" in message


@pytest.mark.backend_independent
def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidRefError):
        refs.parse(None)  # type: ignore[arg-type]


@pytest.mark.backend_independent
def test_names_are_validated_for_refs() -> None:
    assert refs.validate_name("churn-train_v1.2") == "churn-train_v1.2"
    for bad in ("", "-x", "has space", "a" * 201, "x/y", "x@y"):
        with pytest.raises(InvalidRefError):
            refs.validate_name(bad)


def test_unknown_refs_are_not_found(client: clew.Client) -> None:
    for ref in (f"run:{RUN_ID}", "dataset:missing", f"artifact:{RUN_ID}", "sha256:ab12cd34"):
        with pytest.raises(NotFoundError):
            clew.lineage.upstream(ref)


def test_bad_ref_in_a_query_is_an_invalid_ref(client: clew.Client) -> None:
    with pytest.raises(InvalidRefError) as raised:
        clew.lineage.downstream("not a ref")
    assert "'not a ref' is not a valid ref" in str(raised.value)
    assert "churn/3" in str(raised.value)


_names = st.from_regex(refs.NAME_PATTERN, fullmatch=True)
_ids = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)
_hex = st.text(alphabet="0123456789abcdef", min_size=8, max_size=64)
_types = st.from_regex(r"[a-z][a-z0-9_]{0,39}", fullmatch=True).filter(
    lambda t: t not in {"run", "artifact", "prediction", "model", "sha256", *refs.CONTEXT_TYPES}
)
_refs = st.one_of(
    st.builds(ModelVersionRef, _names, st.integers(min_value=1, max_value=10**9)),
    st.builds(ModelAliasRef, _names, _names),
    st.builds(RunRef, _ids),
    st.builds(lambda i: ArtifactRef(artifact_id=i), _ids),
    st.builds(lambda h: ArtifactRef(digest_prefix=h), _hex),
    st.builds(lambda t, n: ArtifactRef(type=t, name=n), _types, _names),
    st.builds(lambda t, n, h: ArtifactRef(type=t, name=n, digest_prefix=h), _types, _names, _hex),
    st.builds(ContextRef, st.sampled_from(sorted(refs.CONTEXT_TYPES)), _names),
    st.builds(
        lambda i, n: PredictionRef(f"{i}.{n}"), _ids, st.integers(min_value=0, max_value=10**8)
    ),
)


@pytest.mark.backend_independent
@given(_refs)
def test_format_then_parse_round_trips(ref: refs.Ref) -> None:
    assert refs.parse(refs.format_ref(ref)) == ref


@pytest.mark.backend_independent
@given(st.text(max_size=80))
def test_parse_never_fails_with_anything_but_invalid_ref(text: str) -> None:
    try:
        parsed = refs.parse(text)
    except InvalidRefError:
        return
    assert refs.parse(refs.format_ref(parsed)) == parsed
