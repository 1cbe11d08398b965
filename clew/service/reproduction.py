"""Reproducing a registered version: what must be re-run, and the signed verdict.

The re-run itself happens where the code may run (the caller's machine, see
``clew/client/reproduce.py``); the rules live here so both backends agree: which versions can
be reproduced at all (a run, a commit, a kept diff, a recorded command), and how the findings
become a verdict. The verdict is signed with the store's key (``service/signing.py``) and
stored as a ``report`` artifact derived from the version's model, so a policy can require it
as production evidence. The report states who reported the findings: the store vouches for
what it was told and when, and for the digests it can check itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from clew.domain import digests, records
from clew.domain.records import ArtifactRecord, RunRecord, VersionRecord
from clew.domain.reproduction import (
    BIT_IDENTICAL,
    FAILED_REPORT_NAME,
    INPUTS_TAG,
    NOT_REPRODUCED,
    REPORT_FORMAT,
    REPORT_NAME,
    WITHIN_TOLERANCE,
    PlannedInput,
    ReproductionPlan,
    ReproductionReport,
    report_message,
)
from clew.errors import InvalidInputError, ReproductionError
from clew.service import signing
from clew.service.artifacts import ArtifactService
from clew.service.registry import RegistryService
from clew.service.runs import RunService, now_ms
from clew.store.location import Store

_PROVENANCE_TYPES = ("code", "environment")
_FINDING_KEYS = frozenset(
    {
        "reproduced_digest",
        "metrics",
        "tolerance",
        "agreement",
        "min_agreement",
        "holdout_rows",
        "environment_differences",
        "inputs",
        "command",
        "built_environment",
    }
)


class ReproductionService:
    """Plans of what to re-run, and signed reproduction reports."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._registry = RegistryService(store)
        self._runs = RunService(store)
        self._artifacts = ArtifactService(store)

    def plan(self, ref: str) -> ReproductionPlan:
        """What produced ``ref``; refuses, in one sentence, a version that cannot be re-run."""
        version = self._registry.resolve(ref)
        run = self._producing_run(version)
        code = self._code(run, version)
        invocation = run.properties.get("invocation")
        if not isinstance(invocation, dict) or not invocation.get("argv"):
            raise ReproductionError(
                f"run {run.id} that produced {version.ref} did not record the command it ran "
                "(it predates command recording); train it again with this clew to reproduce it."
            )
        environment = (
            self._artifacts.get(run.environment_artifact_id).properties
            if run.environment_artifact_id
            else {}
        )
        model = self._artifacts.get(version.artifact_id)
        return ReproductionPlan(
            ref=version.ref,
            version_digest=version.digest,
            model_artifact_id=model.id,
            model_name=model.name,
            run_id=run.id,
            commit=str(code["commit"]),
            dirty=bool(code.get("dirty")),
            diff_digest=code.get("diff_digest"),
            script=code.get("script"),
            argv=[str(item) for item in invocation["argv"]],
            cwd=str(invocation.get("cwd") or "."),
            in_repository=bool(invocation.get("in_repository")),
            inputs=self._inputs(run),
            environment=dict(environment),
            metrics=dict(run.metrics),
        )

    def record(self, ref: str, findings: Mapping[str, Any], actor: str) -> ReproductionReport:
        """Judge ``findings`` against what ``ref`` recorded, sign the verdict, store it."""
        checked = _check_findings(findings)
        plan = self.plan(ref)
        verdict, reasons = judge(plan, checked)
        body = {
            "format": REPORT_FORMAT,
            "version": plan.ref,
            "model_digest": plan.version_digest,
            "run_id": plan.run_id,
            "commit": plan.commit,
            "verdict": verdict,
            "reasons": reasons,
            "recorded_metrics": plan.metrics,
            "findings": checked,
            "reported_by": actor,
            "reported_at": records.ms_to_iso(now_ms()),
        }
        signer = signing.current_signer(self.store, None)
        signature = signer.sign(report_message(body))
        document = {
            "report": body,
            "signature": {"algorithm": "ed25519", "key_id": signer.key_id, "value": signature},
        }
        blob = self.store.blobs.put_bytes(digests.canonical_json(document))
        name = FAILED_REPORT_NAME if verdict == NOT_REPRODUCED else REPORT_NAME
        artifact = self._artifacts.log(
            run_id=None,
            direction="output",
            type_="report",
            name=name,
            digest=blob.digest,
            actor=actor,
            size=blob.size,
            properties={
                "kind": "file",
                "format": REPORT_FORMAT,
                "verdict": verdict,
                "version": plan.ref,
            },
            blobs={blob.digest: (blob.size, "file")},
            derived_from=[plan.model_artifact_id],
        )
        return ReproductionReport(artifact.id, name, verdict, body, signature, signer.key_id)

    def _producing_run(self, version: VersionRecord) -> RunRecord:
        if not version.run_id:
            raise ReproductionError(
                f"{version.ref} was registered without a run, so nothing records how it was "
                "made; register versions from the run that trained them to reproduce them."
            )
        return self._runs.get_run(version.run_id)

    def _code(self, run: RunRecord, version: VersionRecord) -> dict[str, Any]:
        if not run.code_artifact_id:
            raise ReproductionError(
                f"run {run.id} that produced {version.ref} recorded no git commit (it ran "
                "outside a git repository); train from a repository to make it reproducible."
            )
        code = self._artifacts.get(run.code_artifact_id).properties
        diff = code.get("diff_digest")
        if code.get("dirty") and (not diff or not self.store.blobs.exists(diff)):
            raise ReproductionError(
                f"run {run.id} that produced {version.ref} ran from commit "
                f"{str(code.get('commit'))[:12]} with uncommitted changes whose diff was not "
                "kept, so its code cannot be recreated; commit the changes and train again."
            )
        return dict(code)

    def _inputs(self, run: RunRecord) -> list[PlannedInput]:
        paths = _read_paths(run)
        planned = []
        for artifact in self._artifacts.run_artifacts(run.id)["inputs"]:
            if artifact.type in _PROVENANCE_TYPES:
                continue
            planned.append(_planned(artifact, paths.get(artifact.digest)))
        return planned


