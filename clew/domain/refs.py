"""The one parser for every short reference a user can type.

Accepted forms (the error message repeats this list so nobody has to look it up):

    churn@production             a registered model's alias
    churn/3                      a registered model's version
    run:01J...                   a run by id
    dataset:churn-train          the latest artifact of a type and name
    dataset:churn-train@sha256:ab12cd34
                                 an artifact of a type and name with a digest (prefix ≥ 8)
    sha256:ab12cd34...           an artifact by digest (prefix ≥ 8 hex characters)
    artifact:01J...              an artifact by id
    experiment:churn             a context (experiment, project, pipeline, ...) by type and name
    prediction:01J....0          a captured prediction
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from clew.domain import ids
from clew.errors import InvalidRefError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}"
_NAME = re.compile(rf"^{NAME_PATTERN}$")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PREDICTION_ID = re.compile(r"^[0-9A-Za-z]{26}\.\d{1,9}$")
CONTEXT_TYPES = frozenset({"experiment", "project", "pipeline"})

ACCEPTED_FORMS = (
    "churn@production, churn/3, run:<id>, <type>:<name>[@sha256:<hex>], "
    "sha256:<hex>, artifact:<id>, experiment:<name>, prediction:<id>"
)


@dataclass(frozen=True)
class ModelVersionRef:
    name: str
    version: int


@dataclass(frozen=True)
class ModelAliasRef:
    name: str
    alias: str


@dataclass(frozen=True)
class RunRef:
    run_id: str


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact by any of: id, digest (prefix), type + name (+ digest prefix)."""

    artifact_id: str | None = None
    type: str | None = None
    name: str | None = None
    digest_prefix: str | None = None


@dataclass(frozen=True)
class ContextRef:
    type: str
    name: str


@dataclass(frozen=True)
class PredictionRef:
    prediction_id: str


Ref = ModelVersionRef | ModelAliasRef | RunRef | ArtifactRef | ContextRef | PredictionRef


def _fail(text: str, why: str) -> InvalidRefError:
    return InvalidRefError(f"{text!r} is not a valid ref ({why}); use one of: {ACCEPTED_FORMS}.")


def validate_name(name: str, what: str = "name") -> str:
    """Names appear in refs, so they must parse back unambiguously."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRefError(
            f"{what} {name!r} is not allowed; use 1-200 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    return name


def name_key(name: str) -> str:
    """The form two model or experiment names are compared in: ``churn``, ``Churn`` and
    ``CHURN`` share one key, so a look-alike cannot become a second model. Unicode's canonical
    caseless match (NFC, case folding, NFC again), ready for names beyond ASCII."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def parse(text: str) -> Ref:
    """Parse a ref string, or raise InvalidRefError that lists the accepted forms."""
    if not isinstance(text, str) or not text.strip():
        raise _fail(str(text), "it is empty")
    text = text.strip()
    if text.startswith("sha256:"):
        return ArtifactRef(digest_prefix=_digest_prefix(text, text))
    head, sep, rest = text.partition(":")
    if sep and _TYPE.match(head):
        return _parse_typed(text, head, rest)
    return _parse_model(text, text)


def _digest_prefix(text: str, digest: str) -> str:
    hex_part = digest.removeprefix("sha256:")
    if not _HEX_PREFIX.match(hex_part):
        raise _fail(text, "a digest needs 8-64 lowercase hex characters after 'sha256:'")
    return hex_part


def _parse_typed(text: str, head: str, rest: str) -> Ref:
    if head == "run":
        if not ids.is_id(rest):
            raise _fail(text, "a run id is a 26-character ULID")
        return RunRef(rest.upper())
    if head == "artifact":
        if not ids.is_id(rest):
            raise _fail(text, "an artifact id is a 26-character ULID")
        return ArtifactRef(artifact_id=rest.upper())
    if head == "prediction":
        if not _PREDICTION_ID.match(rest):
            raise _fail(text, "a prediction id looks like 01J...XYZ.42")
        return PredictionRef(rest)
    if head == "model" and ("@" in rest.replace("@sha256:", "") or "/" in rest):
        return _parse_model(text, rest)
    if head in CONTEXT_TYPES:
        if not _NAME.match(rest):
            raise _fail(text, f"{rest!r} is not a valid {head} name")
        return ContextRef(head, rest)
    name, at, digest = rest.partition("@")
    if not _NAME.match(name):
        raise _fail(text, f"{name!r} is not a valid artifact name")
    if at:
        return ArtifactRef(type=head, name=name, digest_prefix=_digest_prefix(text, digest))
    return ArtifactRef(type=head, name=name)


def _parse_model(text: str, body: str) -> Ref:
    if "@" in body:
        name, _, alias = body.partition("@")
        if _NAME.match(name) and _NAME.match(alias):
            return ModelAliasRef(name, alias)
        raise _fail(text, "a model alias ref is <name>@<alias>")
    if "/" in body:
        name, _, version = body.rpartition("/")
        if _NAME.match(name) and version.isdigit() and int(version) > 0:
            return ModelVersionRef(name, int(version))
        raise _fail(text, "a model version ref is <name>/<positive integer>")
    raise _fail(text, "it names no model version, alias, run or artifact")


def format_ref(ref: Ref) -> str:
    """The canonical text of a ref; ``parse(format_ref(r)) == r``."""
    match ref:
        case ModelVersionRef(name, version):
            return f"{name}/{version}"
        case ModelAliasRef(name, alias):
            return f"{name}@{alias}"
        case RunRef(run_id):
            return f"run:{run_id}"
        case ContextRef(type_, name):
            return f"{type_}:{name}"
        case PredictionRef(prediction_id):
            return f"prediction:{prediction_id}"
        case ArtifactRef(artifact_id, type_, name, digest_prefix):
            if artifact_id:
                return f"artifact:{artifact_id}"
            if type_ and name:
                suffix = f"@sha256:{digest_prefix}" if digest_prefix else ""
                return f"{type_}:{name}{suffix}"
            return f"sha256:{digest_prefix}"
    raise TypeError(f"not a ref: {ref!r}")
