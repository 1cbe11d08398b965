"""``clew.reproduce``: re-run a registered version from what its run recorded, and sign a verdict.

The store says what made the version (``ReproductionService.plan``); this module does the part
that must run where code may run: a temporary git worktree at the recorded commit (with the
kept diff applied), every input restored from the store by digest (or a by-reference source
checked against its recorded ETag), the environment compared (or built with ``uv``), the
recorded command run against a scratch store (so a re-run never writes into the real one),
and the outcome compared. The store then judges the findings and signs the report.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.domain import digests
from clew.domain.reproduction import PlannedInput, ReproductionPlan, ReproductionReport
from clew.errors import IntegrityError, InvalidInputError, ReproductionError

if TYPE_CHECKING:
    from clew.client.client import Client

Progress = Callable[[str, str], None]
_CLEW_VARIABLES = ("CLEW_URI", "CLEW_ARTIFACTS", "CLEW_TOKEN", "CLEW_SIGNING_TOKEN")


@dataclass
class Outcome:
    """What the re-run logged to its scratch store."""

    digest: str | None
    metrics: dict[str, float]
    input_digests: set[str]
    environment: dict[str, Any]
    model_directory: Path | None = None
    notes: list[str] = field(default_factory=list)


def run_reproduction(
    client: Client,
    ref: str,
    *,
    repository: str | Path | None = None,
    tolerance: float = 0.0,
    holdout: Any = None,
    min_agreement: float = 0.99,
    build_env: bool = False,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> ReproductionReport:
    """Re-run the version ``ref`` (``churn@production``, ``churn/3``) and record a signed report.

    ``repository`` is a clone holding the recorded commit (default: the one around the
    working directory). The verdict is ``bit-identical`` when the re-run made the same bytes,
    else ``within-tolerance`` when every recorded metric is within ``tolerance`` and, with a
    ``holdout`` (DataFrame, CSV/Parquet path or dataset ref), the two models' predictions agree
    on at least ``min_agreement`` of its rows; otherwise ``not-reproduced``. Anything that
    makes a faithful re-run impossible (commit gone, diff not kept, an input's bytes changed)
    raises ``ReproductionError`` or ``IntegrityError`` and records nothing.
    """
    say = progress or _silent
    _check_numbers(tolerance, min_agreement)
    plan = client._service.reproductions.plan(ref)
    say("plan", f"{plan.ref} was made by run {plan.run_id} from commit {plan.commit[:12]}")
    repo = _repository(repository)
    _require_commit(repo, plan.commit)
    with tempfile.TemporaryDirectory(prefix="clew-reproduce-") as temp:
        work = Path(temp) / "source"
        _checkout(client, repo, plan, work)
        diff = " with its kept diff" if plan.dirty else ""
        say("checkout", f"commit {plan.commit[:12]} checked out{diff}")
        try:
            findings = _rerun(client, plan, work, Path(temp), holdout, build_env, timeout, say)
        finally:
            _remove_worktree(repo, work)
    findings.update({"tolerance": tolerance, "min_agreement": min_agreement})
    report = client._service.reproductions.record(plan.ref, findings, client.actor)
    say("report", f"{report.verdict}: signed report {report.artifact_id} linked to {plan.ref}")
    return report


def _rerun(
    client: Client,
    plan: ReproductionPlan,
    work: Path,
    temp: Path,
    holdout: Any,
    build_env: bool,
    timeout: float | None,
    say: Progress,
) -> dict[str, Any]:
    inputs = [_restore(client, planned, work) for planned in plan.inputs]
    say("inputs", f"{len(inputs)} input(s) restored or checked by digest")
    python = _build_environment(plan, temp / "venv") if build_env else sys.executable
    if build_env:
        say("environment", f"environment built with uv at {temp / 'venv'}")
    command = _command(plan, work, python)
    say("run", "running " + " ".join(plan.argv))
    _run(command, plan, work, temp, timeout)
    outcome = _outcome(plan, temp / "store", temp / "reproduced")
    differences = environment_differences(plan.environment, outcome.environment)
    say("environment", f"{len(differences)} difference(s) from the recorded environment")
    for item in inputs:
        if item["status"] == "checked by the re-run":
            item["status"] = (
                "same bytes in the re-run"
                if item["digest"] in outcome.input_digests
                else "different in the re-run"
            )
    agreement, rows = None, None
    if holdout is not None and outcome.digest != plan.version_digest:
        agreement, rows = _agreement(client, plan, outcome, holdout, work)
        say("compare", f"predictions agree on {agreement:.2%} of {rows} holdout row(s)")
    say("compare", f"re-run produced {outcome.digest}; registered {plan.version_digest}")
    return {
        "reproduced_digest": outcome.digest,
        "metrics": outcome.metrics,
        "agreement": agreement,
        "holdout_rows": rows,
        "environment_differences": differences,
        "inputs": inputs,
        "command": plan.argv,
        "built_environment": build_env,
    }


def _silent(step: str, message: str) -> None:
    """The default progress: say nothing (the CLI passes one that prints)."""


def _check_numbers(tolerance: float, min_agreement: float) -> None:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise InvalidInputError(f"tolerance {tolerance!r} must be a number of at least 0.")
    if not isinstance(min_agreement, int | float) or not 0 <= min_agreement <= 1:
        raise InvalidInputError(f"min_agreement {min_agreement!r} must be between 0 and 1.")


# --- code -----------------------------------------------------------------------------------


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args], cwd=repo, input=stdin, capture_output=True, timeout=300, check=False
    )


def _repository(repository: str | Path | None) -> Path:
    start = Path(repository or os.getcwd()).expanduser()
    found = _git(start, "rev-parse", "--show-toplevel") if start.is_dir() else None
    if found is None or found.returncode != 0:
        raise ReproductionError(
            f"{start} is not a git repository; pass repository= (--repository) pointing at a "
            "clone of the code that trained the version."
        )
    return Path(found.stdout.decode().strip())


def _require_commit(repo: Path, commit: str) -> None:
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ReproductionError(
            f"commit {commit[:12]} is not in the repository at {repo} (deleted, or never "
            "fetched); fetch it (git fetch origin) or point --repository at a clone that has it."
        )


def _checkout(client: Client, repo: Path, plan: ReproductionPlan, work: Path) -> None:
    added = _git(repo, "worktree", "add", "--detach", str(work), plan.commit)
    if added.returncode != 0:
        raise ReproductionError(
            f"commit {plan.commit[:12]} could not be checked out in a temporary worktree: "
            f"{added.stderr.decode(errors='replace').strip()}."
        )
    if plan.dirty and plan.diff_digest:
        diff = client.store.blobs.read_bytes(plan.diff_digest)
        applied = _git(work, "apply", "--binary", "--whitespace=nowarn", "-", stdin=diff)
        if applied.returncode != 0:
            _remove_worktree(repo, work)
            raise ReproductionError(
                f"the kept diff {plan.diff_digest} does not apply to commit {plan.commit[:12]}: "
                f"{applied.stderr.decode(errors='replace').strip()}."
            )


def _remove_worktree(repo: Path, work: Path) -> None:
    _git(repo, "worktree", "remove", "--force", str(work))
    _git(repo, "worktree", "prune")


# --- inputs ---------------------------------------------------------------------------------


def _restore(client: Client, planned: PlannedInput, work: Path) -> dict[str, Any]:
    """Put one input back where the run read it, checked against its digest."""
    label = f"{planned.type}:{planned.name}"
    entry = {"name": label, "digest": planned.digest, "path": planned.path}
    if planned.uri:
        return {**entry, "status": _check_reference(planned, label)}
    if planned.path is None:
        return {**entry, "status": "checked by the re-run"}
    if Path(planned.path).is_absolute():
        return {**entry, "status": _check_outside(planned, label)}
    target = work / planned.path
    if target.exists() and _digest_of(target) == planned.digest:
        return {**entry, "status": "in the commit"}
    artifact = client._service.artifacts.get(planned.artifact_id)
    try:
        if target.is_dir():
            shutil.rmtree(target)
        client._service.artifacts.export(artifact, target)
    except IntegrityError as error:
        raise IntegrityError(f"input {label} was not restored: {error}") from error
    return {**entry, "status": "restored from the store"}


def _check_reference(planned: PlannedInput, label: str) -> str:
    from clew.client.inputs import _remote_facts

    assert planned.uri is not None
    size, etag = _remote_facts(planned.uri)
    if digests.digest_json({"uri": planned.uri, "size": size, "etag": etag}) != planned.digest:
        raise ReproductionError(
            f"input {label} at {planned.uri} is not what the run read (recorded ETag "
            f"{planned.etag}, size {planned.size}; now {etag}, {size}); restore that version."
        )
    return "source checked by ETag"


def _check_outside(planned: PlannedInput, label: str) -> str:
    assert planned.path is not None
    path = Path(planned.path)
    if not path.exists() or _digest_of(path) != planned.digest:
        raise ReproductionError(
            f"input {label} was read from {path}, outside the repository, and that file is "
            f"missing or changed; copy it back with clew.export_artifact("
            f"'artifact:{planned.artifact_id}', '{path}') and retry."
        )
    return "checked in place"


def _digest_of(path: Path) -> str:
    if path.is_dir():
        files = {
            item.relative_to(path).as_posix(): digests.digest_file(item)
            for item in sorted(path.rglob("*"))
            if item.is_file()
        }
        return digests.manifest_digest(files)
    return digests.digest_file(path)


# --- environment ----------------------------------------------------------------------------


def environment_differences(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Python and library versions that differ between two recorded environments."""
    differences = []
    if recorded.get("python") != current.get("python"):
        differences.append(
            {"name": "python", "recorded": recorded.get("python"), "now": current.get("python")}
        )
    before, after = recorded.get("libraries") or {}, current.get("libraries") or {}
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            differences.append({"name": name, "recorded": before.get(name), "now": after.get(name)})
    return differences


def _build_environment(plan: ReproductionPlan, venv: Path) -> str:
    """A virtual environment with the recorded Python and library versions, made with uv."""
    uv = [shutil.which("uv") or sys.executable, *([] if shutil.which("uv") else ["-m", "uv"])]
    python = _interpreter(str(plan.environment.get("python") or ""))
    libraries = {
        name: version
        for name, version in (plan.environment.get("libraries") or {}).items()
        if name != "clew"
    }
    steps = [
        [*uv, "venv", "--quiet", *(["--python", python] if python else []), str(venv)],
        [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         *(f"{name}=={version}" for name, version in sorted(libraries.items())), _clew_source()],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, timeout=1800, check=False)
        if done.returncode != 0:
            raise ReproductionError(
                "uv could not build the recorded environment: "
                f"{done.stderr.decode(errors='replace').strip().splitlines()[-1:]}; "
                "reproduce without --build-env, or make those versions installable."
            )
    return str(venv / "bin" / "python")


def _interpreter(recorded: str) -> str:
    """The running interpreter when it is the recorded version, else the version for uv to find.

    uv looks a bare version up on PATH and otherwise downloads a build, which a machine that only
    reaches package registries cannot; the running interpreter needs neither.
    """
    return sys.executable if recorded == platform.python_version() else recorded


def _clew_source() -> str:
    """This clew, installed into the built environment so the re-run can record."""
    import importlib.metadata

    project = Path(__file__).resolve().parents[2]
    if (project / "pyproject.toml").exists():
        return str(project)
    return f"clew=={importlib.metadata.version('clew')}"


# --- the run --------------------------------------------------------------------------------


def _command(plan: ReproductionPlan, work: Path, python: str) -> list[str]:
    script, *arguments = plan.argv
    if script in ("-c", "-m", "") or not plan.in_repository:
        raise ReproductionError(
            f"run {plan.run_id} was started as {' '.join(plan.argv)!r}, which names no script "
            "inside the repository; run training as `python path/to/script.py` to reproduce it."
        )
    path = Path(script) if Path(script).is_absolute() else work / script
    return [python, str(path), *arguments]


def _run(
    command: list[str], plan: ReproductionPlan, work: Path, temp: Path, timeout: float | None
) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in _CLEW_VARIABLES}
    environment.update({"CLEW_URI": str(temp / "store"), "CLEW_HOME": str(temp / "home")})
    cwd = work / plan.cwd if not Path(plan.cwd).is_absolute() else work
    try:
        done = subprocess.run(
            command, cwd=cwd, env=environment, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise ReproductionError(
            f"the recorded command ran longer than {timeout} s; pass a longer timeout."
        ) from error
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise ReproductionError(
            f"the recorded command {' '.join(plan.argv)!r} failed (exit {done.returncode}) at "
            f"commit {plan.commit[:12]}: {last}"
        )


def _outcome(plan: ReproductionPlan, store: Path, exported: Path) -> Outcome:
    """The re-run's run that logged the model (by the registered model artifact's name)."""
    from clew.client.client import Client

    if not store.exists():
        raise ReproductionError(
            f"the recorded command {' '.join(plan.argv)!r} logged nothing with clew, so there "
            "is nothing to compare; it must log the model as the original run did."
        )
    scratch = Client(str(store))
    try:
        for run in scratch._service.search_runs(None, None, 1000, None):
            produced = scratch._service.artifacts.run_artifacts(run.id)
            model = next((a for a in produced["outputs"] if a.name == plan.model_name), None)
            if model is None:
                continue
            environment = (
                scratch._service.artifacts.get(run.environment_artifact_id).properties
                if run.environment_artifact_id
                else {}
            )
            directory = scratch._service.artifacts.export(model, exported)
            return Outcome(
                model.digest,
                dict(run.metrics),
                {a.digest for a in produced["inputs"]},
                dict(environment),
                directory,
            )
    finally:
        scratch.close()
    raise ReproductionError(
        f"the re-run logged no output named {plan.model_name!r}, the model {plan.ref} "
        "registers; the recorded command must log it as the original run did."
    )


# --- predictions ----------------------------------------------------------------------------


def _agreement(
    client: Client, plan: ReproductionPlan, outcome: Outcome, holdout: Any, work: Path
) -> tuple[float, int]:
    """The share of holdout rows on which the registered and the re-run model agree."""
    import numpy

    from clew.integrations import flavors

    frame = _holdout_frame(client, holdout)
    with tempfile.TemporaryDirectory(prefix="clew-registered-") as temp:
        model = client._service.artifacts.get(plan.model_artifact_id)
        original = flavors.load(client._service.artifacts.export(model, Path(temp) / "model"))
        assert outcome.model_directory is not None
        reproduced = flavors.load(outcome.model_directory)
        features = getattr(original, "feature_names_in_", None)
        rows = frame[list(features)] if features is not None else frame
        try:
            before = numpy.asarray(original.predict(rows))
            after = numpy.asarray(reproduced.predict(rows))
        except (AttributeError, ValueError, TypeError, KeyError) as error:
            raise InvalidInputError(
                f"the models could not predict on the holdout ({error}); pass a holdout with "
                "the model's feature columns."
            ) from error
    if before.dtype.kind == "f":
        same = numpy.isclose(before, after, rtol=0, atol=1e-9)
    else:
        same = before == after
    return float(numpy.mean(same)) if len(same) else 1.0, len(same)


def _holdout_frame(client: Client, holdout: Any) -> Any:
    import pandas

    if isinstance(holdout, pandas.DataFrame):
        return holdout
    if isinstance(holdout, str) and ":" in holdout and not Path(holdout).exists():
        artifact = client._service.artifacts.resolve(holdout)
        with tempfile.TemporaryDirectory(prefix="clew-holdout-") as temp:
            path = client._service.artifacts.export(artifact, Path(temp) / "holdout.parquet")
            return pandas.read_parquet(path)
    path = Path(str(holdout))
    if not path.is_file():
        raise InvalidInputError(
            f"holdout {holdout!r} is neither a DataFrame, a CSV or Parquet file, nor a dataset "
            "ref; pass one of those."
        )
    return pandas.read_parquet(path) if path.suffix == ".parquet" else pandas.read_csv(path)


def reproduce(ref: str, **options: Any) -> ReproductionReport:
    """``clew.reproduce``: :func:`run_reproduction` on the default client."""
    from clew.client.default import get_client

    return get_client().reproduce(ref, **options)