def judge(plan: ReproductionPlan, findings: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The verdict and its reasons: the same bytes, else every recorded metric within the
    tolerance and (when measured) the predictions agreeing often enough."""
    if findings.get("reproduced_digest") == plan.version_digest:
        return BIT_IDENTICAL, [f"the re-run produced the same bytes ({plan.version_digest})"]
    reasons = [f"the re-run produced {findings.get('reproduced_digest')}, not the same bytes"]
    if not plan.metrics:
        return NOT_REPRODUCED, [*reasons, "the original run recorded no metrics to compare"]
    checks = _metric_checks(plan.metrics, findings)
    agreement = findings.get("agreement")
    if agreement is not None:
        minimum = float(findings.get("min_agreement") or 0.0)
        checks.append(
            (
                agreement >= minimum,
                f"predictions agree on {agreement:.2%} of the holdout (need {minimum:.2%})",
            )
        )
    reasons += [reason for _, reason in checks]
    return (WITHIN_TOLERANCE if all(ok for ok, _ in checks) else NOT_REPRODUCED), reasons


def _metric_checks(
    recorded: Mapping[str, float], findings: Mapping[str, Any]
) -> list[tuple[bool, str]]:
    """Per recorded metric: is the re-run's value within the tolerance, and why."""
    tolerance = float(findings.get("tolerance") or 0.0)
    reproduced = findings.get("metrics") or {}
    checks = []
    for key, before in sorted(recorded.items()):
        after = reproduced.get(key)
        if after is None:
            checks.append((False, f"metric {key!r} was not logged by the re-run"))
            continue
        within = abs(float(after) - before) <= tolerance
        relation = "within" if within else "beyond"
        checks.append(
            (within, f"metric {key!r} is {after}, recorded {before}: {relation} {tolerance}")
        )
    return checks


def _check_findings(findings: Mapping[str, Any]) -> dict[str, Any]:
    """Findings as the caller reported them, refused in one sentence when malformed."""
    if not isinstance(findings, Mapping):
        raise InvalidInputError("reproduction findings must be a JSON object.")
    unknown = sorted(set(findings) - _FINDING_KEYS)
    if unknown:
        raise InvalidInputError(
            f"reproduction findings have unknown field(s) {unknown}; use {sorted(_FINDING_KEYS)}."
        )
    checked = json.loads(json.dumps(dict(findings), default=str))
    for key in ("tolerance", "min_agreement", "agreement"):
        value = checked.get(key)
        if value is not None and not _fraction_or_positive(value, key != "tolerance"):
            raise InvalidInputError(
                f"reproduction {key} {value!r} must be a finite number"
                + (" between 0 and 1." if key != "tolerance" else " of at least 0.")
            )
    metrics = checked.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise InvalidInputError("reproduction metrics must map metric names to numbers.")
    return dict(checked)


def _fraction_or_positive(value: Any, fraction: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return 0 <= value <= 1 if fraction else value >= 0


def _read_paths(run: RunRecord) -> dict[str, str]:
    """Digest → the path the run read it from (the ``clew.inputs`` tag the SDK keeps)."""
    try:
        recorded = json.loads(run.tags.get(INPUTS_TAG) or "{}")
    except ValueError:
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {str(digest): str(path) for path, digest in recorded.items()}


def _planned(artifact: ArtifactRecord, path: str | None) -> PlannedInput:
    properties = artifact.properties
    return PlannedInput(
        artifact_id=artifact.id,
        type=artifact.type,
        name=artifact.name,
        digest=artifact.digest,
        path=path,
        uri=artifact.uri if properties.get("reference") else None,
        kind=properties.get("kind") or ("file" if properties.get("format") else None),
        size=artifact.size,
        etag=properties.get("etag"),
    )
